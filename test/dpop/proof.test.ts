/*
 * DPoP proof verification (RFC 9449 §4.3) on its own: proofs made with jose
 * by a real client key, every check broken one at a time, each refused with
 * its own code.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { DpopProofError, DpopVerifier, normalizeHtu, type DpopFailure } from '../../src/dpop/proof.js';

const URL_ = 'https://api.example.com/items';
const TOKEN = 'opaque-access-token-123';
const ath = (t: string) => hash('sha256', t, 'base64url');

async function client(alg = 'ES256') {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

type Client = Awaited<ReturnType<typeof client>>;

async function proof(c: Client, over: { claims?: Record<string, unknown>; header?: Record<string, unknown>; alg?: string } = {}): Promise<string> {
  const claims = { jti: crypto.randomUUID(), htm: 'GET', htu: URL_, iat: Math.floor(Date.now() / 1000), ath: ath(TOKEN), ...over.claims };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete (claims as Record<string, unknown>)[k];
  return new SignJWT(claims).setProtectedHeader({ alg: over.alg ?? 'ES256', typ: 'dpop+jwt', jwk: c.jwk, ...over.header }).sign(c.privateKey);
}

async function refused(p: Promise<unknown>, failure: DpopFailure): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof DpopProofError, String(err));
    assert.equal(err.failure, failure, err.message);
    return true;
  });
}

const target = { method: 'GET', url: URL_, accessToken: TOKEN };

describe('DpopVerifier (RFC 9449 §4.3)', () => {
  test('a valid proof: its key thumbprint (RFC 7638) and jti; the same proof twice is a replay', async () => {
    const c = await client();
    const v = new DpopVerifier();
    const p = await proof(c);
    const ok = await v.verify(p, target);
    assert.equal(ok.jkt, c.jkt);
    await refused(v.verify(p, target), 'replay');
    // Query and fragment are not part of htu; scheme and host case and the default port do not matter.
    assert.ok(await v.verify(await proof(c, { claims: { htu: 'HTTPS://API.example.com:443/items' } }), { ...target, url: `${URL_}?page=2#x` }));
  });

  test('header count and shape: none, two, a list, not a JWS', async () => {
    const c = await client();
    const v = new DpopVerifier();
    await refused(v.verify(undefined, target), 'missing');
    await refused(v.verify([await proof(c), await proof(c)], target), 'multiple');
    await refused(v.verify(`${await proof(c)}, ${await proof(c)}`, target), 'multiple');
    await refused(v.verify('not.a-jws', target), 'malformed');
    await refused(v.verify('a'.repeat(9000), target), 'malformed');
  });

  test('typ, alg and key: wrong typ, an algorithm not allowed, none, HS256, a private key in the header, no jwk', async () => {
    const c = await client();
    const v = new DpopVerifier({ algorithms: ['ES256'] });
    await refused(v.verify(await proof(c, { header: { typ: 'JWT' } }), target), 'typ');
    const ed = await client('EdDSA');
    await refused(v.verify(await proof(ed, { alg: 'EdDSA' }), target), 'alg');
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none', typ: 'dpop+jwt', jwk: c.jwk })}.${b64({ jti: 'x', htm: 'GET', htu: URL_, iat: Math.floor(Date.now() / 1000), ath: ath(TOKEN) })}.sig`;
    await refused(v.verify(none, target), 'alg');
    const hs = await new SignJWT({ jti: 'h', htm: 'GET', htu: URL_, iat: Math.floor(Date.now() / 1000), ath: ath(TOKEN) })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'c2VjcmV0' } as never })
      .sign(new TextEncoder().encode('secret'));
    await refused(v.verify(hs, target), 'alg');
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = (await exportJWK(privateKey)) as JWK;
    await refused(v.verify(await proof({ ...c, jwk: privateJwk, privateKey }), target), 'jwk');
    await refused(v.verify(await proof(c, { header: { jwk: undefined } }), target), 'jwk');
    assert.throws(() => new DpopVerifier({ algorithms: ['HS256'] }), /not an asymmetric JWS algorithm/);
  });

  test('a signature by another key than the one in the header', async () => {
    const c = await client();
    const other = await client();
    const v = new DpopVerifier();
    await refused(v.verify(await proof({ ...c, privateKey: other.privateKey }), target), 'signature');
  });

  test('claims: jti, htm, htu, iat (too old, in the future, missing), ath', async () => {
    const c = await client();
    const v = new DpopVerifier({ maxAgeSeconds: 60, clockSkewSeconds: 5 });
    const now = Math.floor(Date.now() / 1000);
    await refused(v.verify(await proof(c, { claims: { jti: undefined } }), target), 'jti');
    await refused(v.verify(await proof(c, { claims: { htm: 'POST' } }), target), 'htm');
    await refused(v.verify(await proof(c, { claims: { htu: 'https://api.example.com/other' } }), target), 'htu');
    await refused(v.verify(await proof(c, { claims: { htu: 'https://evil.example.com/items' } }), target), 'htu');
    await refused(v.verify(await proof(c, { claims: { iat: now - 120 } }), target), 'iat');
    await refused(v.verify(await proof(c, { claims: { iat: now + 60 } }), target), 'iat');
    await refused(v.verify(await proof(c, { claims: { iat: undefined } }), target), 'iat');
    await refused(v.verify(await proof(c, { claims: { ath: ath('another-token') } }), target), 'ath');
    await refused(v.verify(await proof(c, { claims: { ath: undefined } }), target), 'ath');
  });

  test('a jti may be used again once its proof is past the age window (the replay memory is bounded by time)', async () => {
    const c = await client();
    let t = Date.now();
    const v = new DpopVerifier({ maxAgeSeconds: 10, clockSkewSeconds: 0, now: () => t });
    const iat = Math.floor(t / 1000);
    await v.verify(await proof(c, { claims: { jti: 'same', iat } }), target);
    await refused(v.verify(await proof(c, { claims: { jti: 'same', iat } }), target), 'replay');
    t += 20_000;
    await v.verify(await proof(c, { claims: { jti: 'same', iat: Math.floor(t / 1000) } }), target);
  });

  test('normalizeHtu', () => {
    assert.equal(normalizeHtu('HTTPS://Api.Example.com:443/a?b#c'), 'https://api.example.com/a');
    assert.equal(normalizeHtu('http://h:8080'), 'http://h:8080/');
    assert.equal(normalizeHtu('ftp://h/a'), undefined);
    assert.equal(normalizeHtu('not a url'), undefined);
  });
});

describe('proof keys (the cache of imported keys and its thumbprint)', () => {
  test('thumbprint() is RFC 7638 (the same as jose) for every key type a proof may use', async () => {
    const { thumbprint } = await import('../../src/dpop/proof.js');
    for (const [alg, opts] of [['ES256', {}], ['ES384', {}], ['ES512', {}], ['EdDSA', {}], ['RS256', { modulusLength: 2048 }], ['PS256', { modulusLength: 4096 }]] as const) {
      const { publicKey } = await generateKeyPair(alg, { extractable: true, ...opts });
      const jwk = await exportJWK(publicKey);
      assert.equal(thumbprint(jwk as Record<string, unknown>), await calculateJwkThumbprint(jwk, 'sha256'), alg);
    }
  });

  test('RSA keys outside 2048 to 4096 bits, other curves and other key types are refused as jwk', async () => {
    const v = new DpopVerifier({ algorithms: ['RS256', 'ES256'] });
    const { privateKey: big, publicKey: bigPub } = await generateKeyPair('RS256', { extractable: true, modulusLength: 6144 });
    const bigJwk = await exportJWK(bigPub);
    const p = await new SignJWT({ jti: crypto.randomUUID(), htm: 'GET', htu: URL_, iat: Math.floor(Date.now() / 1000), ath: ath(TOKEN) }).setProtectedHeader({ alg: 'RS256', typ: 'dpop+jwt', jwk: bigJwk }).sign(big);
    await refused(v.verify(p, target), 'jwk');
    const c = await client();
    await refused(v.verify(await proof(c, { header: { jwk: { ...c.jwk, crv: 'secp256k1' } } }), target), 'jwk');
    await refused(v.verify(await proof(c, { header: { jwk: { kty: 'oct', k: 'c2VjcmV0' } } }), target), 'jwk');
    // The same key twice: imported once, the same thumbprint.
    const a = await v.verify(await proof(c), target);
    const b = await v.verify(await proof(c), target);
    assert.equal(a.jkt, c.jkt);
    assert.equal(b.jkt, c.jkt);
  });
});
