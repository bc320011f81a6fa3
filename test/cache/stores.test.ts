/*
 * The shared store suite against each store: the in-process LRU, a scripted
 * asynchronous stand-in (every call answers on a later turn, as a store over
 * the network would), and the real Redis store through an adapter that names
 * entries by token as the exchange does (it keys them by namespace + token,
 * never by a raw key).
 */
import { after } from 'node:test';
import { MemoryTokenCache } from '../../src/cache/memory.js';
import { RedisSharedCache } from '../../src/cache/redis/shared.js';
import type { TokenEntry } from '../../src/cache/entry.js';
import type { TokenStore } from '../../src/cache/store.js';
import { createLogger } from '../../src/observability/logger.js';
import { AsyncStore } from '../helpers/stores.js';
import { skip, startRedis, sharedUp, TEST_KEY_SECRET, type RedisInstance } from '../helpers/redis.js';
import { storeSuite } from './store.case.js';
import type { FakeClock } from '../helpers/core.js';

storeSuite('memory (lru-cache)', (clock) => new MemoryTokenCache({ maxEntries: 10, maxNegativeEntries: 10, now: clock.now }));
storeSuite('scripted asynchronous store', (clock) => new AsyncStore(new MemoryTokenCache({ maxEntries: 10, maxNegativeEntries: 10, now: clock.now })));

let redis: RedisInstance | undefined;
const opened: RedisSharedCache[] = [];
after(async () => {
  await Promise.all(opened.map((s) => s.release()));
  await redis?.close();
});

/** The Redis store seen as a TokenStore: each suite test gets its own namespace, so tests never see each other's entries. */
let namespaces = 0;
async function redisStore(clock: FakeClock): Promise<TokenStore> {
  redis ??= await startRedis();
  const shared = new RedisSharedCache(
    { url: redis.url, key_secret: TEST_KEY_SECRET, key_prefix: 'suite:', connect_timeout_ms: 1000, command_timeout_ms: 1000, lock_wait_ms: 100, verify_ssl: true },
    { logger: createLogger('silent'), now: clock.now },
  ).retain();
  opened.push(shared);
  await sharedUp(shared);
  const ns = `ns${namespaces++}\n`;
  return {
    get: (k: string) => shared.get(shared.ref(ns, k)),
    // As the exchange does: the read that missed gives the version the answer is written with.
    set: async (k: string, e: TokenEntry) => {
      const ref = shared.ref(ns, k);
      await shared.get(ref);
      await shared.set(ref, e);
    },
    delete: async (k: string) => {
      await shared.purgeToken(k, [shared.ref(ns, k)]);
    },
  };
}

storeSuite('Redis (real redis-server)', redisStore, { skip });
