import type { JWTPayload } from 'jose';
import { hasDuplicateKeys } from '../parse.js';

/*
 * What every dialect shares: the decoded answer, the error for an answer that
 * is the server's failure, and strict readers for JSON and JWTs.
 */

/** `introspection_response` values. */
export type DialectName = 'jwt' | 'jwt_claim' | 'json' | 'token_introspection_jwt' | 'auto';

export type InactiveReason = 'no_content' | 'active_false' | 'no_jwt' | 'rejected';

/** An answer decoded: the token's claims and, when the server sent one, the JWT to forward. */
export type Decoded =
  | {
      readonly active: true;
      /** What the server says about the token (RFC 7662 members, or the JWT's claims). */
      readonly claims: JWTPayload;
      /** The JWT to forward as it came; absent when the gateway must mint one. */
      readonly jwt?: string | undefined;
    }
  | { readonly active: false; readonly reason: InactiveReason };

/** A 200 answer, as the transport got it. */
export interface Answer200 {
  /** The body, as UTF-8 text. */
  readonly body: string;
  /** The one Content-Type (the client refuses two different ones before this). */
  readonly contentType: string | undefined;
}

/** Decodes the 200 answers of one kind of authorization server. */
export interface Dialect {
  readonly name: DialectName;
  /** The `Accept` header every call sends. */
  readonly accept: string;
  /**
   * Whether an active answer may come without a JWT, which the gateway then
   * mints (a signing key is needed).
   */
  readonly mints: boolean;
  /** Throws `InvalidAnswer` for anything that is not a definite answer about the token. */
  decode(answer: Answer200): Decoded | Promise<Decoded>;
}

/**
 * The answer is the server's failure, not the token's: 502, never cached,
 * never "invalid token". `detail` is for the operator's log.
 */
export class InvalidAnswer extends Error {
  override readonly name = 'InvalidAnswer';
}

export const INACTIVE_ACTIVE_FALSE: Decoded = Object.freeze({ active: false, reason: 'active_false' });
export const INACTIVE_NO_JWT: Decoded = Object.freeze({ active: false, reason: 'no_jwt' });

/** `application/json` or `application/<anything>+json`, with parameters or none. */
export const JSON_MEDIA_TYPE = /^\s*application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** Whether `contentType` is `type` (case-insensitive, parameters ignored). */
export function isMediaType(contentType: string | undefined, type: string): boolean {
  if (contentType === undefined) return false;
  const semi = contentType.indexOf(';');
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase() === type;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * An RFC 7662 JSON answer: an object with a boolean `active`, no member name
 * twice (JSON.parse keeps the last, other readers the first), and the claims
 * the gateway or the API act on of the right type.
 */
export function parseIntrospectionJson(text: string): Record<string, unknown> {
  const trimmed = text.trim();
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    throw new InvalidAnswer('introspection answer is broken JSON');
  }
  if (hasDuplicateKeys(trimmed)) throw new InvalidAnswer('introspection answer is JSON with a duplicate member name');
  if (!isPlainObject(parsed) || typeof parsed.active !== 'boolean') {
    throw new InvalidAnswer('introspection answer is JSON without a boolean "active" member');
  }
  return parsed;
}

/**
 * Claims of an active RFC 7662 answer, checked for the types RFC 7662 and
 * RFC 7519 give them; `active` itself is not a claim.
 */
export function introspectionClaims(answer: Record<string, unknown>): JWTPayload {
  const claims: Record<string, unknown> = { ...answer };
  delete claims.active;
  checkClaimTypes(claims, 'introspection answer', true);
  return claims as JWTPayload;
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The claims of a JWT the server sent to be forwarded, read without checking
 * its signature (the API does that; the gateway got it over an authenticated
 * channel). Garbage where a JWT should be (an HTML error page from a proxy in
 * front of the server, a truncated body) is the server's failure. So are
 * claims the gateway or the API would read differently from what the server
 * meant: duplicate names, NumericDates that are not numbers.
 */
export function forwardedJwtClaims(jwt: string): JWTPayload {
  // Compact JWS only: it goes into a header, so nothing but base64url and dots.
  const payload = COMPACT_JWS.test(jwt) ? jwt.slice(jwt.indexOf('.') + 1, jwt.lastIndexOf('.')) : '';
  let text: string;
  let claims: unknown;
  try {
    text = UTF8.decode(Buffer.from(payload, 'base64url'));
    claims = JSON.parse(text);
  } catch {
    throw new InvalidAnswer('introspection answer is not a usable JWT');
  }
  if (!isPlainObject(claims)) throw new InvalidAnswer('introspection answer is not a usable JWT');
  // The API reads the header first (alg, kid, typ): one nobody can read is no JWT.
  if (jwsHeader(jwt) === undefined) throw new InvalidAnswer('introspection JWT has a header that is not a JSON object');
  if (hasDuplicateKeys(text)) throw new InvalidAnswer('introspection JWT has a duplicate claim name');
  checkClaimTypes(claims, 'introspection JWT', false);
  return claims as JWTPayload;
}

/** Header of a compact JWS, or undefined when it cannot be read (callers that need it treat that as invalid). */
export function jwsHeader(jwt: string): Record<string, unknown> | undefined {
  try {
    const h: unknown = JSON.parse(UTF8.decode(Buffer.from(jwt.slice(0, jwt.indexOf('.')), 'base64url')));
    return isPlainObject(h) ? h : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 7519 NumericDate claims. */
const NUMERIC_DATES = ['exp', 'nbf', 'iat'] as const;

/**
 * The claims the gateway reads must have the types the RFCs give them; a
 * server that says otherwise is not understood. `minted`: the claims go into
 * a token the gateway signs, so every member it copies is checked too (a JWT
 * the server signed is forwarded as it is, and only what the gateway reads
 * of it, the NumericDates, is checked).
 */
function checkClaimTypes(claims: Record<string, unknown>, what: string, minted: boolean): void {
  for (const name of NUMERIC_DATES) {
    const v = claims[name];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v))) throw new InvalidAnswer(`${what} has a ${name} claim that is not a number`);
  }
  if (!minted) return;
  for (const name of ['sub', 'iss', 'client_id', 'scope', 'token_type', 'jti'] as const) {
    const v = claims[name];
    if (v !== undefined && typeof v !== 'string') throw new InvalidAnswer(`${what} has a ${name} member that is not a string`);
  }
  const aud = claims.aud;
  if (aud !== undefined && typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) {
    throw new InvalidAnswer(`${what} has an aud member that is neither a string nor a list of strings`);
  }
  const cnf = claims.cnf;
  if (cnf !== undefined && !isPlainObject(cnf)) throw new InvalidAnswer(`${what} has a cnf member that is not an object`);
}
