import { refusal, type ErrorCode } from '../core/errors.js';
import { renderRefusal } from '../core/render.js';
import type { Jwks } from './key-set.js';

/*
 * How the keys minted tokens verify with are published: the path, the media
 * type and the caching every front door answers them with.
 */

/** Where the proxy and forward-auth listeners publish the JWKS (the usual place, RFC 8414 §2 `jwks_uri` points anywhere). */
export const JWKS_PATH = '/.well-known/jwks.json';

/** RFC 7517 §8.5. */
export const JWKS_CONTENT_TYPE = 'application/jwk-set+json';

/**
 * How long an API may keep the JWKS. Short, because a key can start signing
 * the moment it is published: `KeySet.rotate()` in a running gateway, or a
 * restart with a new `signing_key_file`. Verifiers that refetch on an unknown
 * `kid` (jose's `createRemoteJWKSet`) pick a new key up at once; for the
 * others this bounds how long they refuse the new key's tokens. The document
 * is small and served from memory, so a fetch a minute from every API
 * instance costs nothing. A retired key stays published for as long as tokens
 * it signed live, so caching never hides a key still needed.
 */
export const JWKS_MAX_AGE_SECONDS = 60;

export const JWKS_CACHE_CONTROL = `public, max-age=${JWKS_MAX_AGE_SECONDS}`;

/** Methods the JWKS path answers (`Allow` of its 405). */
export const JWKS_METHODS = 'GET, HEAD';

const bodies = new WeakMap<Jwks, string>();

/**
 * The JWKS as sent: JSON, built once per key set (`KeySet.jwks()` returns
 * the same object until a key comes or goes).
 */
export function jwksBody(jwks: Jwks): string {
  let body = bodies.get(jwks);
  if (body === undefined) {
    body = JSON.stringify(jwks);
    bodies.set(jwks, body);
  }
  return body;
}

/** The headers of a 200 answer carrying `body`. */
export function jwksHeaders(body: string): Record<string, string> {
  return { 'content-type': JWKS_CONTENT_TYPE, 'content-length': String(Buffer.byteLength(body)), 'cache-control': JWKS_CACHE_CONTROL };
}

/** What a front door sends for a request to `JWKS_PATH`; it adds only its own connection handling. */
export interface JwksAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** Undefined for HEAD. */
  readonly body: string | undefined;
  /** The refusal's internal code, for the access log (a method other than GET and HEAD). */
  readonly code: ErrorCode | undefined;
}

const METHOD_NOT_ALLOWED = refusal('ERR_METHOD_NOT_ALLOWED');

/** The answer to `method` on the JWKS path: 200 for GET and HEAD, else the 405 refusal with `Allow`. */
export function answerJwks(method: string | undefined, jwks: Jwks): JwksAnswer {
  if (method !== 'GET' && method !== 'HEAD') {
    const r = renderRefusal(METHOD_NOT_ALLOWED);
    return { status: r.status, headers: { ...r.headers, allow: JWKS_METHODS }, body: r.body, code: METHOD_NOT_ALLOWED.code };
  }
  const body = jwksBody(jwks);
  return { status: 200, headers: jwksHeaders(body), body: method === 'HEAD' ? undefined : body, code: undefined };
}
