import { setImmediate as nextTurn } from 'node:timers/promises';
import type { TokenEntry } from '../../src/cache/entry.js';
import type { TokenStore } from '../../src/cache/store.js';

/**
 * A scripted asynchronous store over a synchronous one: every call answers on
 * a later turn of the event loop, as a shared store over the network would.
 * `failReads`/`failWrites` make it reject, to show a store failure is a miss,
 * never a refusal. Counts reads.
 */
export class AsyncStore implements TokenStore {
  reads = 0;
  failReads = false;
  failWrites = false;
  constructor(readonly inner: TokenStore) {}

  async get(key: string): Promise<TokenEntry | undefined> {
    this.reads++;
    await nextTurn();
    if (this.failReads) throw new Error('scripted store read failure');
    return await this.inner.get(key);
  }

  async set(key: string, entry: TokenEntry): Promise<void> {
    await nextTurn();
    if (this.failWrites) throw new Error('scripted store write failure');
    await this.inner.set(key, entry);
  }

  async delete(key: string): Promise<void> {
    await nextTurn();
    await this.inner.delete(key);
  }
}
