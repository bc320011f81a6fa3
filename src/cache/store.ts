import type { TokenEntry } from './entry.js';

/**
 * Where the exchange keeps what it learnt about tokens, under keys that are
 * hashes (never a raw token).
 *
 * A store may answer synchronously (the in-process memory store: a cache hit
 * then costs no promise and no turn of the event loop) or with a promise (a
 * shared store such as Redis; a two-level store answers synchronously when
 * its first level has the entry). Every entry carries its own absolute
 * expiry: a store must never return an entry past it, and a read never
 * extends it.
 *
 * Writes are fire-and-forget for the exchange: a store that fails to write
 * reports it through its own channel and never fails a request.
 */
export interface TokenStore {
  /**
   * Bumped by every purge (a delete, a scan, a clear), when the store keeps
   * count: an answer whose introspection started before a purge is not
   * kept, and a request after a purge does not wait for an introspection
   * started before it.
   */
  readonly purges?: number;
  get(key: string): TokenEntry | undefined | Promise<TokenEntry | undefined>;
  set(key: string, entry: TokenEntry): void | Promise<void>;
  /** Removes the entry under `key`; a store that can tell says whether there was one. */
  delete(key: string): void | boolean | Promise<void | boolean>;
}

/** One token as a shared store names it: derived once per miss, never on a hit. */
export interface SharedRef {
  /** The store's key for the token's entry (a keyed hash: no token in it). */
  readonly key: string;
  /** Namespace and token: what the entry is sealed under. Never stored, never logged. */
  readonly material: string;
  /**
   * Set by `get` on a miss: the store's own time of that read. An answer
   * fetched after it is written only over entries older than it, never over
   * a newer answer or a purge made since.
   */
  readAt?: number;
}

/**
 * The outcome of asking to be the one instance that introspects a token:
 * `won` (introspect, then `release`, saying whether an answer was written), or not (another instance is at it:
 * `settled` resolves when it is done or after a bounded wait, whichever
 * comes first; then read the store again and introspect only if it is still
 * empty).
 */
export type Claim = { readonly won: true; release(filled: boolean): void } | { readonly won: false; readonly settled: Promise<void> };

/**
 * A second-level store shared by every instance (Redis): an exchange asks
 * it after a miss in its own (first-level) store, and writes answers to
 * both. No method rejects or throws: a shared store that cannot answer is a
 * miss, and a claim it cannot make is won locally, so a Redis outage never
 * becomes a client error.
 */
export interface SharedTokenStore {
  ref(namespace: string, token: string): SharedRef;
  get(ref: SharedRef): Promise<TokenEntry | undefined>;
  /** Resolves once written (or given up); never rejects, and an exchange does not wait for it. */
  set(ref: SharedRef, entry: TokenEntry): Promise<void>;
  /** `holdMs`: how long the introspection the claim is for may take (the claim lasts that long). */
  claim(ref: SharedRef, holdMs: number): Promise<Claim>;
  /** After a claim not won: whether the other instance's answer was found (metrics). */
  waited?(found: boolean): void;
}
