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
}

/** A token the authorization server said is not active; kept briefly. */
export interface InactiveToken {
  readonly active: false;
  readonly expiresAt: number;
}

export type TokenEntry = ActiveToken | InactiveToken;
