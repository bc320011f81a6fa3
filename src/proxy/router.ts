/** One routing table entry, compiled. */
export interface Route<T> {
  /** Configured prefix, e.g. `/api`. */
  readonly prefix: string;
  readonly value: T;
}

/**
 * Longest-prefix routing on whole path segments: `/api` matches `/api`,
 * `/api/` and `/api/x`, never `/apix`. A prefix ending in `/` matches what
 * starts with it.
 *
 * A route also takes the spellings an upstream serves with that route's
 * handler, so none of them can fall to a less protected route (`/` open beside
 * a protected `/admin/`):
 * - `/admin`, the prefix without its trailing `/` (Express and Spring MVC
 *   serve it with the `/admin/` handler);
 * - `/admin.json`, `/admin.x` (and `/admin.json/`): the prefix's last
 *   segment with an extension (Rails' `(.:format)`, Spring's suffix patterns
 *   serve them as `/admin`).
 * A longer configured prefix still wins (`/admin.json` as a route of its own).
 */
export class Router<T> {
  readonly #routes: Route<T>[];
  readonly #folded: Route<T>[];

  constructor(routes: ReadonlyArray<Route<T>>) {
    this.#routes = [...routes].sort((a, b) => b.prefix.length - a.prefix.length);
    this.#folded = this.#routes.map((r) => ({ prefix: r.prefix.toLowerCase(), value: r.value }));
  }

  match(path: string): Route<T> | undefined {
    return longest(this.#routes, path);
  }

  /**
   * Whether `path` routes the same way when case is ignored. An upstream that
   * matches paths case-insensitively (IIS, ASP.NET) would serve `/API/x` as
   * `/api/x`: a path whose route depends on case is refused, so that spelling
   * cannot pick a less protected route.
   */
  sameIgnoringCase(path: string, matched: Route<T> | undefined): boolean {
    if (!/[A-Z]/.test(path)) return true;
    return longest(this.#folded, path.toLowerCase())?.value === matched?.value;
  }
}

function longest<T>(routes: readonly Route<T>[], path: string): Route<T> | undefined {
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i]!;
    if (matches(r.prefix, path)) return r;
  }
  return undefined;
}

function matches(p: string, path: string): boolean {
  const slash = p.length > 1 && p.charCodeAt(p.length - 1) === 47;
  // The prefix's name without its trailing slash: `/admin` for `/admin/`.
  const name = slash ? p.slice(0, -1) : p;
  if (!path.startsWith(name)) return false;
  if (path.length === name.length) return true; // `/admin`, or `/` for the root route
  if (slash) {
    if (path.startsWith(p)) return true;
  } else if (p.length === 1 || path.charCodeAt(name.length) === 47) {
    return true; // the root route, or on a segment boundary
  }
  // `/admin.json`: an extension on the prefix's last segment, nothing after
  // it but a trailing `/` (which Rails and Express ignore too).
  if (name.length <= 1 || path.charCodeAt(name.length) !== 46 /* . */) return false;
  const next = path.indexOf('/', name.length);
  return next === -1 || next === path.length - 1;
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
