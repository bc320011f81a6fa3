/*
 * The demo's DPoP route and examples/dpop-client.mjs against a started demo
 * (real oidc-provider, the gateway from examples/demo.yaml, the example API):
 * the command the banner prints runs as printed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { randomBytes } from 'node:crypto';
import { startDemo, type Demo, type DemoDialect } from '../../src/dev/demo.js';
import { DEV_CLIENTS, startDevAuthorizationServer, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { startExampleApi, type ExampleApi } from '../../src/dev/example-api.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { bearerToken, dpopBoundToken, dpopKey, proof } from '../helpers/dpop.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Runs `command` with bash from the repository's directory; its exit code and output. */
async function run(command: string): Promise<{ code: number; out: string; err: string }> {
  const child = spawn('bash', ['-c', command], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code] = (await once(child, 'exit')) as [number];
  clearTimeout(timer);
  return { code, out, err };
}

for (const dialect of ['jwt', 'json'] as DemoDialect[]) {
  describe(`demo --dialect ${dialect}: the DPoP route and the example client (real oidc-provider)`, () => {
    let demo: Demo;
    before(async () => {
      demo = await startDemo({ as: 0, api: 0, gateway: 0 }, { logLevel: 'silent', dialect });
    });
    after(() => demo?.close());

    test('examples/dpop-client.mjs, run as the banner prints it: a DPoP token, each call 200 with a fresh proof, the API shows cnf.jkt and X-DPoP-Verified; the stolen token is refused', async () => {
      const before = demo.as.stats.introspections;
      const r = await run(demo.dpopCommand);
      assert.equal(r.code, 0, `${r.out}\n${r.err}`);
      assert.equal(r.err, '');
      const jkt = /thumbprint \(jkt\) ([\w-]{43})/.exec(r.out)?.[1];
      assert.ok(jkt, r.out);
      assert.match(r.out, /-> 200, token_type DPoP/);
      assert.match(r.out, /call 1 +GET http:\/\/localhost:\d+\/dpop\/items/);
      assert.equal(r.out.match(/-> 200 API called with a valid JWT/g)?.length, 2, r.out);
      // The API's answer, as printed: the token's binding and the gateway's word.
      assert.ok(r.out.includes(`"jkt": "${jkt}"`), r.out);
      assert.ok(r.out.includes(`"verifiedByGateway": "${jkt}"`), r.out);
      assert.match(r.out, /"path": "\/api\/items"/);
      for (const what of ['no proof', 'as Bearer', 'a replayed proof']) assert.match(r.out, new RegExp(`stolen token +${what}: -> 401 DPoP`), what);
      assert.equal(demo.as.stats.introspections - before, 1, 'two calls, one introspection');
    });

    test('/dpop: a bound token with a proof -> 200 and the API sees cnf.jkt and X-DPoP-Verified; a bearer token, or no proof -> 401; /api still takes Bearer', async () => {
      const key = await dpopKey('EdDSA');
      const token = await dpopBoundToken(demo.as, key);
      const url = `http://localhost:${demo.ports.gateway}/dpop/items`;
      const ok = await request(url, { headers: { authorization: `DPoP ${token}`, dpop: await proof({ key, htm: 'GET', htu: url, accessToken: token }) } });
      const body = (await ok.body.json()) as Record<string, any>;
      assert.equal(ok.statusCode, 200, JSON.stringify(body));
      assert.deepEqual(body.dpop, { jkt: key.jkt, verifiedByGateway: key.jkt });
      assert.deepEqual(body.tokenPayload.cnf, { jkt: key.jkt });
      const noProof = await request(url, { headers: { authorization: `DPoP ${token}` } });
      await noProof.body.dump();
      assert.equal(noProof.statusCode, 401);
      assert.match(String(noProof.headers['www-authenticate']), /^DPoP error="invalid_dpop_proof"/);
      const bearer = await bearerToken(demo.as);
      const asBearer = await request(url, { headers: { authorization: `Bearer ${bearer}` } });
      await asBearer.body.dump();
      assert.equal(asBearer.statusCode, 401);
      const api = await request(`http://localhost:${demo.ports.gateway}/api`, { headers: { authorization: `Bearer ${bearer}` } });
      await api.body.dump();
      assert.equal(api.statusCode, 200);
    });
  });
}

describe('examples/dpop-client.mjs with server nonces: an authorization server and a gateway route that require one (real oidc-provider)', () => {
  let as: DevAuthorizationServer;
  let api: ExampleApi;
  let gw: TestGateway;
  before(async () => {
    // RFC 9449 §8: the token endpoint answers use_dpop_nonce (400) until the proof carries its nonce.
    as = await startDevAuthorizationServer({ port: 0, features: { dPoP: { nonceSecret: randomBytes(32), requireNonce: () => true } } });
    api = await startExampleApi({ port: 0, issuer: as.issuer, audience: as.audience, jwksUri: `http://127.0.0.1:${as.port}${new URL(as.jwksUri).pathname}` });
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: http://127.0.0.1:${as.port}${new URL(as.introspectionEndpoint).pathname}
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  scope: read
routes:
  - path: /dpop
    upstream: http://127.0.0.1:${api.port}/api
    phantom_token:
      scheme: DPoP
      dpop:
        nonce: true
`);
  });
  after(async () => {
    await gw?.close();
    await api?.close();
    await as?.close();
  });

  test('the client retries once with each server\'s DPoP-Nonce and keeps it for later proofs: a token, then every call 200', async () => {
    const r = await run(`node examples/dpop-client.mjs --as ${as.issuer} --gateway http://localhost:${gw.port} --calls 2`);
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    assert.match(r.out, /token .*\n +-> 400, the server wants a nonce: again with it\n +-> 200, token_type DPoP/);
    assert.match(r.out, /call 1 .*\n +-> 401, the server wants a nonce: again with it\n +-> 200 API called with a valid JWT/);
    assert.match(r.out, /call 2 .*\n +-> 200 API called with a valid JWT/, 'the nonce is kept for the next call');
    assert.equal(r.out.match(/the server wants a nonce/g)?.length, 2, r.out);
    assert.ok(gw.logs.some((l) => l.code === 'ERR_DPOP_NONCE'), 'the gateway asked for a nonce');
  });
});

test('examples/dpop-client.mjs with no demo running: a clear message and exit 1, no stack trace; a bad option: usage and exit 2', async () => {
  // A port nothing listens on: one the kernel just handed out and took back.
  const { createServer } = await import('node:net');
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const r = await run(`node examples/dpop-client.mjs --as http://127.0.0.1:${port} --gateway http://127.0.0.1:${port}`);
  assert.equal(r.code, 1);
  assert.match(r.err, /cannot reach the authorization server/);
  assert.doesNotMatch(r.err, /\n\s+at /);
  const usage = await run('node examples/dpop-client.mjs --bogus');
  assert.equal(usage.code, 2);
  assert.match(usage.err, /Unknown option '--bogus'\nusage: node examples\/dpop-client\.mjs/);
});
