/*
 * Strict readers for the parts of an introspection answer the gateway acts
 * on. Each one fails closed: what it cannot read for certain is either "do
 * not cache" (Cache-Control), "do not pass on" (Retry-After) or "the answer
 * is broken" (Content-Type, duplicate JSON keys), never a guess.
 */

/** A header as undici gives it: one string per line when sent more than once. */
export type HeaderValue = string | readonly string[] | undefined;

/** A singleton header sent twice with different values. */
export const AMBIGUOUS: unique symbol = Symbol('ambiguous header');

/**
 * The value of a header that may appear once (Content-Type). Repeated lines
 * with the same value (ignoring case and surrounding spaces) are that value;
 * different values are `AMBIGUOUS`: the gateway does not pick one.
 */
export function singleHeader(value: HeaderValue): string | undefined | typeof AMBIGUOUS {
  if (typeof value === 'string' || value === undefined) return value;
  const first = value[0];
  if (first === undefined) return undefined;
  const norm = first.trim().toLowerCase();
  return value.every((v) => v.trim().toLowerCase() === norm) ? first : AMBIGUOUS;
}

/** Larger delta-seconds are read as this (RFC 9111 §1.2.2). */
const MAX_DELTA_SECONDS = 2 ** 31;

/**
 * Seconds from `Cache-Control: max-age`; 0 when the answer must not be
 * stored; undefined when the header says nothing about lifetime.
 *
 * - Every line counts (RFC 9110 §5.3): `max-age=300` on one line and
 *   `no-store` on another is not cacheable.
 * - `no-store` or `no-cache` anywhere, with or without an argument: 0.
 * - The first `max-age` decides (RFC 9111 §4.2.1); its value must be
 *   delta-seconds, `1*DIGIT` (`0x10`, `1e2`, `-1`, `5.0`, empty: 0). The
 *   quoted form `max-age="5"` is read as 5: senders must not produce it, but
 *   recipients ought to accept both forms (RFC 9111 §5.2).
 * - A header that is not a valid directive list (unterminated quote, a space
 *   around `=`, stray characters): 0. Commas and directive names inside a
 *   quoted argument are data, not directives.
 */
export function parseMaxAge(cacheControl: HeaderValue): number | undefined {
  if (cacheControl === undefined) return undefined;
  let maxAge: string | null | undefined;
  for (const line of typeof cacheControl === 'string' ? [cacheControl] : cacheControl) {
    const list = directives(line);
    if (list === undefined) return 0;
    for (const [name, arg] of list) {
      if (name === 'no-store' || name === 'no-cache') return 0;
      if (name === 'max-age' && maxAge === undefined) maxAge = arg ?? null;
    }
  }
  if (maxAge === undefined) return undefined;
  if (maxAge === null || !/^\d+$/.test(maxAge)) return 0;
  return Math.min(Number(maxAge), MAX_DELTA_SECONDS);
}

/**
 * One line of a Cache-Control field as `[lowercase name, argument]` pairs
 * (RFC 9111 §5.2: `token [ "=" ( token / quoted-string ) ]`, in an RFC 9110
 * §5.6.1 list, empty elements allowed); undefined when it is not that.
 */
function directives(line: string): Array<[string, string | undefined]> | undefined {
  const out: Array<[string, string | undefined]> = [];
  const n = line.length;
  let i = 0;
  const skipOws = () => {
    while (i < n && (line[i] === ' ' || line[i] === '\t')) i++;
  };
  const token = (): string | undefined => {
    const start = i;
    while (i < n && isTchar(line.charCodeAt(i))) i++;
    return i === start ? undefined : line.slice(start, i);
  };
  for (;;) {
    skipOws();
    if (i < n && line[i] !== ',') {
      const name = token();
      if (name === undefined) return undefined;
      let arg: string | undefined;
      if (line[i] === '=') {
        i++;
        arg = line[i] === '"' ? quoted() : token();
        if (arg === undefined) return undefined;
      }
      out.push([name.toLowerCase(), arg]);
      skipOws();
    }
    if (i >= n) return out;
    if (line[i] !== ',') return undefined;
    i++;
  }

  /** A quoted-string starting at `i`, unescaped; undefined when malformed. */
  function quoted(): string | undefined {
    let s = '';
    for (i++; i < n; i++) {
      const c = line.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return s;
      }
      if (c === 0x5c) {
        i++;
        if (i >= n || !isQuotedPairChar(line.charCodeAt(i))) return undefined;
      } else if (!isQdtext(c)) {
        return undefined;
      }
      s += line[i];
    }
    return undefined; // no closing quote
  }
}

// RFC 9110 §5.6.2 tchar: "!" "#" "$" "%" "&" "'" "*" "+" "-" "." "^" "_" "`" "|" "~" DIGIT ALPHA
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;
const isTchar = (c: number) => c < 128 && TCHAR[c] === 1;
// RFC 9110 §5.6.4: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
const isQdtext = (c: number) => c === 0x09 || c === 0x20 || c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || (c >= 0x80 && c <= 0xff);
// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
const isQuotedPairChar = (c: number) => c === 0x09 || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff);

const IMF_FIXDATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * A `Retry-After` fit to pass on to clients (RFC 9110 §10.2.3): delay-seconds
 * (at most 10 digits) or an IMF-fixdate, from exactly one line. Anything else
 * (two lines, the obsolete date forms, garbage) is not passed on: the 503
 * stands without it rather than relay something the gateway cannot vouch for.
 */
export function parseRetryAfter(value: HeaderValue): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    if (value.length !== 1) return undefined;
    value = value[0]!;
  }
  const v = value.trim();
  if (/^\d{1,10}$/.test(v)) return v;
  if (IMF_FIXDATE.test(v) && !Number.isNaN(Date.parse(v))) return v;
  return undefined;
}

/**
 * Whether JSON text has an object with the same member name twice, at any
 * depth (names compared after unescaping: `"a"` and `"\u0061"` are the same).
 * JSON.parse keeps the last one silently while other parsers keep the first,
 * so an answer with duplicates means different things to different readers.
 *
 * Expects text JSON.parse has already accepted; a linear scan that decodes
 * only member names. Runs on introspection answers, never on the hot path.
 */
export function hasDuplicateKeys(json: string): boolean {
  // One frame per open container: the names seen so far for an object, null for an array.
  const frames: Array<Set<string> | null> = [];
  let expectName = false;
  const n = json.length;
  for (let i = 0; i < n; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; i < n; i++) {
        const d = json.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      if (expectName) {
        const names = frames[frames.length - 1]!;
        const raw = json.slice(start, i + 1);
        const name = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (names.has(name)) return true;
        names.add(name);
        expectName = false;
      }
    } else if (c === 0x7b /* { */) {
      frames.push(new Set());
      expectName = true;
    } else if (c === 0x5b /* [ */) {
      frames.push(null);
      expectName = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      frames.pop();
      expectName = false;
    } else if (c === 0x2c /* , */) {
      expectName = frames[frames.length - 1] != null;
    }
  }
  return false;
}
