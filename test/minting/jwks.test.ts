/*
 * GET /.well-known/jwks.json: where APIs find the keys minted tokens verify
 * with, on the proxy listener and on the forward-auth listener.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { forwarded, original, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { JWKS_MAX_AGE_SECONDS } from '../../src/minting/publish.js';

const JWKS = '/.well-known/jwks.json';

function config(as: ScriptedIntrospection, api: EchoUpstream, opts: { dialect?: string; routes?: string; forwardAuth?: string } = {}): string {
  return `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
  introspection_response: ${opts.dialect ?? 'json'}
${opts.forwardAuth ?? ''}
routes:
${opts.routes ?? `  - path: /api\n    upstream: ${api.url}`}
`;
}

describe('JWKS on the proxy listener', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  let shadowing: TestGateway;
  let plain: TestGateway;
  let plainCatchAll: TestGateway;
  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    gw = await startGateway(config(as, api));
    shadowing = await startGateway(config(as, api, { routes: `  - path: /api\n    upstream: ${api.url}\n  - path: /\n    upstream: ${api.url}\n    phantom_token: false` }));
    plain = await startGateway(config(as, api, { dialect: 'jwt' }));
    plainCatchAll = await startGateway(config(as, api, { dialect: 'jwt', routes: `  - path: /\n    upstream: ${api.url}\n    phantom_token: false` }));
  });
  after(async () => {
    for (const g of [gw, shadowing, plain, plainCatchAll]) await g.close();
    await as.close();
    await api.close();
  });

  test('GET: 200, application/jwk-set+json, max-age, public keys with kid, alg and use; no token needed, no introspection', async () => {
    const res = await request(`${gw.url}${JWKS}`);
    const body = (await res.body.json()) as { keys: Record<string, unknown>[] };
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/jwk-set+json');
    assert.equal(res.headers['cache-control'], `public, max-age=${JWKS_MAX_AGE_SECONDS}`);
    assert.ok(JWKS_MAX_AGE_SECONDS > 0 && JWKS_MAX_AGE_SECONDS <= 300, 'short: a new key must reach the APIs in time');
    assert.equal(body.keys.length, 1);
    const k = body.keys[0]!;
    assert.equal(k.kty, 'EC');
    assert.equal(k.crv, 'P-256');
    assert.equal(k.alg, 'ES256');
    assert.equal(k.use, 'sig');
    assert.equal(typeof k.kid, 'string');
    assert.equal(k.d, undefined);
    assert.equal(as.calls.length, 0);
    // It is the key tokens are signed with: one minted by the gateway's own minter verifies.
    const minted = await gw.gateway.guards.minting!.minter.mint({ active: true, client_id: 'c', scope: 'read', exp: Math.floor(Date.now() / 1000) + 60 } as never);
    await jwtVerify(minted.jwt, createLocalJWKSet(body as never), { typ: 'at+jwt' });
  });

  test('a query string is ignored; HEAD has the headers without the body', async () => {
    const q = await request(`${gw.url}${JWKS}?v=2`);
    assert.equal(q.statusCode, 200);
    const text = await q.body.text();
    const head = await request(`${gw.url}${JWKS}`, { method: 'HEAD' });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['content-type'], 'application/jwk-set+json');
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(text)));
    assert.equal(await head.body.text(), '');
  });

  test('other methods: 405 with Allow: GET, HEAD, in the JSON refusal shape', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS'] as const) {
      const res = await request(`${gw.url}${JWKS}`, { method, ...(method === 'POST' ? { body: 'x' } : {}) });
      const body = (await res.body.json()) as { code: string };
      assert.equal(res.statusCode, 405, method);
      assert.equal(res.headers.allow, 'GET, HEAD');
      assert.equal(body.code, 'bad_request');
    }
  });

  test('answered before routing: it shadows a route that covers the path, with a warning at start', async () => {
    const seen = api.received.length;
    const res = await request(`${shadowing.url}${JWKS}`);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/jwk-set+json');
    await res.body.dump();
    assert.equal(api.received.length, seen, 'the route never receives it');
    const warning = shadowing.logs.find((l) => l.level === 'warn' && String(l.msg).includes(JWKS));
    assert.ok(warning, 'warned at start');
    assert.equal(warning.route, '/');
    assert.ok(!gw.logs.some((l) => String(l.msg).includes('never receives it')), 'no warning when no route covers it');
    // Other paths still route.
    const other = await request(`${shadowing.url}/.well-known/other`);
    await other.body.dump();
    assert.equal(other.statusCode, 200);
    assert.equal(api.received.length, seen + 1);
  });

  test('nothing mints: no JWKS; the path is routed (404 without a route, the upstream with one)', async () => {
    const none = await request(`${plain.url}${JWKS}`);
    assert.equal(none.statusCode, 404);
    await none.body.dump();
    assert.equal(plain.gateway.guards.jwks(), undefined);
    const seen = api.received.length;
    const routed = await request(`${plainCatchAll.url}${JWKS}`);
    assert.equal(routed.statusCode, 200);
    assert.equal(routed.headers['x-upstream'], 'echo');
    await routed.body.dump();
    assert.equal(api.received.length, seen + 1);
    assert.ok(!plainCatchAll.logs.some((l) => String(l.msg).includes('never receives it')));
  });
});

describe('JWKS on the forward-auth listener', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let fa: TestForwardAuth;
  let envoy: TestForwardAuth;
  let plain: TestForwardAuth;
  const fwd = (extra = '') => `forward_auth:\n  listen: { host: 127.0.0.1, port: 0 }\n${extra}`;
  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    fa = await startForwardAuth(config(as, api, { forwardAuth: fwd(), routes: '  - path: /api' }));
    envoy = await startForwardAuth(config(as, api, { forwardAuth: fwd('  path_prefix: /'), routes: '  - path: /api' }));
    plain = await startForwardAuth(config(as, api, { dialect: 'jwt', forwardAuth: fwd(), routes: '  - path: /api' }));
  });
  after(async () => {
    for (const f of [fa, envoy, plain]) await f.close();
    await as.close();
    await api.close();
  });

  test('its own GET /.well-known/jwks.json (describing no other request): the keys, as on the proxy', async () => {
    const res = await request(`${fa.url}${JWKS}`);
    const body = (await res.body.json()) as { keys: { kid: string }[] };
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/jwk-set+json');
    assert.equal(res.headers['cache-control'], `public, max-age=${JWKS_MAX_AGE_SECONDS}`);
    assert.equal(body.keys[0]!.kid, fa.listener.guards.minting!.keys.signer.kid);
    const head = await request(`${fa.url}${JWKS}`, { method: 'HEAD' });
    assert.equal(head.statusCode, 200);
    assert.equal(await head.body.text(), '');
    const post = await request(`${fa.url}${JWKS}`, { method: 'POST' });
    await post.body.dump();
    assert.equal(post.statusCode, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
  });

  test('a decision request about /.well-known/jwks.json is a decision, never a JWKS 200 a gateway would read as an allow', async () => {
    for (const headers of [forwarded('GET', JWKS), original('GET', JWKS)]) {
      const res = await request(`${fa.url}${JWKS}`, { headers });
      await res.body.dump();
      assert.notEqual(res.statusCode, 200);
      assert.equal(res.headers['content-type'], 'application/json');
    }
    // A lone X-Forwarded-Uri is ambiguous, so 400, not the keys.
    const half = await request(`${fa.url}${JWKS}`, { headers: { 'x-forwarded-uri': '/api' } });
    await half.body.dump();
    assert.equal(half.statusCode, 400);
    // Envoy with path_prefix /: every request line is the original request.
    const e = await request(`${envoy.url}${JWKS}`);
    await e.body.dump();
    assert.equal(e.statusCode, 404, 'no route for the client request');
    assert.equal(as.calls.length, 0);
  });

  test('nothing mints: a bare request line is 400, as before', async () => {
    const res = await request(`${plain.url}${JWKS}`);
    await res.body.dump();
    assert.equal(res.statusCode, 400);
  });
});
