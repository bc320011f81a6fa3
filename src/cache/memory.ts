import { LRUCache } from 'lru-cache';
import type { TokenEntry } from './entry.js';

/** A clock in epoch milliseconds; injectable so tests can move time. */
export type Clock = () => number;

export interface MemoryCacheOptions {
  /** Upper bound on entries; the least recently used entry is evicted first. */
  maxEntries: number;
  now?: Clock;
}

/**
 * In-process token cache: bounded LRU whose entries carry their own absolute
 * expiry. Reads never extend an entry's life; an expired entry is dropped on
 * the read that finds it.
 */
export class MemoryTokenCache {
  readonly #lru: LRUCache<string, TokenEntry>;
  readonly #now: Clock;

  constructor(opts: MemoryCacheOptions) {
    if (!Number.isInteger(opts.maxEntries) || opts.maxEntries < 1) {
      throw new TypeError('"maxEntries" option must be a positive integer');
    }
    this.#lru = new LRUCache({ max: opts.maxEntries });
    this.#now = opts.now ?? Date.now;
  }

  get(key: string): TokenEntry | undefined {
    const entry = this.#lru.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#now()) {
      this.#lru.delete(key);
      return undefined;
    }
    return entry;
  }

  set(key: string, entry: TokenEntry): void {
    if (entry.expiresAt <= this.#now()) return;
    this.#lru.set(key, entry);
  }

  delete(key: string): void {
    this.#lru.delete(key);
  }

  get size(): number {
    return this.#lru.size;
  }

  clear(): void {
    this.#lru.clear();
  }
}
