import { decodeJwt, type JWTPayload } from 'jose';

/**
 * What the gateway remembers about one active token. Built once when the
 * introspection answer arrives, so a cache hit is a lookup, a scope check and
 * a header swap: no JWT parsing, no string building. Kept small on purpose
 * (one string of the JWT, one of its scopes): a gateway may hold 100,000 of
 * these.
 */
export interface ActiveToken {
  readonly active: true;
  /** `Bearer <jwt>`, ready for the upstream request. */
  readonly authorization: string;
  /**
   * The token's scopes from `scope` (space-separated) or `scp` (array),
   * space-separated with a space before and after, so that `" read "` is
   * found with one `includes`.
   */
  readonly scope: string;
  /** Epoch milliseconds after which the entry must not be used. */
  readonly expiresAt: number;
  /**
   * The JWT's claims, as they were when the answer was verified and cached
   * (identity headers, middleware handlers, audience and issuer checks read
   * them). Frozen.
   */
  readonly claims: Readonly<JWTPayload>;
  /** The token's `client_id` claim (a string), for the access log. */
  readonly clientId?: string | undefined;
  /** The token's `sub` claim (a string), for the access log when `log.access_log_sub` is on. */
  readonly sub?: string | undefined;
  /**
   * What the token is bound to (its `cnf`): a DPoP key (RFC 9449 §6) or a
   * client certificate (RFC 8705 §3). Checked on every request, cache hits
   * included; undefined for a bearer token.
   */
  readonly binding?: Binding | undefined;
  /**
   * Set on the verdict of a request whose DPoP proof the gateway verified,
   * when the upstream gets the proof too (`dpop.forward: dpop`): the
   * client's `DPoP` header and the proof key's thumbprint. Never on a cached entry.
   */
  readonly dpop?: { readonly proof: string; readonly jkt: string } | undefined;
}

/** A sender-constrained token's confirmation (`cnf`), as far as the gateway checks it. */
export interface Binding {
  /** RFC 9449 §6.1 `cnf.jkt`: the RFC 7638 SHA-256 thumbprint of the DPoP key. */
  readonly jkt?: string | undefined;
  /** RFC 8705 §3.1 `cnf["x5t#S256"]`: the SHA-256 thumbprint of the client certificate (base64url). */
  readonly x5t?: string | undefined;
}

/** The binding `claims.cnf` names (members `jkt` and `x5t#S256`, strings); undefined when there is none. */
export function bindingOf(claims: Readonly<JWTPayload>): Binding | undefined {
  const cnf = claims.cnf as Record<string, unknown> | undefined;
  if (cnf === undefined || cnf === null || typeof cnf !== 'object') return undefined;
  const jkt = typeof cnf.jkt === 'string' ? cnf.jkt : undefined;
  const x5t = typeof cnf['x5t#S256'] === 'string' ? (cnf['x5t#S256'] as string) : undefined;
  return jkt === undefined && x5t === undefined ? undefined : Object.freeze({ jkt, x5t });
}

/** A token the authorization server said is not active; kept briefly. */
export interface InactiveToken {
  readonly active: false;
  readonly expiresAt: number;
}

export type TokenEntry = ActiveToken | InactiveToken;

/**
 * The claims are decoded from the cached JWT on first use and then kept, not
 * at insert: most front doors (the proxy) never read them, and 100,000 claim
 * objects held for nothing would cost tens of MiB. The JWT is the very string
 * whose claims were checked when the answer arrived, so decoding it again
 * yields the same claims.
 */
class CachedToken implements ActiveToken {
  readonly active = true as const;
  #claims: Readonly<JWTPayload> | undefined;
  /** Set at insert when the claims are at hand; else read from the claims on first use. */
  #who: Who | undefined;

  constructor(
    readonly authorization: string,
    readonly scope: string,
    readonly expiresAt: number,
    claims: Readonly<JWTPayload> | undefined,
    who: Who | undefined,
    readonly binding: Binding | undefined,
  ) {
    this.#claims = claims;
    this.#who = who;
    Object.freeze(this);
  }

  get clientId(): string | undefined {
    return (this.#who ??= whoOf(this.claims)).clientId;
  }

  get sub(): string | undefined {
    return (this.#who ??= whoOf(this.claims)).sub;
  }

  get claims(): Readonly<JWTPayload> {
    return (this.#claims ??= Object.freeze(decodeJwt(this.authorization.slice(this.authorization.indexOf(' ') + 1))));
  }
}

/**
 * An active entry. `claims`, when given, are kept as they are (frozen);
 * otherwise they are decoded from the JWT in `authorization` when first read.
 */
export function activeToken(authorization: string, scope: string, expiresAt: number, claims?: Readonly<JWTPayload>, who?: Who, binding?: Binding): ActiveToken {
  return new CachedToken(authorization, scope, expiresAt, claims === undefined ? undefined : Object.freeze({ ...claims }), who, binding);
}

/** Who a token speaks for, as the access log names it: two short strings kept beside the JWT instead of every claim. */
export interface Who {
  readonly clientId: string | undefined;
  readonly sub: string | undefined;
}

/**
 * `client_id` and `sub` from claims, when they are strings of at most 1024
 * characters (what a purge by `sub` or `client_id` accepts; the access log
 * shows the first 256).
 */
export function whoOf(claims: Readonly<JWTPayload>): Who {
  const c = claims.client_id;
  const s = claims.sub;
  return { clientId: typeof c === 'string' && c.length <= 1024 ? c : undefined, sub: typeof s === 'string' && s.length <= 1024 ? s : undefined };
}

/**
 * Why an answer is kept as long as it is (the debug log says it):
 * `token_cache_seconds` (the configured bound was the shortest),
 * `max-age` (the answer's Cache-Control), `exp` (the token expires first),
 * `no-store` (max-age 0 or no-store: not kept), `negative`
 * (an inactive token, kept `negative_cache_seconds`), `expired` (active
 * but past its exp: kept as inactive), `not_kept` (an answer that is not a
 * statement about the token), `shared` (found in the shared cache: kept
 * locally for what is left of its life there).
 */
export type TtlReason = 'token_cache_seconds' | 'max-age' | 'exp' | 'no-store' | 'negative' | 'expired' | 'not_kept' | 'shared';

/**
 * How long a positive answer is kept: min(`token_cache_seconds`, max-age,
 * exp - now), and which bound won. `ttlMs` <= 0 means not kept.
 */
export function positiveLifetime(now: number, tokenCacheSeconds: number, maxAge: number | undefined, exp: unknown): { ttlMs: number; reason: TtlReason } {
  let ttlMs = tokenCacheSeconds * 1000;
  let reason: TtlReason = 'token_cache_seconds';
  if (maxAge !== undefined && maxAge * 1000 < ttlMs) {
    ttlMs = maxAge * 1000;
    reason = maxAge === 0 ? 'no-store' : 'max-age';
  }
  if (typeof exp === 'number') {
    const left = exp * 1000 - now;
    if (left <= 0) return { ttlMs: 0, reason: 'expired' };
    if (left < ttlMs) {
      ttlMs = left;
      reason = 'exp';
    }
  }
  return { ttlMs, reason };
}
