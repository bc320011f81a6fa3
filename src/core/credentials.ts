import { isMethodOverride } from '../routing/method-override.js';
import { GatewayError, TOKEN_MALFORMED } from './errors.js';

/*
 * The rules about credentials that hold at every front door, before any
 * token is looked at: where a token may come from, how many, and which
 * requests need none.
 */

/** RFC 6750 §3.1: a request using a credential method the gateway refuses (a token in the query). */
export const TOKEN_IN_QUERY = Object.freeze(new GatewayError('ERR_TOKEN_IN_QUERY', { challenge: 'Bearer error="invalid_request"' }));

/** A CORS preflight on a protected route: passes without a token. */
export const PREFLIGHT: unique symbol = Symbol('preflight');

/**
 * The credential rules for a request to a protected route, in order:
 * - a token in the query (RFC 6750 §2.3) is refused, never passed on;
 * - two `Authorization` headers are never resolved by picking one (a front
 *   door may see the first, an upstream the last): a malformed credential,
 *   refused before any introspection;
 * - a CORS preflight (`OPTIONS` with `Origin` and
 *   `Access-Control-Request-Method`, no body) carries no credentials by
 *   design, and passes without a token, as with Curity's plugins. Any other
 *   `OPTIONS` is checked like `GET`.
 *
 * Returns a refusal, `PREFLIGHT`, or undefined when the token decides.
 *
 * @param query the query string with its `?`, or ''.
 * @param authorizations how many `Authorization` fields the request carries.
 * @param preflight whether `Origin` and `Access-Control-Request-Method` are present.
 */
export function checkCredentials(method: string, query: string, authorizations: number, preflight: boolean, hasBody: boolean): GatewayError | typeof PREFLIGHT | undefined {
  if (query.length > 1 && hasQueryToken(query)) return TOKEN_IN_QUERY;
  if (authorizations > 1) return TOKEN_MALFORMED;
  if (preflight && method === 'OPTIONS' && !hasBody) return PREFLIGHT;
  return undefined;
}

/** What a request's raw headers say about its credentials, for `checkCredentials` and `decide`. */
export interface CredentialFacts {
  /** Every `Authorization` value, in order (Node's `req.headers` keeps only the first). */
  readonly authorization: string[];
  readonly preflight: boolean;
  readonly hasBody: boolean;
  readonly methodOverride: boolean;
}

/**
 * One pass over a request's raw headers (Node's `rawHeaders`, name/value
 * pairs) for what every front door that does not carry the request itself
 * hands to `decide`: every `Authorization` line, whether it is a CORS
 * preflight, whether it announces a body, and whether it asks for another
 * method. Names that cannot matter are skipped without a lower-case copy.
 */
export function scanCredentials(raw: readonly string[]): CredentialFacts {
  const authorization: string[] = [];
  let origin = false;
  let acrm = false;
  let hasBody = false;
  let methodOverride = false;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    const c = n.charCodeAt(0);
    if (c === 120 || c === 88) {
      // x / X: a method override in any spelling (`_` for `-` included).
      if (isMethodOverride(n)) methodOverride = true;
      continue;
    }
    // Only names of these lengths matter below (origin; authorization;
    // content-length; transfer-encoding; access-control-request-method): the
    // rest are skipped without a lower-case copy.
    const len = n.length;
    if (len !== 6 && len !== 13 && len !== 14 && len !== 17 && len !== 29) continue;
    switch (n.toLowerCase()) {
      case 'authorization':
        authorization.push(raw[i + 1]!);
        break;
      case 'origin':
        origin = true;
        break;
      case 'access-control-request-method':
        acrm = true;
        break;
      case 'content-length':
        if (raw[i + 1] !== '0') hasBody = true;
        break;
      case 'transfer-encoding':
        hasBody = true;
        break;
    }
  }
  return { authorization, preflight: origin && acrm, hasBody, methodOverride };
}

/**
 * Whether a query string (with its `?`) carries an RFC 6750 §2.3 `access_token`
 * parameter, under any name a server-side framework reads as that one: the
 * name percent-decoded (`access%5Ftoken`) and `+` as space, in any case
 * (ASP.NET's query collection ignores case), with PHP's renaming of `.`, space
 * and `[` to `_` (`access.token`, `access token`) and its arrays
 * (`access_token[]`), and pairs split on `;` as well as `&` (older CGI
 * libraries and Rack).
 */
export function hasQueryToken(query: string): boolean {
  if (query.length < 13) return false; // '?access_token'
  if (!/access|%/i.test(query)) return false;
  for (const pair of query.slice(1).split(/[&;]/)) {
    const eq = pair.indexOf('=');
    let name = eq === -1 ? pair : pair.slice(0, eq);
    if (name.length < 12) continue;
    name = name.replaceAll('+', ' ');
    try {
      name = decodeURIComponent(name);
    } catch {
      // an undecodable name is read as written
    }
    name = name.trimStart().toLowerCase();
    // PHP: `a[b]` is array `a`; a `[` without a `]` after it becomes `_`.
    const bracket = name.indexOf('[');
    if (bracket > 0 && name.includes(']', bracket)) name = name.slice(0, bracket);
    if (name.replace(/[. []/g, '_') === 'access_token') return true;
  }
  return false;
}
