/*
 * Request-target hygiene. The gateway routes on exactly the path it forwards,
 * and refuses every spelling that an upstream might normalise into another
 * route: that is how `/public/%2e%2e/api` reached `/api` unauthenticated in
 * other gateways. Node's parser already refuses the request-smuggling shapes
 * (CL+TE, duplicate Content-Length, obs-fold, bare LF); these it lets through.
 */

// Refused anywhere in the path:
// - backslash, NUL, fragment, and `;` (path parameters: Tomcat and Spring drop
//   `;x` from a segment before routing, so `/api;x/` would be `/api/` there);
// - percent-encoded `%`, NUL, `/`, `\` and every percent-encoded *unreserved*
//   character (RFC 3986 §2.3: letters, digits, `-._~`), which an upstream that
//   decodes before routing would read as plain text (`/%61pi` is `/api` to Go,
//   Flask, Django). Reserved characters other than these stay allowed encoded;
// - a bad escape, an empty segment, and `.` / `..` segments.
const FORBIDDEN_IN_PATH =
  /[\\#\0;]|%(?:25|00|2[DdEeFf]|3[0-9]|4[1-9A-Fa-f]|5[0-9AaCcFf]|6[1-9A-Fa-f]|7[0-9AaEe])|%(?![0-9A-Fa-f]{2})|\/\/|\/\.\.?(?:\/|$)/;

/**
 * Splits an origin-form request target into path and query (with its `?`),
 * or returns undefined when the target must be refused with 400.
 */
export function checkTarget(url: string | undefined): { path: string; query: string } | undefined {
  if (url === undefined || url.charCodeAt(0) !== 47 /* / */) return undefined; // absolute-, authority-, asterisk-form
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (FORBIDDEN_IN_PATH.test(path)) return undefined;
  if (q !== -1 && (url.includes('#', q) || url.includes('\0', q))) return undefined;
  return { path, query: q === -1 ? '' : url.slice(q) };
}
