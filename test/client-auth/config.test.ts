/*
 * Client authentication options are checked when the configuration is
 * loaded: a key or certificate the gateway cannot use is a configuration
 * error naming the option and its YAML line (so --check reports it), never a
 * crash at start or a failure on the first request.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { clientAuthFor } from '../../src/introspection/client-auth.js';
import { runCli, ensureBuilt } from '../helpers/cli.js';
import { makeTestPki } from './certs.js';

const dir = mkdtempSync(join(tmpdir(), 'phantom-gateway-clientauth-config-'));
const pki = makeTestPki('gateway');
after(() => {
  rmSync(dir, { recursive: true, force: true });
  pki.cleanup();
});

function file(name: string, text: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const goodKey = file('good.pem', ec.privateKey.export({ format: 'pem', type: 'pkcs8' }));
const publicJwk = file('public.jwk', JSON.stringify(ec.publicKey.export({ format: 'jwk' })));
const publicPem = file('public.pem', ec.publicKey.export({ format: 'pem', type: 'spki' }));
const octJwk = file('oct.jwk', JSON.stringify({ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0', kid: 'hmac' }));
const p384 = file('p384.pem', generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
const rsa1024 = file('rsa1024.pem', generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
const notJson = file('broken.jwk', '{ "kty": "EC", ');

const yaml = (pt: string, route = '') => `phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: gateway
${pt}
routes:
  - path: /api
    upstream: http://127.0.0.1:9
${route}`;

/** The problems reported for `text`; fails if it is accepted. */
function problems(text: string): readonly string[] {
  try {
    parseConfig(text, { file: 'gateway.yaml', env: {} });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('configuration was accepted');
}

function lineOf(text: string, needle: string): number {
  return text.split('\n').findIndex((l) => l.includes(needle)) + 1;
}

describe('private_key_jwt: client_key_file checked at load', () => {
  const pk = (key: string) => `  client_auth_method: private_key_jwt\n  client_key_file: ${key}`;

  test('a usable key (PEM or JWK) is accepted', () => {
    parseConfig(yaml(pk(goodKey)), { env: {} });
    parseConfig(yaml(pk(file('good.jwk', JSON.stringify({ ...ec.privateKey.export({ format: 'jwk' }), kid: 'k1' })))), { env: {} });
  });

  const cases: Array<[string, string, RegExp]> = [
    ['a public JWK', publicJwk, /the JWK is a public key; the gateway needs the private key to sign/],
    ['a public PEM', publicPem, /not a private key in PEM or JWK form/],
    ['a certificate', pki.client.certFile, /not a private key in PEM or JWK form/],
    ['a symmetric JWK', octJwk, /a symmetric \(oct\) key cannot sign client assertions/],
    ['an EC key on P-384', p384, /EC keys must be on P-256/],
    ['an RSA key of 1024 bits', rsa1024, /RSA keys must have at least 2048 bits/],
    ['broken JSON', notJson, /not a private key in PEM or JWK form/],
  ];
  for (const [what, key, message] of cases) {
    test(`${what}: a configuration error at client_key_file's line`, () => {
      const text = yaml(pk(key));
      const p = problems(text);
      assert.equal(p.length, 1, p.join('\n'));
      assert.ok(p[0]!.startsWith(`gateway.yaml:${lineOf(text, 'client_key_file')}: phantom_token.client_key_file: ${key}: `), p[0]);
      assert.match(p[0]!, message);
    });
  }

  test('on a route: the route\'s line, and the route named', () => {
    const text = yaml('  client_auth_method: private_key_jwt\n  client_key_file: ' + goodKey, `    phantom_token:\n      client_key_file: ${publicJwk}\n`);
    const p = problems(text);
    assert.equal(p.length, 1, p.join('\n'));
    assert.ok(p[0]!.startsWith(`gateway.yaml:${lineOf(text, `client_key_file: ${publicJwk}`)}: routes[0].phantom_token.client_key_file: `), p[0]);
  });

  test('unreadable and missing files: cannot read', { skip: process.getuid?.() === 0 ? 'root reads any file' : false }, () => {
    const locked = file('locked.pem', ec.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    chmodSync(locked, 0o000);
    assert.match(problems(yaml(pk(locked)))[0]!, /phantom_token\.client_key_file: cannot read ".*locked\.pem" \(EACCES\)/);
  });

  test('a missing file: cannot read (ENOENT)', () => {
    assert.match(problems(yaml(pk(join(dir, 'nope.pem'))))[0]!, /phantom_token\.client_key_file: cannot read ".*nope\.pem" \(ENOENT\)/);
  });

  test('without client_key_file: required', () => {
    assert.match(problems(yaml('  client_auth_method: private_key_jwt'))[0]!, /phantom_token\.client_key_file is required .* with client_auth_method private_key_jwt/);
  });

  test('client_assertion_audience with another method: refused, it would be ignored', () => {
    const text = yaml('  client_secret: s\n  client_assertion_audience: https://as.example/token');
    const p = problems(text);
    assert.deepEqual(p, [`gateway.yaml:${lineOf(text, 'client_assertion_audience')}: phantom_token.client_assertion_audience: is only used with client_auth_method private_key_jwt (this route uses client_secret_basic)`]);
    parseConfig(yaml(`${pk(goodKey)}\n  client_assertion_audience: https://as.example/token`), { env: {} });
  });

  test('--check reports an unusable key with exit 2, the file, line and reason', async () => {
    ensureBuilt();
    const text = yaml(pk(publicJwk));
    const config = file('check.yaml', text);
    const r = await runCli(['--config', config, '--check']);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(`${config}:${lineOf(text, 'client_key_file')}: phantom_token.client_key_file: ${publicJwk}: the JWK is a public key`), r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});

describe('tls_client_auth: client_cert_file and client_key_file checked at load', () => {
  const tls = (cert: string, key: string) => `  client_auth_method: tls_client_auth\n  client_cert_file: ${cert}\n  client_key_file: ${key}`;

  test('a certificate and its key are accepted', () => {
    parseConfig(yaml(tls(pki.client.certFile, pki.client.keyFile)), { env: {} });
  });

  test('a key that is not the certificate\'s', () => {
    const text = yaml(tls(pki.client.certFile, pki.otherSubject.keyFile));
    assert.deepEqual(problems(text), [
      `gateway.yaml:${lineOf(text, 'client_key_file')}: phantom_token.client_key_file: ${pki.otherSubject.keyFile}: is not the key of the certificate in ${pki.client.certFile}`,
    ]);
  });

  test('an http:// endpoint: refused, a client certificate needs TLS', () => {
    const text = yaml(tls(pki.client.certFile, pki.client.keyFile)).replace('https://as.example/introspect', 'http://as.example/introspect');
    assert.deepEqual(problems(text), [
      `gateway.yaml:${lineOf(text, 'client_auth_method')}: phantom_token.client_auth_method: tls_client_auth needs an https:// introspection_endpoint (a client certificate is sent in the TLS handshake); http://as.example/introspect is http`,
    ]);
  });

  test('files swapped: the certificate file holds a key, the key file a certificate', () => {
    const text = yaml(tls(pki.client.keyFile, pki.client.certFile));
    const p = problems(text);
    assert.equal(p.length, 2, p.join('\n'));
    assert.ok(p.some((l) => l.startsWith(`gateway.yaml:${lineOf(text, 'client_cert_file')}: phantom_token.client_cert_file: `) && l.endsWith('not an X.509 certificate in PEM form')), p.join('\n'));
    assert.ok(p.some((l) => l.startsWith(`gateway.yaml:${lineOf(text, 'client_key_file')}: phantom_token.client_key_file: `) && l.includes('not a private key in PEM form')), p.join('\n'));
  });
});

describe('client secrets from files', () => {
  test('one trailing newline (LF or CRLF) is not part of the secret; other whitespace is', () => {
    const basic = (f: string) => clientAuthFor({ client_auth_method: 'client_secret_basic', client_id: 'gw', client_secret_file: f }).credentials({ issuer: undefined, tokenEndpoint: undefined, endpoint: 'https://as/i' });
    const decoded = (f: string) => Buffer.from((basic(f) as { headers: Record<string, string> }).headers.authorization!.slice(6), 'base64').toString();
    assert.equal(decoded(file('lf', 's3cret\n')), 'gw:s3cret');
    assert.equal(decoded(file('crlf', 's3cret\r\n')), 'gw:s3cret');
    assert.equal(decoded(file('spaces', ' s3cret \n\n')), 'gw:+s3cret+%0A', 'only one newline is dropped; the rest is the secret');
  });

  test('an empty secret file (or a lone newline): a configuration error at its line', () => {
    const empty = file('empty', '\n');
    const text = yaml(`  client_auth_method: client_secret_post\n  client_secret_file: ${empty}`);
    assert.deepEqual(problems(text), [`gateway.yaml:${lineOf(text, 'client_secret_file')}: phantom_token.client_secret_file: "${empty}" is empty`]);
  });
});
