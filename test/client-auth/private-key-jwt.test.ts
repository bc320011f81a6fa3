/*
 * private_key_jwt against the real oidc-provider (which checks iss, sub,
 * aud, exp, the signature against the client's registered keys, and refuses
 * a jti it has seen), with each key type and each way of choosing `aud`; and
 * the assertion itself, read back.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader, exportJWK, jwtVerify } from 'jose';
import { DEV_CLIENTS } from '../../src/dev/authorization-server.js';
import type { AssertionAudience } from '../../src/introspection/client-auth.js';
import { ASSERTION_LIFETIME_SECONDS, JWT_BEARER_ASSERTION, loadClientKeyFile, privateKeyJwt } from '../../src/introspection/private-key-jwt.js';
import { methodSuite } from './method.case.js';
import { startAs } from './peers.js';

const dir = mkdtempSync(join(tmpdir(), 'phantom-gateway-pkjwt-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function pair(type: 'ec' | 'ed25519' | 'rsa'): { privateKey: KeyObject; publicKey: KeyObject } {
  if (type === 'ec') return generateKeyPairSync('ec', { namedCurve: 'P-256' });
  if (type === 'rsa') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  return generateKeyPairSync('ed25519');
}

function pemFile(name: string, key: KeyObject): string {
  const file = join(dir, name);
  writeFileSync(file, key.export({ format: 'pem', type: 'pkcs8' }));
  return file;
}

function jwkFile(name: string, key: KeyObject, extra: Record<string, string>): string {
  const file = join(dir, name);
  writeFileSync(file, `${JSON.stringify({ ...key.export({ format: 'jwk' }), ...extra })}\n`);
  return file;
}

async function registered(key: KeyObject, extra: Record<string, string> = {}) {
  return { ...(await exportJWK(key)), ...extra };
}

const pkjwt = (jwks: object[]) => ({ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: jwks } });

const es = pair('ec');
const ed = pair('ed25519');
const rs = pair('rsa');
const stranger = pair('ec');
const esPem = pemFile('es256.pem', es.privateKey);
const edJwk = jwkFile('ed25519.jwk', ed.privateKey, { kid: 'gateway-2026', alg: 'EdDSA' });
const rsPem = pemFile('rs256.pem', rs.privateKey);
const strangerPem = pemFile('stranger.pem', stranger.privateKey);
const SECRETS = [
  es.privateKey.export({ format: 'jwk' }).d!,
  ed.privateKey.export({ format: 'jwk' }).d!,
  rs.privateKey.export({ format: 'jwk' }).d!,
];
const base = (endpoint: string) => `  introspection_endpoint: ${endpoint}
  introspection_response: json
  client_auth_method: private_key_jwt`;

methodSuite({
  name: 'private_key_jwt, ES256 PEM (no kid), aud = the endpoint called (no issuer configured), json (real oidc-provider)',
  method: 'private_key_jwt',
  startAs: async () => startAs({ introspectionClient: pkjwt([await registered(es.publicKey)]) }),
  accepted: (as) => `${base(as.introspectionEndpoint)}\n  client_key_file: ${esPem}`,
  // A key the server does not know for this client.
  refused: (as) => `${base(as.introspectionEndpoint)}\n  client_key_file: ${strangerPem}`,
  secrets: SECRETS,
  tokenClientId: DEV_CLIENTS.client.id,
  mints: true,
});

methodSuite({
  name: 'private_key_jwt, EdDSA JWK with the registered kid, aud = issuer (configured), json (real oidc-provider)',
  method: 'private_key_jwt',
  // Two keys registered: the kid picks the right one.
  startAs: async () => startAs({ introspectionClient: pkjwt([await registered(stranger.publicKey, { kid: 'other' }), await registered(ed.publicKey, { kid: 'gateway-2026', alg: 'EdDSA' })]) }),
  accepted: (as) => `${base(as.introspectionEndpoint)}\n  issuer: ${as.issuer}\n  client_key_file: ${edJwk}`,
  // The right key under a kid the server has for another key.
  refused: (as) => `${base(as.introspectionEndpoint)}\n  issuer: ${as.issuer}\n  client_key_file: ${jwkFile('ed25519-wrong-kid.jwk', ed.privateKey, { kid: 'other' })}`,
  secrets: SECRETS,
  tokenClientId: DEV_CLIENTS.client.id,
  mints: true,
});

methodSuite({
  name: 'private_key_jwt, RS256 PEM, client_assertion_audience = the token endpoint, json (real oidc-provider)',
  method: 'private_key_jwt',
  startAs: async () => startAs({ introspectionClient: pkjwt([await registered(rs.publicKey)]) }),
  accepted: (as) => `${base(as.introspectionEndpoint)}\n  client_key_file: ${rsPem}\n  client_assertion_audience: ${as.tokenEndpoint}`,
  // An audience that is not this server.
  refused: (as) => `${base(as.introspectionEndpoint)}\n  client_key_file: ${rsPem}\n  client_assertion_audience: https://elsewhere.example`,
  secrets: SECRETS,
  tokenClientId: DEV_CLIENTS.client.id,
  mints: true,
});

describe('private_key_jwt: the assertion', () => {
  const to: AssertionAudience = { issuer: 'https://as.example', tokenEndpoint: 'https://as.example/token', endpoint: 'https://as.example/introspect' };

  async function assertionOf(auth: ReturnType<typeof privateKeyJwt>, target = to) {
    const { headers, form } = await auth.credentials(target);
    assert.deepEqual(headers, {}, 'nothing in the headers: no Basic alongside the assertion');
    const fields = new URLSearchParams(form.slice(1));
    assert.deepEqual([...fields.keys()], ['client_id', 'client_assertion_type', 'client_assertion']);
    assert.equal(fields.get('client_assertion_type'), JWT_BEARER_ASSERTION);
    return { clientId: fields.get('client_id'), assertion: fields.get('client_assertion')! };
  }

  test('iss = sub = client_id, aud the issuer, a fresh jti each call, exp 60 s after iat, signed with the key', async () => {
    const auth = privateKeyJwt('gateway client&1', loadClientKeyFile(esPem), { now: () => 1_800_000_000_500 });
    const a = await assertionOf(auth);
    const b = await assertionOf(auth);
    assert.equal(a.clientId, 'gateway client&1');
    const { payload, protectedHeader } = await jwtVerify(a.assertion, es.publicKey, { currentDate: new Date(1_800_000_000_000) });
    assert.deepEqual(protectedHeader, { alg: 'ES256' }, 'a PEM names no kid, so none is sent');
    assert.equal(payload.iss, 'gateway client&1');
    assert.equal(payload.sub, 'gateway client&1');
    assert.equal(payload.aud, 'https://as.example');
    assert.equal(payload.iat, 1_800_000_000);
    assert.equal(payload.exp, 1_800_000_000 + ASSERTION_LIFETIME_SECONDS);
    assert.equal(ASSERTION_LIFETIME_SECONDS, 60);
    const jtiB = (await jwtVerify(b.assertion, es.publicKey, { currentDate: new Date(1_800_000_000_000) })).payload.jti;
    assert.ok(typeof payload.jti === 'string' && payload.jti.length >= 32);
    assert.notEqual(payload.jti, jtiB, 'never the same jti twice');
    assert.notEqual(a.assertion, b.assertion);
  });

  test('aud: the endpoint called when the issuer is unknown; client_assertion_audience wins over both', async () => {
    const noIssuer = await assertionOf(privateKeyJwt('gw', loadClientKeyFile(esPem)), { ...to, issuer: undefined });
    assert.equal((await jwtVerify(noIssuer.assertion, es.publicKey)).payload.aud, 'https://as.example/introspect');
    const fixed = await assertionOf(privateKeyJwt('gw', loadClientKeyFile(esPem), { audience: 'https://as.example/token' }));
    assert.equal((await jwtVerify(fixed.assertion, es.publicKey)).payload.aud, 'https://as.example/token');
  });

  test('alg and kid follow the key: EdDSA with the JWK\'s kid, RS256', async () => {
    const edA = await assertionOf(privateKeyJwt('gw', loadClientKeyFile(edJwk)));
    assert.deepEqual(decodeProtectedHeader(edA.assertion), { alg: 'EdDSA', kid: 'gateway-2026' });
    await jwtVerify(edA.assertion, ed.publicKey);
    const rsA = await assertionOf(privateKeyJwt('gw', loadClientKeyFile(rsPem)));
    assert.deepEqual(decodeProtectedHeader(rsA.assertion), { alg: 'RS256' });
    await jwtVerify(rsA.assertion, rs.publicKey);
  });

  test('the hint names the method and what to check, and no key material', () => {
    const auth = privateKeyJwt('gw', loadClientKeyFile(esPem));
    assert.equal(auth.method, 'private_key_jwt');
    assert.match(auth.hint, /client_key_file/);
    assert.match(auth.hint, /\(private_key_jwt\)$/);
    for (const s of SECRETS) assert.ok(!auth.hint.includes(s));
  });
});
