/*
 * introspection_response: token_introspection_jwt (RFC 9701). Against the
 * real oidc-provider with its jwtIntrospection feature: the upstream gets a
 * JWT the gateway minted from the verified answer. Against a scripted
 * endpoint and JWKS: every way a signed answer can be wrong is a 502, never
 * a 200, never a remembered 401; and a key rollover at the server is picked
 * up with one refetch of its JWKS.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CompactSign, SignJWT } from 'jose';
import { startDevAuthorizationServer, DEV_CLIENTS, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { InvalidAnswer } from '../../src/introspection/dialects/common.js';
import { tokenIntrospectionJwtDialect } from '../../src/introspection/dialects/token-introspection-jwt.js';
import { DocumentFetcher } from '../../src/introspection/documents.js';
import { ServerKeys } from '../../src/introspection/server-keys.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call, closedPort } from '../helpers/core.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import {
  activeAnswer,
  devIntrospect,
  devToken,
  newSignerKey,
  SCRIPTED_CLIENT,
  SCRIPTED_ISSUER,
  signAnswer,
  startScriptedJwks,
  verifyForwarded,
  type ScriptedKeys,
  type SignerKey,
} from '../helpers/signed-answers.js';

const UNAVAILABLE = '{"code":"server_error","message":"Token validation is unavailable"}';
const SIGNED = 'application/token-introspection+jwt';

describe('token_introspection_jwt against oidc-provider (jwtIntrospection, ES256)', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  let gw: TestGateway;

  before(async () => {
    as = await startDevAuthorizationServer({
      port: 0,
      features: { jwtIntrospection: { enabled: true } },
      introspectionClient: { introspection_signed_response_alg: 'ES256' },
    });
    api = await startEchoUpstream();
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: ${as.introspectionEndpoint}
  issuer: ${as.issuer}
  jwks_uri: ${as.jwksUri}
  introspection_response: token_introspection_jwt
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  scope: read
minting:
  issuer: https://gateway.test
  max_lifetime_seconds: 120
routes:
  - path: /api
    upstream: ${api.url}
`);
  });
  after(async () => {
    await gw?.close();
    await api?.close();
    await as?.close();
  });

  test('an active token: the upstream gets a JWT minted by the gateway, verifiable with its JWKS, with the token claims and an exp no later than the token', async () => {
    const token = await devToken(as, 'read');
    const truth = await devIntrospect(as, token);
    const r = await call(`${gw.url}/api/items`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    const { header, payload } = await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
    assert.equal(header.typ, 'at+jwt');
    assert.equal(payload.iss, 'https://gateway.test');
    assert.equal(payload.client_id, DEV_CLIENTS.client.id);
    assert.equal(payload.scope, 'read');
    assert.equal(typeof payload.exp, 'number');
    assert.ok(payload.exp! <= (truth.exp as number), 'exp never later than the token');
    assert.ok(payload.exp! <= payload.iat! + 120, 'exp within max_lifetime_seconds');
    // The forwarded token is not the opaque one, and does not contain it.
    assert.ok(!JSON.stringify(payload).includes(token));

    // oidc-provider answers introspection with Cache-Control: no-store, which
    // the gateway obeys: the next request introspects (and mints) again.
    const again = await call(`${gw.url}/api/items`, `Bearer ${token}`);
    assert.equal(again.status, 200);
    const second = await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
    assert.equal(second.payload.sub, payload.sub);
  });

  test('an unknown token (a signed active: false): 401 invalid_token, nothing forwarded', async () => {
    const before = api.received.length;
    const r = await call(`${gw.url}/api/items`, 'Bearer not-a-token-the-server-issued');
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/);
    assert.equal(api.received.length, before);
  });

  test('a revoked token: 401', async () => {
    const token = await devToken(as, 'read');
    const rev = await fetch(as.revocationEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret }).toString(),
    });
    assert.equal(rev.status, 200);
    const r = await call(`${gw.url}/api/items`, `Bearer ${token}`);
    assert.equal(r.status, 401);
  });
});

describe('token_introspection_jwt: scripted signed answers through the gateway', () => {
  let as: ScriptedIntrospection;
  let jwks: ScriptedKeys;
  let api: EchoUpstream;
  let gw: TestGateway;
  let key: SignerKey;
  let other: SignerKey;
  let serial = 0;
  const fresh = (label: string) => `scripted-${label}-${++serial}`;

  before(async () => {
    as = await startScriptedIntrospection();
    jwks = await startScriptedJwks();
    api = await startEchoUpstream();
    key = await newSignerKey('k1');
    other = await newSignerKey('k1'); // same kid, another key: an impostor
    jwks.published = [key.publicJwk];
    const down = await closedPort();
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  issuer: ${SCRIPTED_ISSUER}
  jwks_uri: ${jwks.jwksUri}
  introspection_response: token_introspection_jwt
  client_id: ${SCRIPTED_CLIENT}
  client_secret: s3cret
minting:
  issuer: https://gateway.test
routes:
  - path: /api
    upstream: ${api.url}
  - path: /nojwks
    upstream: ${api.url}
    phantom_token:
      jwks_uri: http://127.0.0.1:${down}/jwks
`);
  });
  after(async () => {
    await gw?.close();
    await Promise.all([as?.close(), jwks?.close(), api?.close()]);
  });
  beforeEach(() => {
    as.calls.length = 0;
  });

  const answerWith = (token: string, body: string, contentType = SIGNED) => as.answers.set(token, { status: 200, body, headers: { 'content-type': contentType } });

  test('a good signed answer: 200, Accept asks for a signed answer, the upstream gets a minted JWT with the answer claims', async () => {
    const token = fresh('good');
    const answer = activeAnswer('alice', 600);
    answerWith(token, await signAnswer(answer, key));
    const r = await call(`${gw.url}/api/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    assert.equal(as.calls[0]!.headers.accept, SIGNED);
    const { payload } = await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
    assert.equal(payload.sub, 'alice');
    assert.ok(payload.exp! <= (answer.exp as number));
  });

  test('a signed active: false: 401', async () => {
    const token = fresh('inactive');
    answerWith(token, await signAnswer({ active: false }, key));
    const r = await call(`${gw.url}/api/x`, `Bearer ${token}`);
    assert.equal(r.status, 401);
  });

  const bad: Array<[string, (token: string) => Promise<{ body: string; type?: string }>]> = [
    ['a tampered signature', async () => {
      const jwt = await signAnswer(activeAnswer('mallory'), key);
      const [h, p, s] = jwt.split('.');
      return { body: `${h}.${p}.${s!.slice(0, -4)}${s!.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}` };
    }],
    ['a payload changed after signing', async () => {
      const jwt = await signAnswer(activeAnswer('alice'), key);
      const [h, , s] = jwt.split('.');
      const forged = Buffer.from(JSON.stringify({ token_introspection: activeAnswer('root'), iss: SCRIPTED_ISSUER, aud: SCRIPTED_CLIENT, iat: 1 })).toString('base64url');
      return { body: `${h}.${forged}.${s}` };
    }],
    ['a signature by another key with the same kid', async () => ({ body: await signAnswer(activeAnswer('mallory'), other) })],
    ['a wrong iss', async () => ({ body: await signAnswer(activeAnswer('alice'), key, { iss: 'https://evil.test' }) })],
    ['a wrong aud (an answer for another client)', async () => ({ body: await signAnswer(activeAnswer('alice'), key, { aud: 'other-client' }) })],
    ['no iat', async () => ({ body: await signAnswer(activeAnswer('alice'), key, { iat: false }) })],
    ['a wrong typ (an access token, not an introspection answer)', async () => ({ body: await signAnswer(activeAnswer('alice'), key, { typ: 'at+jwt' }) })],
    ['HS256 keyed with the client secret', async () => ({
      body: await new SignJWT({ token_introspection: activeAnswer('alice') })
        .setProtectedHeader({ alg: 'HS256', typ: 'token-introspection+jwt', kid: 'k1' })
        .setIssuer(SCRIPTED_ISSUER)
        .setAudience(SCRIPTED_CLIENT)
        .setIssuedAt()
        .sign(new TextEncoder().encode('s3cret')),
    })],
    ['alg none', async () => {
      const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const now = Math.floor(Date.now() / 1000);
      return { body: `${b64({ alg: 'none', typ: 'token-introspection+jwt' })}.${b64({ token_introspection: activeAnswer('alice'), iss: SCRIPTED_ISSUER, aud: SCRIPTED_CLIENT, iat: now })}.` };
    }],
    ['an unsigned JSON answer', async () => ({ body: JSON.stringify(activeAnswer('alice')), type: 'application/json' })],
    ['a signed answer labelled application/jwt', async () => ({ body: await signAnswer(activeAnswer('alice'), key), type: 'application/jwt' })],
    ['no token_introspection member', async () => ({
      body: await new SignJWT({ active: true, sub: 'alice' }).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'token-introspection+jwt' }).setIssuer(SCRIPTED_ISSUER).setAudience(SCRIPTED_CLIENT).setIssuedAt().sign(key.privateKey),
    })],
    ['a duplicate member in the payload', async () => {
      const jwt = await signAnswer(activeAnswer('alice'), key);
      const [h] = jwt.split('.');
      const payload = Buffer.from(`{"token_introspection":{"active":false},"token_introspection":${JSON.stringify(activeAnswer('alice'))},"iss":"${SCRIPTED_ISSUER}","aud":"${SCRIPTED_CLIENT}","iat":${Math.floor(Date.now() / 1000)}}`).toString('base64url');
      // Signed properly over the crafted payload: only the duplicate is wrong.
      const body = await new CompactSign(Buffer.from(payload, 'base64url')).setProtectedHeader(JSON.parse(Buffer.from(h!, 'base64url').toString())).sign(key.privateKey);
      return { body };
    }],
  ];

  for (const [label, make] of bad) {
    test(`${label}: 502, never 200, nothing forwarded, not remembered`, async () => {
      const token = fresh('bad');
      const { body, type } = await make(token);
      answerWith(token, body, type);
      const before = api.received.length;
      for (let i = 0; i < 2; i++) {
        const r = await call(`${gw.url}/api/x`, `Bearer ${token}`);
        assert.equal(r.status, 502, r.body);
        assert.equal(r.body, UNAVAILABLE);
      }
      assert.equal(as.callsFor(token), 2, 'a refused answer is never cached');
      assert.equal(api.received.length, before);
    });
  }

  test('the JWKS unreachable: 502, and the warning says why', async () => {
    const token = fresh('nojwks');
    answerWith(token, await signAnswer(activeAnswer('alice'), key));
    const mark = gw.logs.length;
    const r = await call(`${gw.url}/nojwks/x`, `Bearer ${token}`);
    assert.equal(r.status, 502);
    const warned = gw.logs.slice(mark).filter((l) => l.level === 'warn').map((l) => String(l.msg));
    assert.ok(warned.some((m) => /JWKS could not be fetched/.test(m)), warned.join('\n'));
    assert.ok(!gw.rawLogs().includes(token), 'the token is never logged');
  });

  test('a flood of answers with an unknown kid costs the JWKS at most one fetch per cooldown', async () => {
    const stranger = await newSignerKey('unknown-kid');
    const before = jwks.fetches;
    for (let i = 0; i < 5; i++) {
      const token = fresh('flood');
      answerWith(token, await signAnswer(activeAnswer('alice'), stranger));
      assert.equal((await call(`${gw.url}/api/x`, `Bearer ${token}`)).status, 502);
    }
    assert.ok(jwks.fetches - before <= 1, `fetches: ${jwks.fetches - before}`);
  });
});

describe('RFC 9701 key rollover at the authorization server (scripted JWKS, moved clock)', () => {
  let jwks: ScriptedKeys;
  let t = Date.now();
  beforeEach(() => {
    jwks.fetches = 0;
  });
  before(async () => {
    jwks = await startScriptedJwks();
  });
  after(() => jwks.close());

  test('an unknown kid after the cooldown refetches once and verifies; an unknown kid right after does not refetch and is refused', async () => {
    const a = await newSignerKey('a');
    const b = await newSignerKey('b');
    jwks.published = [a.publicJwk];
    const keys = new ServerKeys({
      fetcher: new DocumentFetcher({ timeoutMs: 2000, verifySsl: true }),
      jwksUri: async () => jwks.jwksUri,
      cooldownMs: 30_000,
      now: () => t,
    });
    const dialect = tokenIntrospectionJwtDialect({ issuer: SCRIPTED_ISSUER, clientId: SCRIPTED_CLIENT, getKey: keys.getKey });
    const decode = async (key: SignerKey) => dialect.decode({ body: await signAnswer(activeAnswer('alice'), key), contentType: SIGNED });

    assert.equal((await decode(a)).active, true);
    assert.equal(jwks.fetches, 1);

    // The server rolls to b, a minute later.
    jwks.published = [b.publicJwk];
    t += 60_000;
    assert.equal((await decode(b)).active, true);
    assert.equal(jwks.fetches, 2);
    // Answers under a, signed before the rollover, are refused now that a is gone (within the cooldown: no refetch).
    await assert.rejects(decode(a), InvalidAnswer);
    const c = await newSignerKey('c');
    await assert.rejects(decode(c), (e: unknown) => e instanceof InvalidAnswer && /matches/.test(e.message));
    assert.equal(jwks.fetches, 2);
    // After the cooldown: one refetch, and a kid still unknown is refused.
    t += 60_000;
    await assert.rejects(decode(c), InvalidAnswer);
    assert.equal(jwks.fetches, 3);
  });

  test('keys older than their maximum age are refetched in the background (the old ones verify meanwhile); when that fails the old keys are kept', async () => {
    const until = async (ok: () => boolean) => {
      for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
    };
    const a = await newSignerKey('a');
    jwks.published = [a.publicJwk];
    let uri = jwks.jwksUri;
    const keys = new ServerKeys({ fetcher: new DocumentFetcher({ timeoutMs: 2000, verifySsl: true }), jwksUri: async () => uri, maxAgeMs: 1000, now: () => t });
    const dialect = tokenIntrospectionJwtDialect({ issuer: SCRIPTED_ISSUER, clientId: SCRIPTED_CLIENT, getKey: keys.getKey });
    const decode = async () => dialect.decode({ body: await signAnswer(activeAnswer('alice'), a), contentType: SIGNED });
    assert.equal((await decode()).active, true);
    const fetched = jwks.fetches;
    t += 2000;
    assert.equal((await decode()).active, true);
    await until(() => jwks.fetches === fetched + 1);
    assert.equal(jwks.fetches, fetched + 1);
    // The refetch has reached the JWKS host; let it finish (on a loaded machine its answer may still be on the way).
    await keys.idle();
    // Stale again, and the JWKS now fails: the keys fetched before still verify.
    t += 2000;
    jwks.failing = true;
    assert.equal((await decode()).active, true);
    await until(() => jwks.fetches === fetched + 2);
    assert.equal(jwks.fetches, fetched + 2);
    jwks.failing = false;
    // Another URL (new discovery metadata) that cannot be fetched: no keys for it, refused.
    uri = `http://127.0.0.1:${await closedPort()}/jwks`;
    await assert.rejects(decode(), InvalidAnswer);
  });
});
