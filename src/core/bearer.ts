import { TOKEN_MALFORMED, TOKEN_MISSING, type GatewayError } from './errors.js';

// RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
// The scheme is case-insensitive (RFC 9110 §11.1).
const BEARER = /^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)$/;
const SCHEME = /^[Bb][Ee][Aa][Rr][Ee][Rr](?: |$)/;

/**
 * Extracts the token from an `Authorization` header value.
 *
 * Returns the token, or a shared refusal: `TOKEN_MISSING` when there is no
 * Bearer credential at all (no header, another scheme), `TOKEN_MALFORMED`
 * when a Bearer credential is present but broken (empty, bad characters,
 * trailing data, longer than `maxLength`).
 *
 * @example
 * parseBearer('Bearer abc.def', 4096) // 'abc.def'
 */
export function parseBearer(header: string | undefined, maxLength: number): string | GatewayError {
  if (header === undefined || header.length === 0) return TOKEN_MISSING;
  // Far longer than the bound allows ("Bearer", some spaces, the token): refused
  // before the regular expression sees it.
  if (header.length > maxLength + 64) return SCHEME.test(header) ? TOKEN_MALFORMED : TOKEN_MISSING;
  const m = BEARER.exec(header);
  if (m === null) return SCHEME.test(header) ? TOKEN_MALFORMED : TOKEN_MISSING;
  const token = m[1]!;
  return token.length > maxLength ? TOKEN_MALFORMED : token;
}
