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

  constructor(
    readonly authorization: string,
    readonly scope: string,
    readonly expiresAt: number,
    claims: Readonly<JWTPayload> | undefined,
  ) {
    this.#claims = claims;
    Object.freeze(this);
  }

  get claims(): Readonly<JWTPayload> {
    return (this.#claims ??= Object.freeze(decodeJwt(this.authorization.slice(this.authorization.indexOf(' ') + 1))));
  }
}

/**
 * An active entry. `claims`, when given, are kept as they are (frozen);
 * otherwise they are decoded from the JWT in `authorization` when first read.
 */
export function activeToken(authorization: string, scope: string, expiresAt: number, claims?: Readonly<JWTPayload>): ActiveToken {
  return new CachedToken(authorization, scope, expiresAt, claims === undefined ? undefined : Object.freeze({ ...claims }));
}
