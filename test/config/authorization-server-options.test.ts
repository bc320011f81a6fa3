/*
 * Configuration of the authorization-server options of issue 10: which
 * combinations start, and which stop start-up with a message naming the
 * option and its line (dialects, discovery, client authentication, minting).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import type { GatewayConfig, PhantomTokenOptions } from '../../src/config/schema.js';

const FILE = 'gateway.yaml';
const dir = mkdtempSync(join(tmpdir(), 'pg-as-options-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function lineOf(text: string, needle: string): number {
  const i = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `fixture has no line containing ${needle}`);
  return i + 1;
}

function parse(text: string, env: Record<string, string> = {}): GatewayConfig {
  return parseConfig(text, { file: FILE, env });
}

function problems(text: string, env: Record<string, string> = {}): readonly string[] {
  try {
    parse(text, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('configuration was accepted');
}

function options(cfg: GatewayConfig, i = 0): Readonly<PhantomTokenOptions> {
  const pt = cfg.routes[i]!.phantom_token;
  assert.ok(pt !== false);
  return pt;
}

/** A configuration with `block` as the top-level phantom_token options. */
const withOptions = (block: string) => `phantom_token:
  client_id: gateway
${block}routes:
  - path: /api
    upstream: http://127.0.0.1:3000
`;

describe('config: where the authorization server is', () => {
  test('issuer alone stands in for introspection_endpoint (discovery)', () => {
    const pt = options(parse(withOptions('  issuer: https://as.example.com\n  client_secret: s\n')));
    assert.equal(pt.issuer, 'https://as.example.com');
    assert.equal(pt.introspection_endpoint, undefined);
  });

  test('neither introspection_endpoint nor issuer: required, naming both, at the route', () => {
    const text = withOptions('  client_secret: s\n');
    const all = problems(text);
    assert.equal(all.length, 1, all.join('\n'));
    assert.match(all[0]!, new RegExp(`^${FILE}:${lineOf(text, '- path: /api')}: phantom_token\\.introspection_endpoint is required for protected route routes\\[0\\] \\("/api"\\) \\(or issuer`));
  });

  test('an issuer that is not an http(s) URL is refused with its line', () => {
    const text = withOptions('  issuer: as.example.com\n  client_secret: s\n');
    const all = problems(text);
    assert.match(all[0]!, new RegExp(`^${FILE}:${lineOf(text, 'issuer:')}: phantom_token\\.issuer: is not a URL \\(the issuer URL must be absolute`));
  });

  test('token_introspection_jwt needs issuer (the signed answer\'s iss is checked against it)', () => {
    const text = withOptions('  introspection_endpoint: https://as.example.com/introspect\n  client_secret: s\n  introspection_response: token_introspection_jwt\n');
    const all = problems(text);
    assert.equal(all.length, 1, all.join('\n'));
    assert.match(all[0]!, /phantom_token\.issuer is required for protected route routes\[0\] \("\/api"\) with introspection_response token_introspection_jwt/);
  });

  test('introspection_response: the defaults are Curity\'s; an unknown value lists the allowed ones', () => {
    const pt = options(parse(withOptions('  introspection_endpoint: https://as.example.com/introspect\n  client_secret: s\n')));
    assert.equal(pt.introspection_response, 'jwt');
    assert.equal(pt.client_auth_method, 'client_secret_basic');
    assert.equal(pt.access_tokens_only, true);
    const text = withOptions('  introspection_endpoint: https://as.example.com/introspect\n  client_secret: s\n  introspection_response: rfc7662\n');
    assert.match(problems(text)[0]!, /phantom_token\.introspection_response: must be one of "jwt", "jwt_claim", "json", "token_introspection_jwt", "auto"/);
  });
});

describe('config: client authentication', () => {
  const endpoint = '  introspection_endpoint: https://as.example.com/introspect\n';

  test('client_secret and client_secret_file together: one problem, at the file option', () => {
    const file = join(dir, 'secret');
    writeFileSync(file, 's3cret\n');
    const text = withOptions(`${endpoint}  client_secret: s\n  client_secret_file: ${file}\n`);
    const all = problems(text);
    assert.equal(all.length, 1, all.join('\n'));
    assert.match(all[0]!, new RegExp(`^${FILE}:${lineOf(text, 'client_secret_file')}: phantom_token\\.client_secret_file: client_secret and client_secret_file are both set`));
  });

  test('client_secret_basic without any secret: required, naming the method and the file alternative', () => {
    const all = problems(withOptions(endpoint));
    assert.equal(all.length, 1, all.join('\n'));
    assert.match(all[0]!, /phantom_token\.client_secret is required for protected route routes\[0\] \("\/api"\) with client_auth_method client_secret_basic \(or client_secret_file\)/);
  });

  test('an unreadable client_secret_file stops start-up with its line', () => {
    const text = withOptions(`${endpoint}  client_secret_file: ${join(dir, 'missing')}\n`);
    const all = problems(text);
    assert.equal(all.length, 1, all.join('\n'));
    assert.match(all[0]!, new RegExp(`^${FILE}:${lineOf(text, 'client_secret_file')}: phantom_token\\.client_secret_file: cannot read ".*missing" \\(ENOENT\\)`));
  });

  test('private_key_jwt needs client_key_file, and no secret', () => {
    const all = problems(withOptions(`${endpoint}  client_auth_method: private_key_jwt\n`));
    assert.equal(all.length, 1, all.join('\n'));
    assert.match(all[0]!, /phantom_token\.client_key_file is required for protected route routes\[0\] \("\/api"\) with client_auth_method private_key_jwt/);
  });

  test('tls_client_auth needs a certificate and its key: both reported in one run', () => {
    const all = problems(withOptions(`${endpoint}  client_auth_method: tls_client_auth\n`));
    assert.equal(all.length, 2, all.join('\n'));
    assert.match(all[0]!, /phantom_token\.client_cert_file is required/);
    assert.match(all[1]!, /phantom_token\.client_key_file is required/);
  });

  test('a route may use another method than the default block', () => {
    const key = join(dir, 'key.pem');
    writeFileSync(key, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const cfg = parse(`phantom_token:
  introspection_endpoint: https://as.example.com/introspect
  client_id: gateway
  client_secret: s
routes:
  - path: /a
    upstream: http://127.0.0.1:3000
  - path: /b
    upstream: http://127.0.0.1:3000
    phantom_token:
      client_auth_method: private_key_jwt
      client_key_file: ${key}
`);
    assert.equal(options(cfg, 0).client_auth_method, 'client_secret_basic');
    assert.equal(options(cfg, 1).client_auth_method, 'private_key_jwt');
  });
});

describe('config: audience and minting', () => {
  const base = '  introspection_endpoint: https://as.example.com/introspect\n  client_secret: s\n';

  test('audience: a string or a list; an empty list is refused', () => {
    assert.equal(options(parse(withOptions(`${base}  audience: api.example.com\n`))).audience, 'api.example.com');
    assert.deepEqual(options(parse(withOptions(`${base}  audience: [a, b]\n`))).audience, ['a', 'b']);
    const text = withOptions(`${base}  audience: []\n`);
    assert.match(problems(text)[0]!, new RegExp(`^${FILE}:${lineOf(text, 'audience')}: phantom_token\\.audience: `));
  });

  test('a minting route without signing_key_file starts in development, and is refused with NODE_ENV=production', () => {
    const text = withOptions(`${base}  introspection_response: json\n`);
    assert.equal(options(parse(text)).introspection_response, 'json');
    const all = problems(text, { NODE_ENV: 'production' });
    assert.equal(all.length, 1, all.join('\n'));
    assert.match(all[0]!, /minting\.signing_key_file: is required with NODE_ENV=production when a route mints tokens/);
    // A route that does not mint needs no key, in production too.
    assert.equal(options(parse(withOptions(base), { NODE_ENV: 'production' })).introspection_response, 'jwt');
  });

  test('unreadable minting key files stop start-up with their lines', () => {
    const text = `${withOptions(base)}minting:
  signing_key_file: ${join(dir, 'nope.pem')}
  published_key_files:
    - ${join(dir, 'old.pem')}
`;
    const all = problems(text);
    assert.equal(all.length, 2, all.join('\n'));
    assert.match(all[0]!, new RegExp(`^${FILE}:${lineOf(text, 'signing_key_file')}: minting\\.signing_key_file: .*cannot read`));
    assert.match(all[1]!, new RegExp(`^${FILE}:${lineOf(text, 'old.pem')}: minting\\.published_key_files\\[0\\]: .*cannot read`));
  });

  test('copy_claims and max_lifetime_seconds have bounds', () => {
    const text = `${withOptions(base)}minting:\n  max_lifetime_seconds: 0\n  copy_claims: ["has space"]\n`;
    const all = problems(text);
    assert.equal(all.length, 2, all.join('\n'));
    assert.match(all.join('\n'), /minting\.max_lifetime_seconds: must be at least 1/);
    assert.match(all.join('\n'), /minting\.copy_claims\[0\]: claim names must be/);
  });
});
