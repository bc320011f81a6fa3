/** One routing table entry, compiled. */
export interface Route<T> {
  /** Configured prefix, e.g. `/api`. */
  readonly prefix: string;
  readonly value: T;
}

/**
 * What the router compares routes by: the guard (undefined on an open route),
 * its exchange (one per authorization server and client) and required scopes.
 */
export interface Protection {
  readonly guard: { readonly exchange: object; readonly policy: { readonly required: readonly string[] } } | undefined;
}

/** What `Router.match` gives for a path the proxy must refuse (400). */
export const REFUSED: unique symbol = Symbol('refused');

/**
 * Longest-prefix routing on whole path segments: `/api` matches `/api`,
 * `/api/` and `/api/x`, never `/apix`. A prefix ending in `/` matches what
 * starts with it. That is the plain match.
 *
 * Upstreams serve some other spellings of a path with the same handler:
 * - `/admin` and `/admin/` (Express and Spring MVC);
 * - `/admin.json`, `/admin.x` (and `/admin.json/`) as `/admin` (Rails'
 *   `(.:format)`, Spring's suffix patterns).
 * A route configured for a path itself (its name, with or without the
 * trailing `/`: `/robots.txt`, `/x/` for `/x/`) is taken for it. Any other
 * path's candidates are its plain match, the route of its trailing-slash twin
 * (`/x/` for `/x`) and, when some route covers the path plainly, the plain
 * matches of its stems (`/admin` and `/admin/` for `/admin.json`).
 * A spelling may only raise protection, never lower it: the path takes the
 * most protected candidate (open < guarded; a guard with the same exchange
 * and a superset of the scopes is stronger), the longest among equals. When
 * two candidates are guarded in ways that do not compare (other scopes, other
 * authorization server), the path is refused (400).
 *
 * A path that carries, percent-encoded, a character some route prefix has
 * literally (`%3A` with `/v1/projects:purge` configured, `%40` with `/@admin`)
 * is refused too: an upstream that decodes before routing would read it as
 * that route's path while the gateway matched the encoded text.
 */
export class Router<T extends Protection> {
  readonly #routes: Route<T>[];
  readonly #names: Names;
  readonly #folded: Route<T>[];
  readonly #foldedNames: Names;
  /** Percent-encoded forms of the reserved characters route prefixes contain, or null. */
  readonly #encoded: RegExp | null;
  /** Some route prefix has an upper-case letter: every path is also matched with case ignored. */
  readonly #upperPrefixes: boolean;

  constructor(routes: ReadonlyArray<Route<T>>) {
    this.#routes = [...routes].sort((a, b) => b.prefix.length - a.prefix.length);
    this.#names = namesOf(this.#routes);
    this.#folded = this.#routes.map((r) => ({ prefix: r.prefix.toLowerCase(), value: r.value }));
    this.#foldedNames = namesOf(this.#folded);
    this.#upperPrefixes = this.#routes.some((r) => /[A-Z]/.test(r.prefix));
    const reserved = new Set<string>();
    for (const r of this.#routes) for (const ch of r.prefix) if (!/[A-Za-z0-9\-._~/]/.test(ch)) reserved.add(ch.charCodeAt(0).toString(16).toUpperCase());
    this.#encoded = reserved.size === 0 ? null : new RegExp(`%(?:${[...reserved].join('|')})`, 'i');
  }

  /**
   * The route for `path`, undefined when none, or REFUSED (400) when its
   * spellings pick routes whose protection does not compare, when it carries
   * an encoded reserved character of a route prefix, or when it routes
   * otherwise with case ignored. An upstream that matches paths
   * case-insensitively (IIS, ASP.NET) would serve `/API/x` as `/api/x`: a
   * path whose route depends on case is refused, so that spelling cannot pick
   * a less protected route. That holds for a lower-case path too when a
   * route prefix has capitals: `/admin/x` must not take the open `/` route
   * beside a protected `/Admin`, which such an upstream serves it with.
   */
  match(path: string): Route<T> | undefined | typeof REFUSED {
    if (this.#encoded !== null && path.includes('%') && this.#encoded.test(path)) return REFUSED;
    const chosen = choose(this.#routes, this.#names, path);
    if (chosen === REFUSE) return REFUSED;
    if (!this.#upperPrefixes && !/[A-Z]/.test(path)) return chosen;
    const folded = choose(this.#folded, this.#foldedNames, path.toLowerCase());
    return folded !== REFUSE && folded?.value === chosen?.value ? chosen : REFUSED;
  }
}

const REFUSE = Symbol('refuse');

/** Route names (prefixes without their trailing `/`), with their lengths flagged so most paths skip the hash. */
interface Names {
  readonly set: ReadonlySet<string>;
  readonly lengths: Uint8Array;
}

function namesOf(routes: readonly Route<unknown>[]): Names {
  const set = new Set(routes.map((r) => nameOf(r.prefix)));
  const lengths = new Uint8Array(Math.max(0, ...[...set].map((n) => n.length)) + 1);
  for (const n of set) lengths[n.length] = 1;
  return { set, lengths };
}


/** `/admin` for `/admin/` and `/admin`; `/` for the root. */
function nameOf(prefix: string): string {
  return prefix.length > 1 && prefix.charCodeAt(prefix.length - 1) === 47 ? prefix.slice(0, -1) : prefix;
}

function choose<T extends Protection>(routes: readonly Route<T>[], names: Names, path: string): Route<T> | undefined | typeof REFUSE {
  const plain = longest(routes, path);
  // The path's name: without its trailing `/`.
  const len = path.length > 1 && path.charCodeAt(path.length - 1) === 47 ? path.length - 1 : path.length;
  // A route configured for this very path (with or without its trailing /).
  if (plain !== undefined && plain.prefix.length >= len) return plain;
  let candidates: Array<Route<T> | undefined> | undefined;
  // `/x` with `/x/` configured: its trailing-slash twin's route.
  if (names.lengths[len] === 1) {
    const n = path.slice(0, len);
    if (names.set.has(n)) candidates = [plain, longest(routes, `${n}/`)];
  }
  // Extension stems (a `.` in the last segment, not its first character), for a path some route covers.
  if (plain !== undefined) {
    for (let k = len - 1; k > 1; k--) {
      const c = path.charCodeAt(k);
      if (c === 47) break;
      if (c !== 46 || names.lengths[k] !== 1 || path.charCodeAt(k - 1) === 47) continue;
      const stem = path.slice(0, k);
      if (names.set.has(stem)) (candidates ??= [plain]).push(longest(routes, stem), longest(routes, `${stem}/`));
    }
  }
  if (candidates === undefined) return plain;
  let best: Route<T> | undefined;
  for (const c of candidates) {
    if (c === undefined || c === best) continue;
    if (best === undefined) {
      best = c;
      continue;
    }
    const order = compare(c.value, best.value);
    if (order > 0 || (order === 0 && c.prefix.length > best.prefix.length)) best = c;
  }
  // Every candidate must be at most as protected as the one chosen.
  for (const c of candidates) if (c !== undefined && !(compare(best!.value, c.value) >= 0)) return REFUSE;
  return best;
}

/**
 * > 0 when `a` is more protected than `b`, 0 when equally, < 0 when less;
 * NaN when they do not compare (other exchanges, or scope sets neither of
 * which contains the other): every comparison with NaN is false.
 */
function compare(a: Protection, b: Protection): number {
  if (a === b) return 0;
  const ga = a.guard;
  const gb = b.guard;
  if (ga === undefined) return gb === undefined ? 0 : -1;
  if (gb === undefined) return 1;
  if (ga.exchange !== gb.exchange) return Number.NaN;
  const ra = ga.policy.required;
  const rb = gb.policy.required;
  const aCoversB = rb.every((s) => ra.includes(s));
  const bCoversA = ra.every((s) => rb.includes(s));
  if (aCoversB) return bCoversA ? 0 : 1;
  return bCoversA ? -1 : Number.NaN;
}

function longest<T>(routes: readonly Route<T>[], path: string): Route<T> | undefined {
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i]!;
    if (matches(r.prefix, path)) return r;
  }
  return undefined;
}

/** The plain match: `p` is a prefix of `path` ending on a segment boundary. */
function matches(p: string, path: string): boolean {
  if (!path.startsWith(p)) return false;
  return path.length === p.length || p.length === 1 || p.charCodeAt(p.length - 1) === 47 || path.charCodeAt(p.length) === 47;
}

/**
 * The upstream path for `path` matched by `prefix`: with a path in the
 * upstream URL, that path replaces the prefix (nginx `proxy_pass` with a URI);
 * without one, the path is forwarded unchanged. Never produces `//`.
 */
export function rewritePath(path: string, prefix: string, upstreamBase: string): string {
  if (upstreamBase === '') return path;
  if (!path.startsWith(prefix) || (!prefix.endsWith('/') && path.charCodeAt(prefix.length) === 46)) {
    // Matched as the prefix without its trailing `/`, or with an extension on
    // its last segment: the upstream path is spelled the same way
    // (`/admin` -> `/v1`, `/admin.json` -> `/v1.json` for `/admin/` -> `/v1/`).
    const name = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
    const base = upstreamBase.length > 1 && upstreamBase.endsWith('/') ? upstreamBase.slice(0, -1) : upstreamBase;
    const out = base + path.slice(name.length);
    return out.startsWith('//') ? out.slice(1) : out;
  }
  const rest = path.slice(prefix.length);
  if (rest === '') return upstreamBase;
  const baseSlash = upstreamBase.charCodeAt(upstreamBase.length - 1) === 47;
  const restSlash = rest.charCodeAt(0) === 47;
  if (baseSlash && restSlash) return upstreamBase + rest.slice(1);
  if (!baseSlash && !restSlash) return `${upstreamBase}/${rest}`;
  return upstreamBase + rest;
}
