/*
 * Review 2 of issue 10: the authorization server's JWKS (src/introspection/server-keys.ts).
 *
 * Weakness (correctness): a signed answer without `kid` (RFC 7515 makes it
 * optional; RFC 9701 does not ask for it) from a server whose JWKS holds two
 * keys of its algorithm (the normal state during a key rollover: the current
 * key and the next one are published together) is refused with 502.
 * jose's local key set then throws JWKSMultipleMatchingKeys, an error that
 * carries the candidate keys for the caller to try in turn (jose's verify
 * functions do not do it themselves); ServerKeys turns it into InvalidAnswer
 * ("several keys ... match") instead of trying them. Every signed answer is
 * refused for as long as both keys are published.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { exportJWK, SignJWT } from 'jose';
import { ServerKeys } from '../../src/introspection/server-keys.js';
import type { DocumentFetcher } from '../../src/introspection/documents.js';
import { verifySignedAnswer } from '../../src/introspection/dialects/token-introspection-jwt.js';

const ISSUER = 'https://as.example.com';

describe('i10r2: signed answers without kid are refused while the server publishes two keys', () => {
  test('an answer signed (no kid) by the second of two published ES256 keys verifies', async () => {
    const current = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const next = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwks = { keys: [{ ...(await exportJWK(current.publicKey)), use: 'sig' }, { ...(await exportJWK(next.publicKey)), use: 'sig' }] };
    const fetcher = { getJson: async () => jwks, close() {} } as unknown as DocumentFetcher;
    const keys = new ServerKeys({ fetcher, jwksUri: async () => 'https://as.example.com/jwks' });
    const now = Math.floor(Date.now() / 1000);
    const answer = await new SignJWT({ token_introspection: { active: true, sub: 'alice', exp: now + 300 } })
      .setProtectedHeader({ alg: 'ES256', typ: 'token-introspection+jwt' })
      .setIssuer(ISSUER)
      .setAudience('gateway')
      .setIssuedAt(now)
      .sign(next.privateKey);
    const d = await verifySignedAnswer(answer, { issuer: ISSUER, clientId: 'gateway', getKey: keys.getKey });
    assert.equal(d.active, true);
  });
});
