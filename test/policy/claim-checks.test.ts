/*
 * Claim checks before forwarding, through the real gateway against a
 * scripted introspection endpoint (scripted: it answers in the shapes of
 * Keycloak, Ory Hydra, Duende, Amazon Cognito JWTs and oidc-provider, and
 * with what no server should send): `issuer`, `access_tokens_only`, and the
 * 400 `unsupported_token_type` answer. Every refusal is 401 invalid_token,
 * never reaches the upstream, and is remembered like an inactive token.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call, gatewayConfig } from '../helpers/core.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { forwardedJwt, jsonAnswer, nowSeconds, serverKey, signingKeyDir, verifyForwarded, type ServerKey } from '../dialects/support.js';

const ISSUER = 'https://as.scripted.test';
const INVALID_TOKEN = 'Bearer error="invalid_token"';

let serial = 0;
const fresh = (label: string) => `claims-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;

describe('claim checks (scripted authorization server)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  let key: ServerKey;
  const keyDir = signingKeyDir();

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    key = await serverKey(ISSUER);
    gw = await startGateway(
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: '', introspection_response: 'json' },
        routes: [
          { path: '/json-issuer', phantom_token: { issuer: ISSUER } },
          { path: '/json' },
          { path: '/json-lenient', phantom_token: { access_tokens_only: false } },
          { path: '/jwt-issuer', phantom_token: { introspection_response: 'jwt', issuer: ISSUER } },
          { path: '/jwt', phantom_token: { introspection_response: 'jwt' } },
          { path: '/jwt-claim', phantom_token: { introspection_response: 'jwt_claim' } },
        ],
        extra: { minting: { issuer: 'https://gateway.test', signing_key_file: keyDir.keyFile } },
      }),
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
    keyDir.remove();
  });
  beforeEach(() => {
    as.calls.length = 0;
    api.received.length = 0;
  });

  /** A refusal of the token: 401 invalid_token, the upstream never reached. */
  async function refused(path: string, token: string): Promise<void> {
    const before = api.received.length;
    const r = await call(`${gw.url}${path}`, `Bearer ${token}`);
    assert.equal(r.status, 401, `${path}: ${r.body}`);
    assert.equal(r.headers['www-authenticate'], INVALID_TOKEN);
    assert.deepEqual(JSON.parse(r.body), { code: 'unauthorized', message: 'Invalid or expired access token' });
    assert.equal(api.received.length, before, 'nothing reached the upstream');
  }

  describe('issuer', () => {
    test('an answer whose iss is the configured issuer is forwarded (json, minted)', async () => {
      const token = fresh('iss-ok');
      const exp = nowSeconds() + 120;
      as.answers.set(token, jsonAnswer({ active: true, iss: ISSUER, sub: 'alice', client_id: 'web', scope: 'read', exp }));
      const r = await call(`${gw.url}/json-issuer/x`, `Bearer ${token}`);
      assert.equal(r.status, 200);
      const { payload } = await verifyForwarded(forwardedJwt(api), gw.gateway.guards.jwks()!, exp, { issuer: 'https://gateway.test', typ: 'at+jwt' });
      assert.equal(payload.sub, 'alice');
    });

    test('an answer naming another issuer: 401, remembered (one introspection for two requests), one warning naming both issuers', async () => {
      const a = fresh('iss-other-a');
      const b = fresh('iss-other-b');
      for (const t of [a, b]) as.answers.set(t, jsonAnswer({ active: true, iss: 'https://elsewhere.test', sub: 'mallory', exp: nowSeconds() + 120 }));
      const mark = gw.logs.length;
      await refused('/json-issuer/x', a);
      await refused('/json-issuer/x', a);
      assert.equal(as.callsFor(a), 1, 'the refusal is remembered like an inactive token');
      await refused('/json-issuer/x', b);
      const warnings = gw.logs.slice(mark).filter((l) => l.code === 'WARN_TOKEN_ISSUER');
      assert.equal(warnings.length, 1, 'warned once per introspection client, not per request');
      assert.match(String(warnings[0]!.msg), /https:\/\/elsewhere\.test.*https:\/\/as\.scripted\.test/);
      assert.ok(!gw.rawLogs().includes(a) && !gw.rawLogs().includes(b), 'tokens never logged');
    });

    test('an issuer differing only by a trailing slash is another issuer (exact comparison, RFC 8414 §3.3)', async () => {
      const token = fresh('iss-slash');
      as.answers.set(token, jsonAnswer({ active: true, iss: `${ISSUER}/`, sub: 'alice', exp: nowSeconds() + 120 }));
      await refused('/json-issuer/x', token);
    });

    test('an answer without iss (optional in RFC 7662) is the server speaking of its own token: forwarded', async () => {
      const token = fresh('iss-absent');
      as.answers.set(token, jsonAnswer({ active: true, sub: 'alice', exp: nowSeconds() + 120 }));
      assert.equal((await call(`${gw.url}/json-issuer/x`, `Bearer ${token}`)).status, 200);
    });

    test('without issuer configured, any iss is accepted', async () => {
      const token = fresh('iss-unchecked');
      as.answers.set(token, jsonAnswer({ active: true, iss: 'https://elsewhere.test', sub: 'alice', exp: nowSeconds() + 120 }));
      assert.equal((await call(`${gw.url}/json/x`, `Bearer ${token}`)).status, 200);
    });

    test('jwt dialect: the forwarded JWT\'s iss is checked (Curity shape)', async () => {
      const ok = fresh('jwt-iss-ok');
      const other = fresh('jwt-iss-other');
      as.answers.set(ok, { status: 200, body: await key.sign({ sub: 'alice' }), headers: { 'content-type': 'application/jwt' } });
      as.answers.set(other, { status: 200, body: await key.sign({ sub: 'alice', iss: 'https://elsewhere.test' }), headers: { 'content-type': 'application/jwt' } });
      assert.equal((await call(`${gw.url}/jwt-issuer/x`, `Bearer ${ok}`)).status, 200);
      await refused('/jwt-issuer/x', other);
    });
  });

  describe('access tokens only', () => {
    // What servers put in an answer about something that is not an access token.
    const notAccess: Array<[string, Record<string, unknown>]> = [
      ['RFC 7662 token_type refresh_token (Duende)', { token_type: 'refresh_token' }],
      ['token_type as an RFC 8693 URI (refresh token)', { token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }],
      ['token_type as an RFC 8693 URI (ID token)', { token_type: 'urn:ietf:params:oauth:token-type:id_token' }],
      ['token_type id_token', { token_type: 'id_token' }],
      ['Ory Hydra token_use refresh_token', { token_type: 'Bearer', token_use: 'refresh_token' }],
      ['Amazon Cognito style token_use id', { token_use: 'id' }],
      ['Keycloak typ Refresh', { typ: 'Refresh' }],
      ['Keycloak typ Offline (offline token)', { typ: 'Offline' }],
      ['Keycloak typ ID', { typ: 'ID' }],
      ['Keycloak typ Logout', { typ: 'Logout' }],
      ['Keycloak typ Serialized-ID', { typ: 'Serialized-ID' }],
      ['upper case REFRESH_TOKEN', { token_type: 'REFRESH_TOKEN' }],
    ];
    for (const [name, members] of notAccess) {
      test(`json: ${name} → 401, not forwarded; forwarded with access_tokens_only: false`, async () => {
        const token = fresh('not-access');
        as.answers.set(token, jsonAnswer({ active: true, sub: 'alice', exp: nowSeconds() + 120, ...members }));
        await refused('/json/x', token);
        assert.equal((await call(`${gw.url}/json-lenient/x`, `Bearer ${token}`)).status, 200);
      });
    }

    const access: Array<[string, Record<string, unknown>]> = [
      ['token_type Bearer (oidc-provider, Okta, Zitadel)', { token_type: 'Bearer' }],
      ['token_type DPoP', { token_type: 'DPoP' }],
      ['token_type access_token (Duende)', { token_type: 'access_token' }],
      ['Ory Hydra token_use access_token', { token_type: 'bearer', token_use: 'access_token' }],
      ['Keycloak typ Bearer', { typ: 'Bearer', token_type: 'Bearer' }],
      ['no type member at all', {}],
    ];
    for (const [name, members] of access) {
      test(`json: ${name} → forwarded`, async () => {
        const token = fresh('access');
        as.answers.set(token, jsonAnswer({ active: true, sub: 'alice', exp: nowSeconds() + 120, ...members }));
        assert.equal((await call(`${gw.url}/json/x`, `Bearer ${token}`)).status, 200);
      });
    }

    test('a refusal is remembered: the second request makes no introspection', async () => {
      const token = fresh('refresh-twice');
      as.answers.set(token, jsonAnswer({ active: true, typ: 'Refresh', exp: nowSeconds() + 120 }));
      await refused('/json/x', token);
      await refused('/json/x', token);
      assert.equal(as.callsFor(token), 1);
    });

    test('jwt_claim (Keycloak shape): a refresh token\'s JWT (typ Refresh claim) → 401; an access token\'s → forwarded', async () => {
      const refresh = fresh('kc-refresh');
      const access = fresh('kc-access');
      as.answers.set(refresh, jsonAnswer({ active: true, typ: 'Refresh', jwt: await key.sign({ typ: 'Refresh', sub: 'alice' }, { typ: 'JWT' }) }));
      as.answers.set(access, jsonAnswer({ active: true, typ: 'Bearer', jwt: await key.sign({ typ: 'Bearer', sub: 'alice' }, { typ: 'JWT' }) }));
      await refused('/jwt-claim/x', refresh);
      assert.equal((await call(`${gw.url}/jwt-claim/x`, `Bearer ${access}`)).status, 200);
    });

    for (const typ of ['id_token+jwt', 'logout+jwt', 'secevent+jwt', 'token-introspection+jwt', 'dpop+jwt']) {
      test(`jwt: a forwarded JWT whose header typ is ${typ} → 401`, async () => {
        const token = fresh('jwt-typ');
        as.answers.set(token, { status: 200, body: await key.sign({ sub: 'alice' }, { typ }), headers: { 'content-type': 'application/jwt' } });
        await refused('/jwt/x', token);
      });
    }

    for (const typ of ['at+jwt', 'application/at+jwt', 'JWT', null]) {
      test(`jwt: a forwarded JWT whose header typ is ${typ ?? 'absent'} → forwarded`, async () => {
        const token = fresh('jwt-typ-ok');
        as.answers.set(token, { status: 200, body: await key.sign({ sub: 'alice' }, { typ }), headers: { 'content-type': 'application/jwt' } });
        assert.equal((await call(`${gw.url}/jwt/x`, `Bearer ${token}`)).status, 200);
      });
    }
  });

  describe('400 answers', () => {
    test('400 unsupported_token_type (oidc-provider, for a token shaped like a JWT): 401, remembered', async () => {
      const token = fresh('unsupported');
      as.answers.set(token, { status: 400, body: '{"error":"unsupported_token_type","error_description":"Structured JWT Tokens cannot be introspected via the introspection_endpoint"}', headers: { 'content-type': 'application/json' } });
      await refused('/json/x', token);
      await refused('/json/x', token);
      assert.equal(as.callsFor(token), 1);
    });

    test('any other 400 is the gateway\'s request failing: 502, not remembered, the server\'s body never echoed', async () => {
      const token = fresh('bad-request');
      as.answers.set(token, { status: 400, body: '{"error":"invalid_request","error_description":"secret detail"}', headers: { 'content-type': 'application/json' } });
      for (let i = 0; i < 2; i++) {
        const r = await call(`${gw.url}/json/x`, `Bearer ${token}`);
        assert.equal(r.status, 502);
        assert.ok(!r.body.includes('secret detail'));
      }
      assert.equal(as.callsFor(token), 2, 'a failure is never cached');
    });

    test('a 400 whose body is not JSON, or over 4 KiB, is a failure (502)', async () => {
      const a = fresh('bad-400-a');
      const b = fresh('bad-400-b');
      as.answers.set(a, { status: 400, body: '<html>unsupported_token_type</html>' });
      as.answers.set(b, { status: 400, body: JSON.stringify({ error: 'unsupported_token_type', pad: 'x'.repeat(5000) }), headers: { 'content-type': 'application/json' } });
      assert.equal((await call(`${gw.url}/json/x`, `Bearer ${a}`)).status, 502);
      assert.equal((await call(`${gw.url}/json/x`, `Bearer ${b}`)).status, 502);
    });
  });
});
