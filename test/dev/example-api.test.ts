import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { request } from 'undici';
import { startExampleApi, type ExampleApi } from '../../src/dev/example-api.js';
import { dpopKey, proof } from '../helpers/dpop.js';

describe('example API validates the JWT itself', () => {
  const issuer = 'http://localhost:8443';
  const audience = 'api.example.com';
  let api: ExampleApi;
  let good: CryptoKey;
  let evil: CryptoKey;

  const jwt = (key: CryptoKey, claims: Record<string, unknown> = {}, opts: { typ?: string; aud?: string; iss?: string; exp?: number } = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ client_id: 'test-client', scope: 'read', ...claims })
      .setProtectedHeader({ alg: 'ES256', typ: opts.typ ?? 'at+jwt', kid: 'k1' })
      .setIssuer(opts.iss ?? issuer)
      .setAudience(opts.aud ?? audience)
      .setSubject('test-client')
      .setIssuedAt(now - 60)
      .setExpirationTime(opts.exp ?? now + 300)
      .sign(key);
  };
  const call = async (token: string, opts: { scheme?: string; headers?: Record<string, string | string[]> } = {}) => {
    const res = await request(`http://127.0.0.1:${api.port}/api`, { headers: { authorization: `${opts.scheme ?? 'Bearer'} ${token}`, ...opts.headers } });
    return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as Record<string, any> };
  };

  before(async () => {
    const kp = await generateKeyPair('ES256', { extractable: true });
    good = kp.privateKey;
    evil = (await generateKeyPair('ES256')).privateKey;
    const keys = createLocalJWKSet({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'ES256' }] });
    api = await startExampleApi({ port: 0, issuer, audience, keys });
  });
  after(() => api.close());

  test('a valid JWT with scope read -> 200 with its claims', async () => {
    const res = await call(await jwt(good));
    assert.equal(res.status, 200);
    assert.equal(res.body.tokenPayload.scope, 'read');
  });
  test('a forged JWT (signed by another key) -> 401', async () => {
    assert.equal((await call(await jwt(evil))).status, 401);
  });
  test('wrong audience -> 401', async () => {
    assert.equal((await call(await jwt(good, {}, { aud: 'other-api' }))).status, 401);
  });
  test('wrong issuer -> 401', async () => {
    assert.equal((await call(await jwt(good, {}, { iss: 'https://evil.example' }))).status, 401);
  });
  test('expired JWT -> 401', async () => {
    assert.equal((await call(await jwt(good, {}, { exp: Math.floor(Date.now() / 1000) - 120 }))).status, 401);
  });
  test('an ID token or other JWT type (typ JWT) -> 401', async () => {
    assert.equal((await call(await jwt(good, {}, { typ: 'JWT' }))).status, 401);
  });
  test('an opaque token -> 401', async () => {
    assert.equal((await call('Ymwn-_Sgcgq4aYB9M_Pm_BPwNwX6K0uyEDZnVVm8WqS')).status, 401);
  });
  test('no read scope -> 403', async () => {
    const res = await call(await jwt(good, { scope: 'write' }));
    assert.equal(res.status, 403);
    assert.equal(res.body.code, 'forbidden');
  });

  describe('Authorization: DPoP <jwt> (what the gateway forwards on a DPoP route)', () => {
    const htu = 'http://localhost:8080/dpop';
    test('the forwarded proof signed by the cnf.jkt key, for this method -> 200; the answer shows cnf.jkt and X-DPoP-Verified', async () => {
      const key = await dpopKey();
      const token = await jwt(good, { cnf: { jkt: key.jkt } });
      const res = await call(token, { scheme: 'DPoP', headers: { dpop: await proof({ key, htm: 'GET', htu, accessToken: 'opaque' }), 'x-dpop-verified': key.jkt } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body.dpop, { jkt: key.jkt, verifiedByGateway: key.jkt });
      const without = await call(token, { scheme: 'dpop', headers: { dpop: await proof({ key, htm: 'GET', htu }) } });
      assert.equal(without.status, 200);
      assert.equal(without.body.dpop.verifiedByGateway, null);
    });
    test('a proof by another key, for another method, two proofs, none, a JWT without cnf.jkt -> 401 DPoP invalid_token', async () => {
      const key = await dpopKey();
      const other = await dpopKey();
      const token = await jwt(good, { cnf: { jkt: key.jkt } });
      const cases: [string, string, Record<string, string | string[]>][] = [
        ['another key', token, { dpop: await proof({ key: other, htm: 'GET', htu }) }],
        ['another method', token, { dpop: await proof({ key, htm: 'POST', htu }) }],
        ['two proofs', token, { dpop: [await proof({ key, htm: 'GET', htu }), await proof({ key, htm: 'GET', htu })] }],
        ['typ JWT', token, { dpop: await proof({ key, htm: 'GET', htu, typ: 'JWT' }) }],
        ['no proof', token, {}],
        ['an unbound JWT', await jwt(good), { dpop: await proof({ key, htm: 'GET', htu }) }],
      ];
      for (const [name, t, headers] of cases) {
        const res = await call(t, { scheme: 'DPoP', headers });
        assert.equal(res.status, 401, name);
        assert.equal(res.headers['www-authenticate'], 'DPoP error="invalid_token"', name);
      }
    });
  });
});
