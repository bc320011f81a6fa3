/*
 * A DPoP client (RFC 9449) for the front-door tests: a key made with jose,
 * and proofs for a request, any claim overridable to break one check.
 */
import { hash, X509Certificate } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

export interface DpopClient {
  readonly alg: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
  /** RFC 7638 thumbprint of the public key: a token bound to this client has `cnf.jkt` = this. */
  readonly jkt: string;
}

export async function dpopClient(alg = 'ES256'): Promise<DpopClient> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

/** `ath`: SHA-256 of the access token, base64url. */
export const ath = (token: string) => hash('sha256', token, 'base64url');

/**
 * A proof for `method` `htu` with `token`; `claims` replace or (undefined)
 * remove claims, `header` adds to the protected header.
 */
export async function dpopProof(
  c: DpopClient,
  method: string,
  htu: string,
  token: string,
  over: { claims?: Record<string, unknown>; header?: Record<string, unknown> } = {},
): Promise<string> {
  const claims: Record<string, unknown> = { jti: crypto.randomUUID(), htm: method, htu, iat: Math.floor(Date.now() / 1000), ath: ath(token), ...over.claims };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  return new SignJWT(claims).setProtectedHeader({ alg: c.alg, typ: 'dpop+jwt', jwk: c.jwk, ...over.header }).sign(c.privateKey);
}

/** RFC 8705 `x5t#S256` of a PEM certificate. */
export function x5tS256(pem: Buffer | string): string {
  return hash('sha256', new X509Certificate(pem).raw, 'base64url');
}
