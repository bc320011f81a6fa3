/*
 * introspection_response: json against the real oidc-provider (the
 * development authorization server answering plain RFC 7662 JSON): the
 * gateway mints an RFC 9068 token, and every front door hands it on; the
 * API side verifies it with jose against the JWKS the gateway serves.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import type { DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { createLogger } from '../../src/observability/logger.js';
import { Gateway } from '../../src/proxy/server.js';
import { forwarded } from '../helpers/forward-auth.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { startExpressApp, startFastifyApp, type AppUnderTest } from '../middleware/apps.js';
import { bearerOf, clientCredentials, fetchJwks, introspect, jsonPhantomToken, keyDir, startDevAs, verifyMinted } from './helpers.js';

const ISSUER = 'https://gateway.example.com';
const MAX_LIFETIME = 120;

describe('json dialect, real oidc-provider: every front door forwards a minted JWT that verifies against the gateway JWKS', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  let guards: Guards;
  let gateway: Gateway;
  let forwardAuth: ForwardAuthListener;
  let express: AppUnderTest;
  let fastify: AppUnderTest;
  let proxyUrl: string;
  let faUrl: string;
  const keys = keyDir();
  const logLines: string[] = [];

  before(async () => {
    as = await startDevAs();
    api = await startEchoUpstream();
    const key = keys.key('signer', 'ec');
    const config = parseConfig(
      `
listen: { host: 127.0.0.1, port: 0 }
forward_auth:
  listen: { host: 127.0.0.1, port: 0 }
phantom_token:
${jsonPhantomToken(as)}
  scope: read
minting:
  issuer: ${ISSUER}
  signing_key_file: ${key.pem}
  audience: api.example.com
  max_lifetime_seconds: ${MAX_LIFETIME}
  copy_claims: [token_type, iss, exp, sub, jti]
routes:
  - path: /api
    upstream: ${api.url}
`,
      { file: 'test.yaml', env: {} },
    );
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) logLines.push(l);
        cb();
      },
    });
    const logger = createLogger('info', sink);
    guards = createGuards(config, { logger });
    gateway = new Gateway(config, { logger, guards });
    forwardAuth = new ForwardAuthListener(config, { logger, guards });
    proxyUrl = `http://127.0.0.1:${(await gateway.listen(0, '127.0.0.1')).port}`;
    faUrl = `http://127.0.0.1:${(await forwardAuth.listen(0, '127.0.0.1')).port}`;
    express = await startExpressApp({ guards, logger });
    fastify = await startFastifyApp({ guards, logger });
  });
  after(async () => {
    await express.close();
    await fastify.close();
    await gateway.close();
    await forwardAuth.close();
    await guards.close();
    await api.close();
    await as.close();
    keys.cleanup();
  });

  async function throughProxy(token: string) {
    const res = await request(`${proxyUrl}/api/items`, { headers: { authorization: `Bearer ${token}` } });
    const body = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body };
  }

  test('proxy: the upstream gets an at+jwt with kid, signed by the configured key, with the RFC 9068 claims', async () => {
    const token = await clientCredentials(as, 'read');
    const said = await introspect(as, token);
    assert.equal(said.active, true);
    assert.equal(said.aud, undefined, 'oidc-provider names no aud for a client-credentials token: minting.audience supplies it');
    const before = as.stats.introspections;
    const t0 = Date.now();
    const res = await throughProxy(token);
    assert.equal(res.status, 200);
    assert.equal(as.stats.introspections - before, 1);
    const jwt = bearerOf(api.received.at(-1)!.headers.authorization);
    assert.ok(!api.received.at(-1)!.rawHeaders.join('\n').includes(token), 'the opaque token never reaches the upstream');

    const jwks = await fetchJwks(proxyUrl);
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0]!.d, undefined, 'no private key material is published');
    const { payload, header } = await verifyMinted(jwt, jwks, { issuer: ISSUER, audience: 'api.example.com' });
    assert.equal(header.typ, 'at+jwt');
    assert.equal(header.alg, 'ES256');
    assert.equal(header.kid, jwks.keys[0]!.kid);
    assert.equal(payload.iss, ISSUER, 'copy_claims cannot override iss');
    assert.equal(payload.sub, 'test-client', "a client's own token: sub is its client_id (RFC 9068 §2.2)");
    assert.equal(payload.aud, 'api.example.com');
    assert.equal(payload.client_id, 'test-client');
    assert.equal(payload.scope, 'read');
    assert.equal(payload.token_type, 'Bearer', 'copy_claims copies other members');
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/, 'the gateway names its own token; not the opaque token, not the server jti');
    assert.notEqual(payload.jti, token);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(payload.iat! >= Math.floor(t0 / 1000) - 1 && payload.iat! <= now + 1);
    assert.ok(payload.exp! <= (said.exp as number), "exp is never later than the token's");
    assert.ok(payload.exp! <= payload.iat! + MAX_LIFETIME, 'nor later than max_lifetime_seconds');
    assert.ok(payload.exp! > now);
  });

  test('proxy: a second request is a cache hit: no introspection, the same JWT', async () => {
    const token = await clientCredentials(as, 'read');
    assert.equal((await throughProxy(token)).status, 200);
    const first = bearerOf(api.received.at(-1)!.headers.authorization);
    const before = as.stats.introspections;
    assert.equal((await throughProxy(token)).status, 200);
    assert.equal(as.stats.introspections, before, 'no second introspection');
    assert.equal(bearerOf(api.received.at(-1)!.headers.authorization), first);
  });

  test('proxy: an unknown token and a revoked one get 401 invalid_token, and nothing reaches the upstream', async () => {
    const seen = api.received.length;
    const unknown = await throughProxy('never-issued-by-the-server');
    assert.equal(unknown.status, 401);
    assert.equal(unknown.headers['www-authenticate'], 'Bearer error="invalid_token"');
    const token = await clientCredentials(as, 'read');
    const revoke = await request(as.revocationEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_id: 'test-client', client_secret: 'Password1' }).toString(),
    });
    await revoke.body.dump();
    assert.equal(revoke.statusCode, 200);
    assert.equal((await throughProxy(token)).status, 401);
    assert.equal(api.received.length, seen);
  });

  test('proxy: a token without the route scope is 403 after minting (the scope check reads the minted claims)', async () => {
    const token = await clientCredentials(as, 'write');
    const res = await throughProxy(token);
    assert.equal(res.status, 403);
    assert.equal(res.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="read"');
  });

  test('forward-auth: the allow carries Authorization with a minted JWT that verifies against the listener own JWKS', async () => {
    const token = await clientCredentials(as, 'read');
    const res = await request(`${faUrl}/`, { headers: forwarded('GET', '/api/items', `Bearer ${token}`) });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    const jwt = bearerOf(res.headers.authorization);
    const jwks = await fetchJwks(faUrl);
    assert.deepEqual(jwks, await fetchJwks(proxyUrl), 'both listeners publish the same keys');
    const { payload } = await verifyMinted(jwt, jwks, { issuer: ISSUER, audience: 'api.example.com' });
    assert.equal(payload.client_id, 'test-client');
    assert.ok(payload.exp! <= ((await introspect(as, token)).exp as number));
    const inactive = await request(`${faUrl}/`, { headers: forwarded('GET', '/api/items', 'Bearer nope-not-a-token') });
    await inactive.body.dump();
    assert.equal(inactive.statusCode, 401);
  });

  test('Express middleware: the handler gets a minted JWT that verifies against the gateway JWKS', async () => {
    const token = await clientCredentials(as, 'read');
    const res = await request(`${express.url}/api/items`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    const seen = express.seen.at(-1)!;
    const jwt = bearerOf(seen.authorization);
    assert.equal(seen.phantomToken?.jwt, jwt);
    const { payload } = await verifyMinted(jwt, await fetchJwks(proxyUrl), { issuer: ISSUER, audience: 'api.example.com' });
    assert.equal(payload.scope, 'read');
    assert.equal(seen.phantomToken?.claims.jti, payload.jti);
  });

  test('Fastify plugin: the handler gets a minted JWT that verifies against the gateway JWKS', async () => {
    const token = await clientCredentials(as, 'read');
    const res = await request(`${fastify.url}/api/items`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    const jwt = bearerOf(fastify.seen.at(-1)!.authorization);
    const { payload } = await verifyMinted(jwt, await fetchJwks(faUrl), { issuer: ISSUER, audience: 'api.example.com' });
    assert.equal(payload.client_id, 'test-client');
  });

  test('no token, log lines: nothing of a token, a JWT or a key is logged', async () => {
    const logs = logLines.join('\n');
    assert.doesNotMatch(logs, /eyJ[\w-]+\.eyJ/, 'no JWT in the logs');
    assert.doesNotMatch(logs, /"d":"/, 'no private key in the logs');
  });
});

describe('json dialect, real oidc-provider: defaults (no minting block)', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  let gw: TestGateway;
  before(async () => {
    as = await startDevAs({ accessTokenTtl: 60 });
    api = await startEchoUpstream();
    gw = await startGateway(`
phantom_token:
${jsonPhantomToken(as)}
routes:
  - path: /api
    upstream: ${api.url}
`);
  });
  after(async () => {
    await gw.close();
    await api.close();
    await as.close();
  });

  test('a generated key (warned), iss derived from the listener (warned), no aud (warned once), exp the token own when sooner than 300 s', async () => {
    const logs = gw.logs;
    assert.ok(logs.some((l) => l.level === 'warn' && /signing_key_file is not set/.test(String(l.msg))), 'the generated key is warned about');
    assert.ok(logs.some((l) => l.level === 'warn' && /minting\.issuer is not set/.test(String(l.msg))));
    const t1 = await clientCredentials(as, 'read');
    const t2 = await clientCredentials(as, 'read');
    for (const t of [t1, t2]) {
      const res = await request(`${gw.url}/api`, { headers: { authorization: `Bearer ${t}` } });
      await res.body.dump();
      assert.equal(res.statusCode, 200);
    }
    const jwt = bearerOf(api.received.at(-1)!.headers.authorization);
    const { payload } = await verifyMinted(jwt, await fetchJwks(gw.url), { issuer: 'http://localhost:8080' });
    assert.equal(payload.aud, undefined, 'no aud anywhere: omitted');
    assert.equal(gw.logs.filter((l) => /a minted token has no aud/.test(String(l.msg))).length, 1, 'warned once, not per token');
    const exp = (await introspect(as, t2)).exp as number;
    assert.equal(payload.exp, exp, "the token's exp (60 s) comes before now + 300 s");
  });
});
