import { LRUCache } from 'lru-cache';
import type { ActiveToken, InactiveToken, TokenEntry } from './entry.js';
import type { TokenStore } from './store.js';

/** Entries a purge scan looks at between two turns of the event loop. */
const SCAN_CHUNK = 5000;

/** A turn of the event loop (I/O callbacks run before the scan goes on). */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A clock in epoch milliseconds; injectable so tests can move time. */
export type Clock = () => number;

export interface MemoryCacheOptions {
  /** Upper bound on active entries; the least recently used entry is evicted first. */
  maxEntries: number;
  /**
   * Upper bound on remembered inactive tokens, in a store of their own (LRU
   * too). Defaults to `maxEntries`.
   */
  maxNegativeEntries?: number;
  now?: Clock;
  /** Told of each entry pushed out by the bound before its expiry (metrics); absent: nothing is watched. */
  onEvict?: ((kind: 'active' | 'inactive') => void) | undefined;
}

/**
 * In-process token cache: bounded LRUs whose entries carry their own absolute
 * expiry. Reads never extend an entry's life; an expired entry is dropped on
 * the read that finds it.
 *
 * Active and inactive tokens live in two stores with their own bounds: anyone
 * can mint garbage tokens for free, so if both shared one LRU a flood of them
 * would evict the valid tokens everyone else relies on (each evicted one then
 * costs an introspection on its next request).
 */
export class MemoryTokenCache implements TokenStore {
  readonly #active: LRUCache<string, ActiveToken>;
  readonly #inactive: LRUCache<string, InactiveToken>;
  readonly #now: Clock;
  #purges = 0;

  constructor(opts: MemoryCacheOptions) {
    if (!Number.isInteger(opts.maxEntries) || opts.maxEntries < 1) {
      throw new TypeError('"maxEntries" option must be a positive integer');
    }
    const maxNegative = opts.maxNegativeEntries ?? opts.maxEntries;
    if (!Number.isInteger(maxNegative) || maxNegative < 1) {
      throw new TypeError('"maxNegativeEntries" option must be a positive integer');
    }
    const onEvict = opts.onEvict;
    // lru-cache calls dispose on every removal when given one: only with metrics.
    this.#active = new LRUCache<string, ActiveToken>({ max: opts.maxEntries, ...(onEvict ? { dispose: (_v, _k, reason) => reason === 'evict' && onEvict('active') } : {}) });
    this.#inactive = new LRUCache<string, InactiveToken>({ max: maxNegative, ...(onEvict ? { dispose: (_v, _k, reason) => reason === 'evict' && onEvict('inactive') } : {}) });
    this.#now = opts.now ?? Date.now;
  }

  get(key: string): TokenEntry | undefined {
    const entry = this.#active.get(key) ?? this.#inactive.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#now()) {
      if (entry.active) this.#active.delete(key);
      else this.#inactive.delete(key);
      return undefined;
    }
    return entry;
  }

  set(key: string, entry: TokenEntry): void {
    if (entry.expiresAt <= this.#now()) return;
    // A key lives in one store at a time: the newer answer replaces the other.
    if (entry.active) {
      this.#inactive.delete(key);
      this.#active.set(key, entry);
    } else {
      this.#active.delete(key);
      this.#inactive.set(key, entry);
    }
  }

  /** Purges so far: every delete, scan and clear (see `TokenStore.purges`). */
  get purges(): number {
    return this.#purges;
  }

  /** Removes the entry under `key`; whether there was one. */
  delete(key: string): boolean {
    this.#purges++;
    const a = this.#active.delete(key);
    const i = this.#inactive.delete(key);
    return a || i;
  }

  /**
   * Removes every active entry `match` picks (a purge by subject or client:
   * a scan of the whole store, for an administrative request, never on a
   * request's path); how many. The scan yields to the event loop every
   * `SCAN_CHUNK` entries, so purging a large cache never stalls the requests
   * served meanwhile (100,000 entries take tens of milliseconds).
   */
  async deleteWhere(match: (entry: ActiveToken) => boolean): Promise<number> {
    this.#purges++;
    const keys: string[] = [];
    this.#active.forEach((_entry, key) => {
      keys.push(key);
    });
    let removed = 0;
    for (let i = 0; i < keys.length; i++) {
      if (i > 0 && i % SCAN_CHUNK === 0) await yieldToEventLoop();
      const key = keys[i]!;
      const entry = this.#active.peek(key);
      if (entry !== undefined && match(entry)) {
        this.#active.delete(key);
        removed++;
      }
    }
    return removed;
  }

  /** Entries held, active and inactive. */
  get size(): number {
    return this.#active.size + this.#inactive.size;
  }

  /** Inactive entries held (the negative store). */
  get negativeSize(): number {
    return this.#inactive.size;
  }

  clear(): void {
    this.#purges++;
    this.#active.clear();
    this.#inactive.clear();
  }
}
