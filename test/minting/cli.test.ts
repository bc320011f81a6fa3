/*
 * The command line and minting: `phantom-gateway jwks`, `--check` on key
 * files, and one development key shared by a cluster's workers (real
 * oidc-provider answering JSON).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { request } from 'undici';
import type { JSONWebKeySet } from 'jose';
import type { DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { loadSigningKeyFile } from '../../src/minting/index.js';
import { ensureBuilt, freePort, runCli, scratchDir, startCli } from '../helpers/cli.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { bearerOf, clientCredentials, jsonPhantomToken, keyDir, kidOf, startDevAs, verifyMinted } from './helpers.js';

const yaml = (minting: string, extra = '') => `
phantom_token:
  introspection_endpoint: https://as.example.com/introspect
  client_id: c
  client_secret: s
  introspection_response: json
${minting}
routes:
  - path: /api
    upstream: http://127.0.0.1:9
${extra}`;

describe('phantom-gateway jwks and --check', () => {
  const dir = scratchDir();
  const keys = keyDir();
  before(() => ensureBuilt());
  after(() => {
    dir.cleanup();
    keys.cleanup();
  });

  test('prints the signer and the published keys, public parts only, as a JWKS', async () => {
    const signer = keys.key('signer', 'ec').pem;
    const next = keys.key('next', 'ed25519').jwk;
    const file = dir.write('gw.yaml', yaml(`minting:\n  signing_key_file: ${signer}\n  published_key_files: [${next}]`));
    const r = await runCli(['jwks', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const jwks = JSON.parse(r.stdout) as JSONWebKeySet;
    assert.deepEqual(
      jwks.keys.map((k) => k.kid),
      [loadSigningKeyFile(signer).kid, loadSigningKeyFile(next).kid],
    );
    assert.deepEqual(jwks.keys.map((k) => k.alg), ['ES256', 'EdDSA']);
    for (const k of jwks.keys) assert.equal(k.d, undefined, 'no private part');
    assert.doesNotMatch(r.stdout, /"d"/);
  });

  test('without minting.signing_key_file: exit 2 with a clear message, nothing on stdout', async () => {
    const file = dir.write('dev.yaml', yaml(''));
    const r = await runCli(['jwks', '--config', file]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /minting\.signing_key_file is not set/);
    assert.match(r.stderr, /\/\.well-known\/jwks\.json/);
  });

  test('--help, a missing --config, an unknown flag, a bad configuration', async () => {
    const help = await runCli(['jwks', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: phantom-gateway jwks --config/);
    const top = await runCli(['--help']);
    assert.match(top.stdout, /phantom-gateway jwks --config/);
    assert.equal((await runCli(['jwks'])).code, 2);
    assert.equal((await runCli(['jwks', '--nope'])).code, 2);
    const broken = await runCli(['jwks', '--config', dir.write('broken.yaml', 'routes: 3\n')]);
    assert.equal(broken.code, 2);
    assert.doesNotMatch(broken.stderr, /\n\s+at /, 'no stack trace');
  });

  test('--check reports a key the gateway cannot sign with, with its line', async () => {
    const p384 = keys.write('p384.pem', generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    const file = dir.write('p384.yaml', yaml(`minting:\n  signing_key_file: ${p384}`));
    const r = await runCli(['--config', file, '--check']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /p384\.yaml:8: minting\.signing_key_file: .*p384\.pem: EC keys must be on P-256/);
    const j = await runCli(['jwks', '--config', file]);
    assert.equal(j.code, 2);
    assert.match(j.stderr, /EC keys must be on P-256/);
  });
});

describe('workers: 2 without a signing key file: one key for every worker', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  const dir = scratchDir();
  before(async () => {
    ensureBuilt();
    as = await startDevAs();
    api = await startEchoUpstream();
  });
  after(async () => {
    await api.close();
    await as.close();
    dir.cleanup();
  });

  test('both workers warn with the same kid, publish the same JWKS and sign with that key', async () => {
    const port = await freePort();
    const file = dir.write(
      'workers.yaml',
      `
listen: { host: 127.0.0.1, port: ${port} }
workers: 2
phantom_token:
${jsonPhantomToken(as)}
minting:
  issuer: https://gw.example.com
routes:
  - path: /api
    upstream: ${api.url}
`,
    );
    const run = startCli(['--config', file]);
    try {
      await run.waitFor(/phantom-gateway listening[\s\S]*phantom-gateway listening/, 20_000);
      const warnings = run
        .stdout()
        .split('\n')
        .filter((l) => l.includes('signing_key_file is not set'))
        .map((l) => JSON.parse(l) as { kid: string; worker_pid?: number; pid: number });
      assert.equal(warnings.length, 2, 'each worker warns about the development key');
      assert.notEqual(warnings[0]!.pid, warnings[1]!.pid, 'from two processes');
      assert.equal(warnings[0]!.kid, warnings[1]!.kid, 'about the same key');
      const kid = warnings[0]!.kid;
      // New connections go to the workers in turn (round robin): each fetch and each minted token agree.
      for (let i = 0; i < 4; i++) {
        const res = await request(`http://127.0.0.1:${port}/.well-known/jwks.json`, { headers: { connection: 'close' } });
        const jwks = (await res.body.json()) as JSONWebKeySet;
        assert.deepEqual(jwks.keys.map((k) => k.kid), [kid]);
        const token = await clientCredentials(as);
        const call = await request(`http://127.0.0.1:${port}/api`, { headers: { authorization: `Bearer ${token}`, connection: 'close' } });
        await call.body.dump();
        assert.equal(call.statusCode, 200);
        const jwt = bearerOf(api.received.at(-1)!.headers.authorization);
        assert.equal(kidOf(jwt), kid);
        await verifyMinted(jwt, jwks, { issuer: 'https://gw.example.com' });
      }
      assert.doesNotMatch(run.stdout() + run.stderr(), /"d":"/, 'the key is never logged');
    } finally {
      run.child.kill('SIGTERM');
      await run.exited;
    }
  });
});
