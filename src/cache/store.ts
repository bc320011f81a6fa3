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
  get(key: string): TokenEntry | undefined | Promise<TokenEntry | undefined>;
  set(key: string, entry: TokenEntry): void | Promise<void>;
  /** Removes the entry under `key`; a store that can tell says whether there was one. */
  delete(key: string): void | boolean | Promise<void | boolean>;
}
