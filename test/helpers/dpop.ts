/*
 * DPoP clients for the tests: a key pair per algorithm, proofs made with
 * jose in which any field can be broken (or hand-built where jose refuses:
 * `alg: none`), and sender-constrained tokens from the real development
 * authorization server (a DPoP proof at its token endpoint; a token request
 * over mTLS).
 */
import { hash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { Agent, request } from 'undici';
import { DEV_CLIENTS, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import type { Pair, TestPki } from '../client-auth/certs.js';

/** A client's DPoP key: the private key signs, the public JWK goes in every proof, `jkt` is its RFC 7638 thumbprint. */
export interface DpopKey {
  readonly alg: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
  /** The private key as a JWK (a test puts it in a proof's header, which must be refused). */
  readonly privateJwk: JWK;
  readonly jkt: string;
}

/** Makes a key for `alg` (`ES256`, `EdDSA`, `PS256`, `RS256`...). */
export async function dpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { alg, privateKey, publicJwk, privateJwk: await exportJWK(privateKey), jkt: await calculateJwkThumbprint(publicJwk, 'sha256') };
}

/** RFC 9449 `ath`: the base64url SHA-256 of the access token. */
export const athOf = (accessToken: string): string => hash('sha256', accessToken, 'base64url');

export interface ProofOptions {
  key: DpopKey;
  htm: string;
  htu: string;
  /** Its hash becomes `ath` (leave out for a token request). */
  accessToken?: string;
  /** Seconds since the epoch; default now. */
  iat?: number;
  jti?: string;
  nonce?: string;
  /** Header `typ`; default `dpop+jwt`. */
  typ?: string;
  /** Header `alg`; default the key's. `none` builds an unsigned JWS by hand. */
  alg?: string;
  /** Header `jwk`; default the key's public JWK (`null` leaves it out). */
  jwk?: JWK | null;
  /** Claims set over the computed ones (`undefined` removes one: `{ ath: undefined }`). */
  claims?: Record<string, unknown>;
}

const b64u = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** A DPoP proof JWT (RFC 9449 §4.2), correct unless told otherwise. */
export async function proof(o: ProofOptions): Promise<string> {
  const claims: Record<string, unknown> = {
    jti: o.jti ?? randomUUID(),
    htm: o.htm,
    htu: o.htu,
    iat: o.iat ?? Math.floor(Date.now() / 1000),
    ...(o.accessToken !== undefined ? { ath: athOf(o.accessToken) } : {}),
    ...(o.nonce !== undefined ? { nonce: o.nonce } : {}),
    ...o.claims,
  };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  const header: Record<string, unknown> = { alg: o.alg ?? o.key.alg, typ: o.typ ?? 'dpop+jwt' };
  if (o.jwk !== null) header.jwk = o.jwk ?? o.key.publicJwk;
  if (header.alg === 'none') return `${b64u(header)}.${b64u(claims)}.`;
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(o.key.privateKey);
}

/** `proof` in short: for `htm`/`htu` and the access token `token`, `claims` set over the computed ones. */
export function proofFor(key: DpopKey, htm: string, htu: string, token: string, claims: Record<string, unknown> = {}): Promise<string> {
  return proof({ key, htm, htu, accessToken: token, claims });
}

/** A proof MACed with HS256 under `secret`, its `jwk` the symmetric key (refused: a proof needs an asymmetric key). */
export async function hs256Proof(o: Omit<ProofOptions, 'key' | 'alg' | 'jwk'>, secret = 'a-shared-secret-of-32-bytes-long!'): Promise<string> {
  const claims: Record<string, unknown> = {
    jti: o.jti ?? randomUUID(),
    htm: o.htm,
    htu: o.htu,
    iat: o.iat ?? Math.floor(Date.now() / 1000),
    ...(o.accessToken !== undefined ? { ath: athOf(o.accessToken) } : {}),
    ...o.claims,
  };
  const k = Buffer.from(secret);
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: o.typ ?? 'dpop+jwt', jwk: { kty: 'oct', k: k.toString('base64url') } as JWK }).sign(k);
}

/** The token endpoint's answer. */
export interface TokenAnswer {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope?: string;
}

async function tokenRequest(as: DevAuthorizationServer, form: Record<string, string>, headers: Record<string, string>, dispatcher?: Agent): Promise<TokenAnswer> {
  const res = await request(as.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
    ...(dispatcher ? { dispatcher } : {}),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`token endpoint answered ${res.statusCode}: ${text}`);
  return JSON.parse(text) as TokenAnswer;
}

/**
 * A DPoP-bound opaque access token for `key` (client credentials with a proof
 * at the token endpoint, RFC 9449 §5): its introspection carries `cnf.jkt`.
 */
export async function dpopBoundToken(as: DevAuthorizationServer, key: DpopKey, scope = 'read', ca?: Buffer): Promise<string> {
  const { client } = DEV_CLIENTS;
  const dpop = await proof({ key, htm: 'POST', htu: as.tokenEndpoint });
  const agent = ca === undefined ? undefined : new Agent({ connect: { ca } });
  try {
    const answer = await tokenRequest(as, { grant_type: 'client_credentials', client_id: client.id, client_secret: client.secret, scope }, { dpop }, agent);
    if (answer.token_type !== 'DPoP') throw new Error(`expected a DPoP token, got token_type ${answer.token_type}`);
    return answer.access_token;
  } finally {
    await agent?.close();
  }
}

/** A plain bearer opaque access token (client credentials, no proof); `ca` to trust an https server's certificate. */
export async function bearerToken(as: DevAuthorizationServer, scope = 'read', ca?: Buffer): Promise<string> {
  const { client } = DEV_CLIENTS;
  const agent = ca === undefined ? undefined : new Agent({ connect: { ca } });
  try {
    const answer = await tokenRequest(as, { grant_type: 'client_credentials', client_id: client.id, client_secret: client.secret, scope }, {}, agent);
    if (answer.token_type !== 'Bearer') throw new Error(`expected a Bearer token, got token_type ${answer.token_type}`);
    return answer.access_token;
  } finally {
    await agent?.close();
  }
}

/**
 * An opaque access token bound to `pair`'s certificate (RFC 8705 §3): the
 * certificate-bound client's token request over mTLS to an authorization
 * server started with `https` and `ca: pki.ca`. Its introspection carries
 * `cnf["x5t#S256"]`.
 */
export async function certBoundToken(as: DevAuthorizationServer, pki: TestPki, pair: Pair = pki.client, scope = 'read'): Promise<string> {
  const { certificateBound } = DEV_CLIENTS;
  const agent = new Agent({ connect: { ca: pki.ca, cert: pair.cert, key: pair.key } });
  try {
    const answer = await tokenRequest(as, { grant_type: 'client_credentials', client_id: certificateBound.id, client_secret: certificateBound.secret, scope }, {}, agent);
    return answer.access_token;
  } finally {
    await agent.close();
  }
}

/** The base64url SHA-256 of a PEM certificate's DER: its `x5t#S256`. */
export function certThumbprint(pem: Buffer | string): string {
  const der = Buffer.from(pem.toString().replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, ''), 'base64');
  return hash('sha256', der, 'base64url');
}
