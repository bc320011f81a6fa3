/*
 * What every client authentication method must do against the real
 * oidc-provider, run once per method and answer format: an active token
 * reaches the upstream as a JWT that verifies, whose exp is not later than
 * the token's, and is cached as the answer allows; an inactive token is 401; a second
 * token is introspected (and so authenticated) again; credentials the server
 * refuses are 502, never 401, with the method named in the warning and no
 * secret in any log line.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { Agent, request } from 'undici';
import type { DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { accessLog, callApi, clientCredentialsToken, forwardedJwt, introspectionWarnings, startGatewayFor, type Stack } from './peers.js';

export interface MethodCase {
  /** Test-name prefix: method, answer format and key. */
  readonly name: string;
  /** The authorization server, registered for the method. */
  startAs(): Promise<DevAuthorizationServer>;
  /** Phantom token YAML lines (two-space indent) the server accepts. */
  accepted(as: DevAuthorizationServer): string;
  /** Phantom token YAML lines whose credentials the server refuses. */
  refused(as: DevAuthorizationServer): string;
  /** The method's name, which the refusal's warning must give. */
  readonly method: string;
  /** Strings that must never be logged (secrets, key material). */
  readonly secrets: readonly string[];
  /** The CA the server's certificate is signed by (https). */
  readonly ca?: Buffer;
  /** `client_id` of the minted JWT: whose token it is. */
  readonly tokenClientId: string;
  /** Whether the gateway mints (json) or forwards the server's JWT (jwt). */
  readonly mints: boolean;
}

export function methodSuite(c: MethodCase): void {
  describe(c.name, () => {
    let as: DevAuthorizationServer;
    let good: Stack;
    let bad: Stack;
    before(async () => {
      as = await c.startAs();
      good = await startGatewayFor(as, c.accepted(as));
      bad = await startGatewayFor(as, c.refused(as));
    });
    after(async () => {
      await Promise.allSettled([good?.close(), bad?.close()]);
      await as?.close();
    });

    test(`an active token: 200, the upstream gets a JWT that verifies, exp no later than the token's; introspected once, then cached`, async () => {
      const { token, exp } = await clientCredentialsToken(as, c.ca);
      const first = await callApi(good, token);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const { jwt, claims } = c.mints ? await forwardedJwt(good, first.body) : await serverJwt(as, first.body, c.ca);
      assert.equal(claims.client_id, c.tokenClientId);
      assert.equal(claims.scope, 'read');
      assert.ok(typeof claims.exp === 'number' && claims.exp <= exp, `exp ${claims.exp} is not later than the token's ${exp}`);
      assert.ok(claims.exp! >= exp - 5, 'exp is the token\'s own (shorter than minting\'s cap)');
      assert.ok(!jwt.includes(token), 'the opaque token is not inside the JWT');

      const again = await callApi(good, token);
      assert.equal(again.status, 200);
      // oidc-provider's JSON answers carry Cache-Control: no-store, the
      // blanket header of OAuth answers (RFC 6749 §5.1); a minted token is
      // cached all the same, bounded by token_cache_seconds and the token's exp.
      assert.equal((again.body.headers as Record<string, string>).authorization, `Bearer ${jwt}`, 'the cached JWT is forwarded');
      assert.deepEqual(accessLog(good).slice(-2).map((l) => l.cache), ['miss', 'hit']);
    });

    test('a second token is introspected with fresh credentials, and passes', async () => {
      for (let i = 0; i < 2; i++) {
        const { token } = await clientCredentialsToken(as, c.ca);
        const res = await callApi(good, token);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.equal(accessLog(good).at(-1)?.cache, 'miss');
      }
    });

    test('an inactive token: 401 invalid_token, nothing reaches the upstream', async () => {
      const before = good.api.received.length;
      const res = await callApi(good, 'not-a-token-the-server-issued');
      assert.equal(res.status, 401);
      assert.match(String(res.headers['www-authenticate']), /error="invalid_token"/);
      assert.equal(good.api.received.length, before);
    });

    test(`credentials the server refuses: 502 (not 401), the warning names ${c.method}, no secret logged`, async () => {
      const { token } = await clientCredentialsToken(as, c.ca);
      const before = bad.api.received.length;
      const res = await callApi(bad, token);
      assert.equal(res.status, 502);
      assert.equal(res.body.code, 'server_error');
      assert.equal(bad.api.received.length, before, 'nothing reaches the upstream');
      assert.equal(accessLog(bad).at(-1)?.code, 'ERR_INTROSPECTION_REJECTED');
      const warnings = introspectionWarnings(bad);
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      assert.equal(warnings[0]!.code, 'ERR_INTROSPECTION_REJECTED');
      assert.equal(warnings[0]!.status, 401);
      assert.match(String(warnings[0]!.msg), new RegExp(`\\(${c.method}\\)`));
      const logs = `${bad.gw.rawLogs()}\n${good.gw.rawLogs()}`;
      for (const s of [...c.secrets, token]) assert.ok(!logs.includes(s), 'no secret, key or token in the logs');
      assert.ok(!/eyJ[\w-]+\.eyJ/.test(logs), 'no JWT (assertion or token) in the logs');
    });
  });
}

/** The server's own JWT (the `jwt` answer format), verified against the server's JWKS. */
async function serverJwt(as: DevAuthorizationServer, body: Record<string, unknown>, ca?: Buffer) {
  const dispatcher = ca === undefined ? undefined : new Agent({ connect: { ca } });
  const res = await request(as.jwksUri, dispatcher ? { dispatcher } : {});
  const jwks = (await res.body.json()) as Parameters<typeof createLocalJWKSet>[0];
  await dispatcher?.close();
  const jwt = (body.headers as Record<string, string>).authorization.slice('Bearer '.length);
  const { payload } = await jwtVerify(jwt, createLocalJWKSet(jwks), { issuer: as.issuer, typ: 'at+jwt' });
  return { jwt, claims: payload };
}
