/*
 * Removing cached tokens before their time (POST /cache/purge on the admin
 * listener): one token, or every token of a subject or of a client. The
 * admin listener parses the request into a `PurgeRequest`; the guards carry
 * it out (their local cache, and the shared cache with every instance's
 * local cache when Redis is configured).
 */

/** What to purge: exactly one of a token, a subject (`sub`) or a client (`client_id`). */
export type PurgeRequest = { readonly token: string } | { readonly sub: string } | { readonly client_id: string };

/** What a purge did. */
export interface PurgeOutcome {
  /** Entries removed from this process's local cache (a cluster's primary sums its workers'). */
  readonly local: number;
  /** Entries removed from the shared cache (0 without Redis). */
  readonly shared: number;
  /**
   * `not_configured`: no shared cache, the purge reached this process only
   * (with `workers`, every worker). `notified`: removed from Redis and every
   * instance told (pub/sub) to drop it from its local cache. `unavailable`:
   * Redis could not be reached: removed locally only, other instances keep
   * their copies until their local entries expire or their subscription
   * comes back (a resumed subscription clears the local cache).
   */
  readonly instances: 'not_configured' | 'notified' | 'unavailable';
}

/** Which kind a request is, for logs and metrics (never its value). */
export function purgeKind(r: PurgeRequest): 'token' | 'sub' | 'client_id' {
  return 'token' in r ? 'token' : 'sub' in r ? 'sub' : 'client_id';
}
