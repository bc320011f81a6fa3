/*
 * The shared store suite against each store. `AsyncStore` is a scripted
 * stand-in for a shared store (every call answers through a promise, on a
 * later turn), so the async half of the interface is held to the same rules
 * before the Redis store exists.
 */
import { MemoryTokenCache } from '../../src/cache/memory.js';
import { AsyncStore } from '../helpers/stores.js';
import { storeSuite } from './store.case.js';

storeSuite('memory (lru-cache)', (clock) => new MemoryTokenCache({ maxEntries: 10, maxNegativeEntries: 10, now: clock.now }));
storeSuite('scripted asynchronous store', (clock) => new AsyncStore(new MemoryTokenCache({ maxEntries: 10, maxNegativeEntries: 10, now: clock.now })));
