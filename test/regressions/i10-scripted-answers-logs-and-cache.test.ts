/*
 * Review of issue 10's foundation with SCRIPTED introspection endpoints
 * (fault injection and answer shapes):
 *  - the endpoint URL, query included, is now written into every
 *    introspection warning (src/core/guards.ts, `endpoint: where`), while the
 *    start-up warnings deliberately log only origin + path: a key in the
 *    query (`?code=`, `?subscription-key=` of API gateways in front of
 *    authorization servers) lands in the logs on every failure.
 *  - a `jwt` answer whose JOSE header cannot be read is now refused as "not
 *    an access token" (client.ts isAccessToken: `!isPlainObject(header)` ->
 *    false) and that refusal is CACHED as an inactive token; before the split
 *    it was forwarded. Garbage in a 200 is the server's failure everywhere
 *    else (502, never cached).
 *  - the cache namespace (guards.ts) names the authorization server and how
 *    its answers are read, but not who minted the cached JWT: with a shared
 *    TokenStore, a gateway serves a JWT another gateway minted (other iss,
 *    other key) and its API refuses it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { MemoryTokenCache } from '../../src/cache/memory.js';
import { Gateway } from '../../src/proxy/server.js';
import { createLogger } from '../../src/observability/logger.js';
import { startEchoUpstream, startScriptedIntrospection, signJwt, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let as: ScriptedIntrospection;
let api: EchoUpstream;
before(async () => {
  as = await startScriptedIntrospection();
  api = await startEchoUpstream();
});
after(async () => {
  await api?.close();
  await as?.close();
});

describe('review i10 (scripted): a key in the introspection endpoint query is written to the logs', () => {
  let gw: TestGateway;
  const SECRET = 'fn-key-4f1c9a7e2b';
  before(async () => {
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: ${as.url}/introspect?code=${SECRET}
  client_id: gateway
  client_secret: s
routes:
  - path: /api
    upstream: ${api.url}
`);
    as.answers.set('t-unavailable', { status: 503 });
  });
  after(() => gw?.close());

  test('a 503 from the server is 503 to the client and the log has origin and path, not the query', async () => {
    const res = await fetch(`${gw.url}/api/x`, { headers: { authorization: 'Bearer t-unavailable' } });
    assert.equal(res.status, 503);
    assert.ok(gw.rawLogs().includes('/introspect'), 'the warning should still say which endpoint');
    assert.ok(!gw.rawLogs().includes(SECRET), `the endpoint's query key is in the logs:\n${gw.rawLogs()}`);
  });
});

describe('review i10 (scripted): a JWT answer with an unreadable header is remembered as an inactive token (401) instead of 502', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
routes:
  - path: /api
    upstream: ${api.url}
`);
    const good = await signJwt({});
    // The payload and signature of a real token; the header is a proxy's mangling.
    const mangled = `${Buffer.from('<html>').toString('base64url')}${good.slice(good.indexOf('.'))}`;
    as.answers.set('t-mangled', { status: 200, headers: { 'content-type': 'application/jwt' }, body: mangled });
  });
  after(() => gw?.close());

  test('502 each time, and each request asks the server again (nothing cached)', async () => {
    const first = await fetch(`${gw.url}/api/x`, { headers: { authorization: 'Bearer t-mangled' } });
    const second = await fetch(`${gw.url}/api/x`, { headers: { authorization: 'Bearer t-mangled' } });
    assert.deepEqual([first.status, second.status], [502, 502], 'garbage in a 200 must be the server\'s failure');
    assert.equal(as.callsFor('t-mangled'), 2, 'a failure of the server must not be remembered as a refusal of the token');
  });
});

describe('review i10 (scripted): with a shared token store, a gateway serves a JWT another gateway minted', () => {
  const quiet = () => createLogger('error', new Writable({ write: (_c, _e, cb) => cb() }));
  const store = new MemoryTokenCache({ maxEntries: 100 });
  const gateways: Gateway[] = [];
  const guards: Guards[] = [];
  const urls: string[] = [];
  before(async () => {
    const now = Math.floor(Date.now() / 1000);
    as.answers.set('t-shared', {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ active: true, sub: 'user-1', client_id: 'app', scope: 'read', aud: 'api', exp: now + 600, iss: 'https://as.example' }),
    });
    for (const who of ['x', 'y']) {
      // Two deployments (APIs x and y) behind one authorization server and one introspection client, sharing a Redis-like store.
      const config = parseConfig(
        `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  introspection_response: json
minting:
  issuer: https://gateway-${who}.example
routes:
  - path: /api
    upstream: ${api.url}
`,
        { file: `${who}.yaml`, env: {} },
      );
      const g = createGuards(config, { logger: quiet(), store });
      const gw = new Gateway(config, { logger: quiet(), guards: g });
      const addr = await gw.listen(0, '127.0.0.1');
      guards.push(g);
      gateways.push(gw);
      urls.push(`http://127.0.0.1:${addr.port}`);
    }
  });
  after(async () => {
    for (const gw of gateways) await gw.close();
    for (const g of guards) await g.close();
  });

  test("gateway y forwards a JWT with y's issuer that verifies against y's JWKS", async () => {
    assert.equal((await fetch(`${urls[0]}/api/x`, { headers: { authorization: 'Bearer t-shared' } })).status, 200);
    assert.equal((await fetch(`${urls[1]}/api/x`, { headers: { authorization: 'Bearer t-shared' } })).status, 200);
    const forwarded = String(api.received.at(-1)!.headers.authorization).replace(/^Bearer /, '');
    await assert.doesNotReject(
      jwtVerify(forwarded, createLocalJWKSet(guards[1]!.jwks() as { keys: JWK[] }), { issuer: 'https://gateway-y.example' }),
      "gateway y forwarded gateway x's minted JWT from the shared store",
    );
  });
});

describe('review i10 (scripted): a DPoP-bound token (cnf.jkt) presented as Bearer gets an access token minted, cnf copied', () => {
  // RFC 9449 §7.1: a DPoP-bound token presented with the Bearer scheme must be
  // refused; the gateway checks no proof, yet mints (minter.ts copies `cnf`)
  // a token the API cannot check either: the proof, if any, was for the
  // gateway's URL. The stolen bound token works as a plain bearer token.
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  introspection_response: json
minting:
  issuer: https://gateway.example
routes:
  - path: /api
    upstream: ${api.url}
`);
    const now = Math.floor(Date.now() / 1000);
    as.answers.set('t-dpop-bound', {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ active: true, sub: 'user-1', client_id: 'app', scope: 'read', aud: 'api', exp: now + 600, token_type: 'DPoP', cnf: { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' } }),
    });
  });
  after(() => gw?.close());

  test('refused 401 (invalid_token) and never forwarded', async () => {
    const before = api.received.length;
    const res = await fetch(`${gw.url}/api/x`, { headers: { authorization: 'Bearer t-dpop-bound' } });
    assert.equal(res.status, 401, `a sender-constrained token was accepted as a bearer token; the API got ${String(api.received.at(-1)?.headers.authorization).slice(0, 40)}...`);
    assert.equal(api.received.length, before);
  });
});
