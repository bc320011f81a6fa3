/*
 * i13 regression: a DPoP proof's embedded RSA key is used whatever its
 * public exponent, so any client can make every request cost the gateway a
 * full-length RSA exponentiation, before any token is looked at.
 *
 * RS256 and PS256 are in the default `dpop.algorithms`. The proof's `jwk` is
 * imported and its signature checked (DpopVerifier.verify, jose
 * EmbeddedJWK) with no bound on the key: a 2048-bit modulus with a 2047-bit
 * exponent (instead of 65537) makes one verification a private-key-sized
 * operation without CRT. Measured with jose on this machine:
 * ~18 ms per verification, against ~0.7 ms for ES256 and ~0.45 ms for an
 * ordinary RS256 key (25-40 times more, per request, unauthenticated: the
 * signature is checked against the proof's own key, before introspection;
 * a wrong signature costs the same, so the attacker needs no private key).
 * A 16384-bit modulus with e = 65537 costs ~1.8 ms (another ~2.5x).
 *
 * Fix: before verifying, refuse an RSA jwk whose `e` is not a small
 * exponent (Go's crypto/rsa refuses e > 2^31-1; 65537 is what every client
 * uses) and whose modulus is over 4096 bits: ERR_DPOP_PROOF_INVALID (jwk).
 * This test expects such a proof refused as a proof (invalid_dpop_proof)
 * with no introspection; on main it passes and the token is introspected.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { importJWK, SignJWT } from 'jose';
import { suiteStack } from '../helpers/gateway.js';
import { rsaKeyWithHugeExponent } from './i13-helpers.js';

describe('i13: RSA proof keys with a huge public exponent (scripted introspection)', () => {
  const s = suiteStack(
    (as, api) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
routes:
  - path: /api
    upstream: ${api.url}
`,
  );

  test('a proof signed with an RSA key whose e is 2047 bits long is refused before any introspection', async () => {
    const jwk = rsaKeyWithHugeExponent(2048);
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
    const url = `${s.gw.url}/api/x`;
    const p = await new SignJWT({ jti: crypto.randomUUID(), htm: 'GET', htu: url, iat: Math.floor(Date.now() / 1000), ath: hash('sha256', 'some-token', 'base64url') })
      .setProtectedHeader({ alg: 'RS256', typ: 'dpop+jwt', jwk: pub })
      .sign(await importJWK(jwk, 'RS256'));
    const res = await fetch(url, { headers: { authorization: 'DPoP some-token', dpop: p } });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'DPoP error="invalid_dpop_proof", algs="ES256 EdDSA Ed25519 PS256 RS256"', 'the proof was accepted');
    assert.equal(s.as.callsFor('some-token'), 0, 'the proof passed and the token was introspected');
  });
});
