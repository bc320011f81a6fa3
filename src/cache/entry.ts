import type { JWTPayload } from 'jose';

/**
 * What the gateway remembers about one token. Built once when the
 * introspection answer arrives, so a cache hit is a lookup, a scope check and
 * a header swap: no JWT parsing, no string building.
 */
export interface ActiveToken {
  readonly active: true;
  /** The JWT from the authorization server, forwarded to the upstream. */
  readonly jwt: string;
  /** `Bearer <jwt>`, pre-built for the upstream request. */
  readonly authorization: string;
  /** Scopes from the JWT's `scope` (space-separated) or `scp` (array) claim. */
  readonly scopes: ReadonlySet<string>;
  /** Decoded (not verified: the upstream verifies) JWT claims. */
  readonly claims: Readonly<JWTPayload>;
  /** Epoch milliseconds after which the entry must not be used. */
  readonly expiresAt: number;
}

/** A token the authorization server said is not active; kept briefly. */
export interface InactiveToken {
  readonly active: false;
  readonly expiresAt: number;
}

export type TokenEntry = ActiveToken | InactiveToken;
