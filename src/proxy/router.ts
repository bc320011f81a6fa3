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
    const p = r.prefix;
    if (!path.startsWith(p)) continue;
    if (path.length === p.length || p.charCodeAt(p.length - 1) === 47 || path.charCodeAt(p.length) === 47) return r;
  }
  return undefined;
}

/**
 * The upstream path for `path` matched by `prefix`: with a path in the
 * upstream URL, that path replaces the prefix (nginx `proxy_pass` with a URI);
 * without one, the path is forwarded unchanged. Never produces `//`.
 */
export function rewritePath(path: string, prefix: string, upstreamBase: string): string {
  if (upstreamBase === '') return path;
  const rest = path.slice(prefix.length);
  if (rest === '') return upstreamBase;
  const baseSlash = upstreamBase.charCodeAt(upstreamBase.length - 1) === 47;
  const restSlash = rest.charCodeAt(0) === 47;
  if (baseSlash && restSlash) return upstreamBase + rest.slice(1);
  if (!baseSlash && !restSlash) return `${upstreamBase}/${rest}`;
  return upstreamBase + rest;
}
