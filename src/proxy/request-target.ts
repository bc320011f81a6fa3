/*
 * Request-target hygiene. The gateway routes on exactly the path it forwards,
 * and refuses every spelling that an upstream might normalise into another
 * route: that is how `/public/%2e%2e/api` reached `/api` unauthenticated in
 * other gateways. Node's parser already refuses the request-smuggling shapes
 * (CL+TE, duplicate Content-Length, obs-fold, bare LF); these it lets through.
 */

// Backslash, NUL, fragment; encoded (or double-encoded, for upstreams that
// decode twice) dot, slash, backslash, NUL; a bad escape; an empty segment; a
// "." or ".." segment, also with a path parameter (`/..;/`, which Tomcat and
// Spring treat as `..`).
const FORBIDDEN_IN_PATH = /[\\#\0]|%(?:25)?(?:2[eEfF]|5[cC]|00)|%(?![0-9A-Fa-f]{2})|\/\/|\/\.\.?(?:[/;]|$)/;

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
