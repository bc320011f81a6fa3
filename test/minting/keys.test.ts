/*
 * Signing key files: PEM and JWK, ES256, EdDSA and RS256 sign tokens that
 * verify; keys the gateway cannot sign with are configuration errors that
 * name the option, its line and the file.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, type JSONWebKeySet } from 'jose';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { KeySet, loadPublishedKeyFile, loadSigningKeyFile, Minter } from '../../src/minting/index.js';
import { keyDir, kidOf, verifyMinted } from './helpers.js';

const keys = keyDir();
after(() => keys.cleanup());

describe('key files that sign', () => {
  for (const [kind, alg] of [
    ['ec', 'ES256'],
    ['ed25519', 'EdDSA'],
    ['rsa', 'RS256'],
  ] as const) {
    for (const form of ['pem', 'jwk'] as const) {
      test(`${alg} from a ${form.toUpperCase()} file: tokens verify against the published key, kid is the RFC 7638 thumbprint`, async () => {
        const file = keys.key(`${kind}-${form}`, kind)[form];
        const key = loadSigningKeyFile(file);
        assert.equal(key.alg, alg);
        const { kid: _kid, alg: _alg, use, ...bare } = key.publicJwk;
        assert.equal(use, 'sig');
        assert.equal(key.kid, await calculateJwkThumbprint(bare as never, 'sha256'));
        const set = new KeySet(key);
        const minter = new Minter({ issuer: 'https://gw.example.com', maxLifetimeSeconds: 60, copyClaims: [], keys: set, audience: 'api' });
        const { jwt } = await minter.mint({ client_id: 'c', scope: 'read', sub: 'alice' });
        assert.equal(kidOf(jwt), key.kid);
        const { payload, header } = await verifyMinted(jwt, set.jwks() as JSONWebKeySet, { issuer: 'https://gw.example.com', audience: 'api' });
        assert.equal(header.alg, alg);
        assert.equal(payload.sub, 'alice');
        assert.equal(loadSigningKeyFile(keys.key(`${kind}-${form}-again`, kind)[form]).kid === key.kid, false, 'another key, another kid');
      });
    }
  }

  test('SEC1 and PKCS#1 PEM load too; a JWK keeps its own kid; the same file gives the same kid every time', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    assert.equal(loadSigningKeyFile(keys.write('sec1.pem', ec.export({ format: 'pem', type: 'sec1' }).toString())).alg, 'ES256');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    assert.equal(loadSigningKeyFile(keys.write('pkcs1.pem', rsa.export({ format: 'pem', type: 'pkcs1' }).toString())).alg, 'RS256');
    const withKid = keys.write('kid.jwk', JSON.stringify({ ...ec.export({ format: 'jwk' }), kid: '2026-11' }));
    assert.equal(loadSigningKeyFile(withKid).kid, '2026-11');
    assert.equal(loadSigningKeyFile(withKid).publicJwk.kid, '2026-11');
    const f = keys.key('stable', 'ec').pem;
    assert.equal(loadSigningKeyFile(f).kid, loadSigningKeyFile(f).kid);
  });
});

describe('published_key_files', () => {
  test('take the private key file or only its public half (SPKI PEM, public JWK), with the same kid; never publish a private part', () => {
    const k = keys.key('pub', 'ed25519');
    const kid = loadSigningKeyFile(k.pem).kid;
    const spki = keys.write('pub.spki.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString());
    const pubJwk = keys.write('pub.public.jwk', JSON.stringify(createPublicKey(k.privateKey).export({ format: 'jwk' })));
    assert.equal(loadPublishedKeyFile(pubJwk).kid, kid);
    assert.equal(loadPublishedKeyFile(k.pem).kid, kid);
    assert.equal(loadPublishedKeyFile(spki).alg, 'ES256');
    const cfg = parseConfig(
      `
phantom_token:
  introspection_endpoint: https://as.example.com/introspect
  client_id: c
  client_secret: s
  introspection_response: json
minting:
  signing_key_file: ${keys.key('signer-pub', 'ec').pem}
  published_key_files: [${pubJwk}, ${spki}, ${k.jwk}]
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`,
      { file: 'gw.yaml', env: {} },
    );
    const set = new KeySet(loadSigningKeyFile(cfg.minting.signing_key_file!), cfg.minting.published_key_files.map(loadPublishedKeyFile));
    const published = set.jwks().keys;
    assert.equal(published.length, 3, 'the private and public files of one key are one key');
    for (const p of published) assert.equal(p.d, undefined);
  });
});

describe('key files that cannot sign: configuration errors with the line and the file', () => {
  const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const bad: [string, string, RegExp][] = [
    ['p384.pem', ec384.export({ format: 'pem', type: 'pkcs8' }).toString(), /EC keys must be on P-256 \(ES256\); this one is on secp384r1/],
    ['public.jwk', JSON.stringify(ec.publicKey.export({ format: 'jwk' })), /the JWK is a public key/],
    ['rsa1024.pem', rsa1024.export({ format: 'pem', type: 'pkcs8' }).toString(), /RSA keys must have at least 2048 bits/],
    ['public.pem', ec.publicKey.export({ format: 'pem', type: 'spki' }).toString(), /not a private key in PEM or JWK form/],
    ['set.jwk', JSON.stringify({ keys: [ec.privateKey.export({ format: 'jwk' })] }), /is a JWK set/],
    ['alg.jwk', JSON.stringify({ ...ec.privateKey.export({ format: 'jwk' }), alg: 'ES384' }), /the JWK says alg ES384, but this key signs ES256/],
    ['encrypted.pem', ec.privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'x' }).toString(), /encrypted/],
    ['garbage.pem', 'hello', /not a private key in PEM or JWK form/],
  ];
  const yaml = (signing: string, published: string[] = []) => `
phantom_token:
  introspection_endpoint: https://as.example.com/introspect
  client_id: c
  client_secret: s
  introspection_response: json
minting:
  signing_key_file: ${signing}
  published_key_files: [${published.join(', ')}]
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`;
  for (const [name, text, why] of bad) {
    test(`${name}: refused by parseConfig (so --check reports it)`, () => {
      const file = keys.write(name, text);
      assert.throws(
        () => parseConfig(yaml(file), { file: 'gw.yaml', env: {} }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.equal(err.problems.length, 1, err.message);
          const p = err.problems[0]!;
          assert.ok(p.startsWith(`gw.yaml:8: minting.signing_key_file: ${file}: `), p);
          assert.match(p, why);
          assert.doesNotMatch(p, /BEGIN|"d"/, 'no key material in the message');
          return true;
        },
      );
    });
  }

  test('an unreadable file, a directory, and a bad published key each name their option and line', () => {
    const good = keys.key('good', 'ec').pem;
    const p384 = keys.write('p384-published.pem', ec384.export({ format: 'pem', type: 'pkcs8' }).toString());
    assert.throws(
      () => parseConfig(yaml(`${keys.dir}/missing.pem`, [good, p384, keys.dir]), { file: 'gw.yaml', env: {} }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        const text = err.problems.join('\n');
        assert.match(text, /gw\.yaml:8: minting\.signing_key_file: .*missing\.pem: cannot read the key file \(ENOENT\)/);
        assert.match(text, /gw\.yaml:9: minting\.published_key_files\[1\]: .*p384-published\.pem: EC keys must be on P-256/);
        assert.match(text, /gw\.yaml:9: minting\.published_key_files\[2\]: .*: cannot read the key file \(EISDIR\)/);
        assert.equal(err.problems.length, 3);
        return true;
      },
    );
  });

  test('minting.audience: a string or a non-empty list', () => {
    const good = keys.key('aud', 'ec').pem;
    const cfg = parseConfig(yaml(good).replace('minting:\n', 'minting:\n  audience: [a, b]\n'), { file: 'gw.yaml', env: {} });
    assert.deepEqual(cfg.minting.audience, ['a', 'b']);
    assert.throws(() => parseConfig(yaml(good).replace('minting:\n', 'minting:\n  audience: []\n'), { file: 'gw.yaml', env: {} }), /gw\.yaml:8: minting\.audience: must not be empty/);
  });
});
