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
import { startDemo, type Demo, type DemoDialect } from '../../src/dev/demo.js';
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

test('examples/dpop-client.mjs with no demo running: a clear message and exit 1, no stack trace', async () => {
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
});
