/*
 * Request-target hygiene. The gateway routes on exactly the path it forwards,
 * and refuses every spelling that an upstream might normalise into another
 * route: that is how `/public/%2e%2e/api` reached `/api` unauthenticated in
 * other gateways. Node's parser already refuses the request-smuggling shapes
 * (CL+TE, duplicate Content-Length, obs-fold, bare LF); these it lets through.
 */

import { isIPv6 } from 'node:net';

// Refused anywhere in the path:
// - backslash, NUL, fragment, and `;` (path parameters: Tomcat and Spring drop
//   `;x` from a segment before routing, so `/api;x/` would be `/api/` there);
// - anything outside visible ASCII sent raw (not valid in a URI; RFC 3986 §2);
// - percent-encoded `%`, `/`, `\` and every percent-encoded *unreserved*
//   character (RFC 3986 §2.3: letters, digits, `-._~`), which an upstream that
//   decodes before routing would read as plain text (`/%61pi` is `/api` to Go,
//   Flask, Django);
// - percent-encoded C0 controls and DEL (`%00`-`%1F`, `%7F`): decoded, `%0a`
//   ends a line for a `$`-anchored pattern, `%09` and `%0d` are trimmed;
// - percent-encoded `?` and `#`: an upstream that decodes and parses again
//   cuts the path there, so `/api%3F` (no route: the public `/`) would be `/api`;
// - a segment ending in `.` or an encoded space (`%20`): Windows and IIS strip
//   them, so `/admin./x` and `/admin%20/x` would be `/admin/x` there;
// - a bad escape, an empty segment, and `.` / `..` segments.
// Reserved characters other than these stay allowed encoded (the router refuses
// those that some route prefix contains literally, see Router).
const FORBIDDEN_IN_PATH =
  /[\\#\0;]|[^\x21-\x7e]|%(?:[01][0-9A-Fa-f]|2[35DdEeFf]|3[0-9Ff]|4[1-9A-Fa-f]|5[0-9AaCcFf]|6[1-9A-Fa-f]|7[0-9AaEeFf])|%(?![0-9A-Fa-f]{2})|\/\/|\/\.\.?(?:\/|$)|(?:\.|%20)(?:\/|$)/;

/** A percent-encoded byte >= 0x80: the path carries encoded UTF-8 (or garbage). */
const ENCODED_HIGH = /%[89A-Fa-f][0-9A-Fa-f]/;

// Code points some upstream turns into a line end (Java's `$` matches before
// U+0085, U+2028 and U+2029) or into ASCII controls; with C1 controls, refused.
const LINE_LIKE = /[\u0080-\u009f\u2028\u2029]/;
const ASCII = /[\x00-\x7f]/;

/**
 * Encoded non-ASCII is refused when it is not valid UTF-8 (overlong forms such
 * as `%C0%AF` for `/`, lone continuation bytes, surrogates), or when a
 * character of it becomes ASCII under NFKC normalisation or case mapping
 * (fullwidth solidus `%EF%BC%8F` is `/`, dotless `%C4%B1` upper-cases to `I`,
 * the Kelvin sign `%E2%84%AA` lower-cases to `k`): an upstream that
 * normalises or compares case-insensitively would read another ASCII path.
 * Other non-ASCII text (`%C3%A9`, é) passes.
 */
function foldsToAscii(path: string): boolean {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return true; // not UTF-8
  }
  if (LINE_LIKE.test(decoded)) return true;
  for (const ch of decoded) {
    if (ch.charCodeAt(0) < 0x80) continue;
    if (ASCII.test(ch.normalize('NFKC')) || ASCII.test(ch.toLowerCase()) || ASCII.test(ch.toUpperCase())) return true;
    if (ASCII.test(ch.normalize('NFKC').toLowerCase()) || ASCII.test(ch.normalize('NFKC').toUpperCase())) return true;
  }
  return false;
}

/**
 * Characters a path may hold as they are, with no further look: letters,
 * digits and `-._~!$&'()*+,=:@/` (no `%`, `;`, `\`, `#`, controls, non-ASCII).
 */
const PLAIN = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@/") PLAIN[c.charCodeAt(0)] = 1;

/**
 * The common case in one pass: the length of the start of `url` that is a
 * path of PLAIN characters, with no `//` and no segment ending in `.` (which
 * covers `.` and `..` segments), up to its `?` or end. When that is the whole
 * path, it passes every rule of FORBIDDEN_IN_PATH and carries no escape;
 * anything else gets the full check.
 */
function plainUntil(url: string): number {
  let prev = 0;
  let i = 0;
  for (; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === 63 /* ? */) break;
    if (c >= 128 || PLAIN[c] === 0) return -1;
    if (c === 47 && (prev === 47 || prev === 46)) return -1;
    prev = c;
  }
  return prev === 46 ? -1 : i;
}

/**
 * Splits an origin-form request target into path and query (with its `?`),
 * or returns undefined when the target must be refused with 400.
 */
export function checkTarget(url: string | undefined): { path: string; query: string } | undefined {
  if (url === undefined || url.charCodeAt(0) !== 47 /* / */) return undefined; // absolute-, authority-, asterisk-form
  const end = plainUntil(url);
  const q = url.charCodeAt(end) === 63 /* ? */ ? end : url.indexOf('?', end);
  const path = q === -1 ? url : url.slice(0, q);
  if (end !== path.length) {
    if (FORBIDDEN_IN_PATH.test(path)) return undefined;
    if (ENCODED_HIGH.test(path) && foldsToAscii(path)) return undefined;
  }
  if (q !== -1 && (url.includes('#', q) || url.includes('\0', q))) return undefined;
  return { path, query: q === -1 ? '' : url.slice(q) };
}

// RFC 9112 §3.2 / RFC 3986 §3.2.2 `uri-host [":" port]`, narrowed to what
// names a real host: a DNS-style name or IPv4 address (letters, digits, `-`,
// `.`, `_`), or an IPv6 literal in brackets; the port 1-5 digits. Percent-
// encoding and the sub-delims RFC 3986 allows in a reg-name (`'`, `(`, `;`,
// `&`...) name no host anyone resolves, and are what turns a relayed
// `X-Forwarded-Host` into an injection into URLs an upstream builds.
const HOST = /^(?:[A-Za-z0-9._-]+|\[([0-9A-Fa-f:.]+)\])(?::[0-9]{1,5})?$/;

/** Whether a `Host` (or trusted `X-Forwarded-Host`) value is a valid `uri-host [":" port]`. */
export function isValidHost(value: string): boolean {
  if (value.length > 261) return false; // 255 for a name, ':' and 5 digits
  if (value.charCodeAt(0) !== 91 /* [ */) return isNameAndPort(value);
  const m = HOST.exec(value);
  if (m === null) return false;
  return m[1] === undefined || isIPv6(m[1]);
}

/** `[A-Za-z0-9._-]+(:[0-9]{1,5})?` (HOST without its IPv6 branch), as a loop. */
function isNameAndPort(value: string): boolean {
  let i = 0;
  for (; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 58 /* : */) break;
    if (!((c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 46 || c === 45 || c === 95)) return false;
  }
  if (i === 0) return false;
  if (i === value.length) return true;
  const digits = value.length - i - 1;
  if (digits < 1 || digits > 5) return false;
  for (let j = i + 1; j < value.length; j++) {
    const c = value.charCodeAt(j);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * The URL the client addressed, `scheme://host[:port]/path` (no query), for a
 * DPoP proof's `htu`: `scheme` `http` or `https` (the first of a
 * comma-separated list: the client-facing hop), `host` a valid `uri-host
 * [":" port]` (a chain of hosts is none), `target` in origin-form. Undefined
 * when any part is missing or invalid: the decision then has no URL, and a
 * DPoP request is refused unless the route names its `dpop.public_base_url`.
 *
 * @example
 * requestUrl('https', 'api.example.com', '/v1/items?page=2') // 'https://api.example.com/v1/items'
 */
export function requestUrl(scheme: string | undefined, host: string | undefined, target: string): string | undefined {
  if (scheme === undefined || host === undefined || target.charCodeAt(0) !== 47 /* / */) return undefined;
  const comma = scheme.indexOf(',');
  const s = (comma === -1 ? scheme : scheme.slice(0, comma)).trim().toLowerCase();
  if (s !== 'http' && s !== 'https') return undefined;
  const h = host.trim();
  if (!isValidHost(h)) return undefined;
  const end = target.search(/[?#]/);
  return `${s}://${h}${end === -1 ? target : target.slice(0, end)}`;
}
