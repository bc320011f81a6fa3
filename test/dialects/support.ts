/*
 * What the dialect and claim-check tests share: a signing key file for the
 * gateway to mint with, JSON answers in the shapes servers send, and a check
 * that what reached the upstream is a JWT that verifies, with its `exp` no
 * later than the token's.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT, type JSONWebKeySet, type JWK, type JWTPayload, type JWTVerifyGetKey, type ProtectedHeaderParameters } from 'jose';
import type { EchoUpstream, ScriptedAnswer } from '../helpers/servers.js';

/** A temp dir with an ES256 private key (PKCS#8 PEM) for `minting.signing_key_file`; `remove()` in `after()`. */
export function signingKeyDir(): { dir: string; keyFile: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'phantom-dialects-'));
  const keyFile = join(dir, 'signing.pem');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return { dir, keyFile, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A 200 JSON introspection answer. */
export function jsonAnswer(body: Record<string, unknown> | string, headers: Record<string, string> = {}): ScriptedAnswer {
  return { status: 200, body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } };
}

/** Seconds since the epoch, now. */
export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** The JWT the upstream got in its last request (asserts there was one, as `Bearer`). */
export function forwardedJwt(api: EchoUpstream): string {
  const last = api.received.at(-1);
  assert.ok(last, 'the upstream received a request');
  const auth = last.headers.authorization;
  assert.equal(typeof auth, 'string');
  assert.match(auth as string, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
  return (auth as string).slice(7);
}

/**
 * Verifies `jwt` with jose against `keys` (a JWKS, or a key resolver) and
 * checks that its `exp` is set and no later than `tokenExp`.
 */
export async function verifyForwarded(
  jwt: string,
  keys: { readonly keys: readonly JWK[] } | JWTVerifyGetKey,
  tokenExp: number,
  opts: { issuer?: string; typ?: string } = {},
): Promise<{ payload: JWTPayload; protectedHeader: ProtectedHeaderParameters }> {
  const getKey = typeof keys === 'function' ? keys : createLocalJWKSet({ keys: [...keys.keys] });
  const verified = await jwtVerify(jwt, getKey, { ...(opts.issuer ? { issuer: opts.issuer } : {}), ...(opts.typ ? { typ: opts.typ } : {}) });
  assert.equal(typeof verified.payload.exp, 'number', 'the forwarded JWT has an exp');
  assert.ok(verified.payload.exp! <= tokenExp, `forwarded exp ${verified.payload.exp} is not later than the token's ${tokenExp}`);
  return verified;
}

/** A scripted authorization server's own signing key: JWTs it issues, and the JWKS they verify against. */
export interface ServerKey {
  readonly jwks: JSONWebKeySet;
  readonly issuer: string;
  /** An ES256 JWT with `claims` (iss, iat, exp defaults: now, now + `expiresIn`) and header `typ` (default `at+jwt`; `null` for none). */
  sign(claims: Record<string, unknown>, opts?: { expiresIn?: number; typ?: string | null }): Promise<string>;
}

export async function serverKey(issuer = 'https://as.scripted.test'): Promise<ServerKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'scripted-as', alg: 'ES256', use: 'sig' };
  return {
    jwks: { keys: [jwk] },
    issuer,
    async sign(claims, opts = {}) {
      const now = nowSeconds();
      const typ = opts.typ === undefined ? 'at+jwt' : opts.typ;
      return new SignJWT({ iss: issuer, iat: now, exp: now + (opts.expiresIn ?? 300), ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: 'scripted-as', ...(typ === null ? {} : { typ }) })
        .sign(privateKey);
    },
  };
}
