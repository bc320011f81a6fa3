/*
 * Review of issue 10's foundation: the minting keys (src/minting/keys.ts,
 * key-set.ts, minter.ts, and their configuration in src/config/load.ts).
 * Each test names the weakness it shows.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { createGuards } from '../../src/core/guards.js';
import { createLogger } from '../../src/observability/logger.js';
import { KeySet, Minter, signingKey, signingKeyFromText } from '../../src/minting/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-review-keys-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const quiet = () => createLogger('error', new Writable({ write: (_c, _e, cb) => cb() }));

const mintingConfig = (minting: string) => `
phantom_token:
  introspection_endpoint: http://127.0.0.1:9/introspect
  client_id: gateway
  client_secret: s
  introspection_response: json
minting:
  issuer: https://gateway.example
${minting}
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`;

describe('review i10: KeySet.rotate() while a mint is signing unpublishes the key of the token being signed', () => {
  test('a token minted across a rotation verifies against the published JWKS', async () => {
    const first = signingKey(ec().privateKey, undefined);
    const next = signingKey(ec().privateKey, undefined);
    const keys = new KeySet(first);
    const minter = new Minter({ issuer: 'https://gateway.example', maxLifetimeSeconds: 300, copyClaims: [], keys });
    const now = Math.floor(Date.now() / 1000);
    // mint() reads the signer, then awaits the signature; a rotation (key
    // reload) lands in between. The old signer had signed nothing yet, so
    // rotate() does not keep it, and mint() reports the token to a key the
    // set no longer tracks (KeySet.signed ignores it).
    const minting = minter.mint({ sub: 'user-1', client_id: 'app', scope: 'read', exp: now + 600 });
    keys.rotate(next);
    const { jwt } = await minting;
    const kid = decodeProtectedHeader(jwt).kid;
    const published = keys.jwks().keys.map((k) => k.kid);
    assert.ok(published.includes(kid), `token signed with kid ${kid}, JWKS publishes only ${published.join(', ')}: the API cannot verify it`);
    await jwtVerify(jwt, createLocalJWKSet(keys.jwks() as { keys: JWK[] }), { issuer: 'https://gateway.example' });
  });
});

describe('review i10: published_key_files ("other public keys to publish") refuses public keys', () => {
  test('a public PEM and a public JWK are published next to the signer', () => {
    const signer = join(dir, 'signer.pem');
    writeFileSync(signer, ec().privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const nextPem = join(dir, 'next-public.pem');
    const nextPair = ec();
    writeFileSync(nextPem, nextPair.publicKey.export({ format: 'pem', type: 'spki' }));
    const prevJwk = join(dir, 'previous-public.jwk');
    const prevPair = ec();
    writeFileSync(prevJwk, JSON.stringify({ ...prevPair.publicKey.export({ format: 'jwk' }), kid: 'previous' }));
    const config = parseConfig(mintingConfig(`  signing_key_file: ${signer}\n  published_key_files:\n    - ${nextPem}\n    - ${prevJwk}\n`), { file: 'gateway.yaml', env: {} });
    // Publishing a key must not need its private half: the previous signer of
    // another instance, or the next key announced ahead of use, is exactly a
    // key this instance should not hold the secret of.
    let guards;
    try {
      guards = createGuards(config, { logger: quiet() });
    } catch (err) {
      assert.fail(`the gateway does not start with public keys in published_key_files: ${(err as Error).message}`);
    }
    try {
      const kids = guards.jwks()!.keys.map((k) => k.kid);
      assert.equal(kids.length, 3);
      assert.ok(kids.includes('previous'));
    } finally {
      void guards.close();
    }
  });
});

describe('review i10: a signing key the gateway cannot use passes the configuration check and fails only when guards are built', () => {
  test('an EC P-384 signing_key_file is refused by parseConfig with the option and its line', () => {
    const file = join(dir, 'p384.pem');
    writeFileSync(file, generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    let problems: readonly string[] = [];
    try {
      parseConfig(mintingConfig(`  signing_key_file: ${file}\n`), { file: 'gateway.yaml', env: {} });
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      problems = err.problems;
    }
    assert.ok(
      problems.some((p) => /minting\.signing_key_file/.test(p) && /P-256/.test(p)),
      `parseConfig accepted an unusable signing key (problems: ${JSON.stringify(problems)}); it is only refused later, outside config checking, by createGuards`,
    );
  });
});

describe('review i10: a JWK whose private part does not match its public part loads, and then every mint fails (500 per request)', () => {
  test('the key is refused when it is loaded (start-up), not on each request', async () => {
    const a = ec().privateKey.export({ format: 'jwk' });
    const b = ec().privateKey.export({ format: 'jwk' });
    let key;
    try {
      key = signingKeyFromText(JSON.stringify({ ...b, d: a.d }), 'mixed.jwk'); // x/y of one key, d of another: a copy-paste slip
    } catch {
      return; // refused at load: what is wanted
    }
    const minter = new Minter({ issuer: 'https://gateway.example', maxLifetimeSeconds: 300, copyClaims: [], keys: new KeySet(key) });
    let outcome: string;
    try {
      const { jwt } = await minter.mint({ sub: 'user-1', client_id: 'app', scope: 'read' });
      outcome = `it minted ${jwt.slice(0, 20)}...`;
    } catch (err) {
      outcome = `mint() then throws ${(err as Error).name}: ${(err as Error).message} on every request (ERR_INTERNAL)`;
    }
    assert.fail(`signingKeyFromText accepted a JWK whose d does not belong to its x/y; ${outcome}`);
  });
});
