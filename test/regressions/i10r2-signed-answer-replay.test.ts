/*
 * Review 2 of issue 10: RFC 9701 signed answers (src/introspection/dialects/token-introspection-jwt.ts).
 *
 * Weakness: a signed answer is accepted whatever its age. `iat` is required
 * but never compared with the clock (jose checks `iat` only with
 * `maxTokenAge`), and RFC 9701 answers need not carry `exp` (its §5 defines
 * none). A signed answer is not bound to the token that was asked about, so
 * whoever once saw one "active: true" answer on the path between the gateway
 * and the server (a TLS-terminating proxy, a log of the AS's responses, a
 * MITM with a mis-issued certificate: the threats signed answers are for) can
 * answer any later introspection, for any token, with it: the gateway then
 * lets a made-up token through as that user. An answer is made in reply to
 * this call: an `iat` more than the clock tolerance away from now is not.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createLocalJWKSet, exportJWK, SignJWT } from 'jose';
import { verifySignedAnswer } from '../../src/introspection/dialects/token-introspection-jwt.js';
import { InvalidAnswer } from '../../src/introspection/dialects/common.js';

const ISSUER = 'https://as.example.com';
const CLIENT = 'gateway';

async function server() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  const getKey = createLocalJWKSet({ keys: [jwk] });
  const sign = (iat: number, inner: Record<string, unknown>) =>
    new SignJWT({ token_introspection: inner })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'token-introspection+jwt' })
      .setIssuer(ISSUER)
      .setAudience(CLIENT)
      .setIssuedAt(iat)
      .sign(privateKey);
  return { getKey, sign };
}

describe('i10r2: a signed introspection answer is accepted however old it is (replayable)', () => {
  test('an answer signed a day ago (for a token that is still valid) is refused, not accepted as active', async () => {
    const { getKey, sign } = await server();
    const now = Math.floor(Date.now() / 1000);
    const old = await sign(now - 86_400, { active: true, sub: 'alice', scope: 'read', exp: now + 3600, iss: ISSUER });
    await assert.rejects(verifySignedAnswer(old, { issuer: ISSUER, clientId: CLIENT, getKey }), InvalidAnswer);
  });

  test('an answer dated a day in the future is refused', async () => {
    const { getKey, sign } = await server();
    const now = Math.floor(Date.now() / 1000);
    const future = await sign(now + 86_400, { active: true, sub: 'alice', exp: now + 3600, iss: ISSUER });
    await assert.rejects(verifySignedAnswer(future, { issuer: ISSUER, clientId: CLIENT, getKey }), InvalidAnswer);
  });

  test('control: an answer signed now is accepted', async () => {
    const { getKey, sign } = await server();
    const now = Math.floor(Date.now() / 1000);
    const fresh = await sign(now, { active: true, sub: 'alice', exp: now + 3600, iss: ISSUER });
    const d = await verifySignedAnswer(fresh, { issuer: ISSUER, clientId: CLIENT, getKey });
    assert.equal(d.active, true);
  });
});
