/*
 * Review 2 of issue 10: `introspection_response: auto` (src/introspection/dialects/auto.ts).
 *
 * Weakness (security, fail open): `auto` tells a signed introspection answer
 * sent as `application/jwt` (the media type of RFC 9701's early drafts, and
 * what servers that implemented them still send) from a phantom-token JWT by
 * the header `typ` alone. A signed answer whose `typ` is `JWT` or absent (as
 * a draft-era server signs it) goes to the `jwt` dialect, which forwards
 * whatever JWT it got as an active token without reading it: an answer that
 * says the token is NOT active (`token_introspection.active: false`, or a
 * top-level `active: false` as the earliest drafts put it) lets the request
 * through, with the introspection answer itself as the upstream's bearer JWT.
 * A JWT whose claims carry `token_introspection` or `active` is an
 * introspection answer, never an access token: it must be verified as a
 * signed answer (or refused), never forwarded.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { autoDialect } from '../../src/introspection/dialects/auto.js';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const now = Math.floor(Date.now() / 1000);

async function answerJwt(payload: Record<string, unknown>, typ: string | undefined): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader(typ === undefined ? { alg: 'ES256', kid: 'as' } : { alg: 'ES256', kid: 'as', typ })
    .setIssuer('https://as.example.com')
    .setAudience('gateway')
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(privateKey);
}

async function decode(body: string) {
  try {
    return await autoDialect(undefined).decode({ body, contentType: 'application/jwt' });
  } catch (err) {
    return err; // refused (502): acceptable
  }
}

describe('i10r2: auto forwards an application/jwt introspection answer that says "inactive" as an active token', () => {
  test('token_introspection.active false, typ JWT: not an allow', async () => {
    const d = await decode(await answerJwt({ token_introspection: { active: false } }, 'JWT'));
    assert.notEqual((d as { active?: unknown }).active, true, 'an answer saying "not active" was read as an active token and forwarded');
  });

  test('token_introspection.active false, no typ: not an allow', async () => {
    const d = await decode(await answerJwt({ token_introspection: { active: false } }, undefined));
    assert.notEqual((d as { active?: unknown }).active, true, 'an answer saying "not active" was read as an active token and forwarded');
  });

  test('top-level active false (earliest drafts): not an allow', async () => {
    const d = await decode(await answerJwt({ active: false }, 'JWT'));
    assert.notEqual((d as { active?: unknown }).active, true, 'an answer saying "not active" was read as an active token and forwarded');
  });
});
