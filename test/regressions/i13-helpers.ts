/*
 * DPoP keys and proofs for the issue-13 regressions (made with jose, as a
 * client library makes them).
 */
import { hash } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { request } from 'undici';

export interface DpopKey {
  privateKey: CryptoKey;
  jwk: JWK;
  jkt: string;
  alg: string;
}

export async function dpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256'), alg };
}

/** A proof for `htm`/`htu` and the access token `token`; `extra` overrides claims. */
export function proof(key: DpopKey, htm: string, htu: string, token: string, extra: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ jti: crypto.randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000), ath: hash('sha256', token, 'base64url'), ...extra })
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.jwk })
    .sign(key.privateKey);
}

/** A GET on a new connection each time (`Connection: close`), so that a cluster's primary hands each to the next worker. */
export async function freshGet(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const res = await request(url, { headers: { ...headers, connection: 'close' } });
  return { status: res.statusCode, body: await res.body.text() };
}
