/*
 * MemoryTokenCache on its own: active and inactive entries in two bounded
 * stores, expiry on read, one store per key.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryTokenCache } from '../../src/cache/memory.js';
import { activeToken, type ActiveToken, type InactiveToken } from '../../src/cache/entry.js';
import { fakeClock } from '../helpers/core.js';

const active = (expiresAt: number): ActiveToken => activeToken('Bearer a.b.c', ' read ', expiresAt, {});
const inactive = (expiresAt: number): InactiveToken => ({ active: false, expiresAt });

describe('MemoryTokenCache: negative entries in their own store', () => {
  test('garbage tokens cannot evict valid ones: 250 inactive entries leave the 2 active entries of a 2-entry bound in place', () => {
    const clock = fakeClock();
    const cache = new MemoryTokenCache({ maxEntries: 2, maxNegativeEntries: 3, now: clock.now });
    const later = clock.now() + 60_000;
    cache.set('good-1', active(later));
    cache.set('good-2', active(later));
    for (let i = 0; i < 250; i++) cache.set(`garbage-${i}`, inactive(later));
    assert.equal(cache.get('good-1')?.active, true);
    assert.equal(cache.get('good-2')?.active, true);
    assert.equal(cache.negativeSize, 3, 'the negative store keeps its own bound');
    assert.equal(cache.size, 5);
    assert.equal(cache.get('garbage-0'), undefined, 'the oldest inactive entry was evicted');
    assert.equal(cache.get('garbage-249')?.active, false);
  });

  test('active entries are evicted only by active entries (LRU)', () => {
    const clock = fakeClock();
    const cache = new MemoryTokenCache({ maxEntries: 2, maxNegativeEntries: 2, now: clock.now });
    const later = clock.now() + 60_000;
    cache.set('a', active(later));
    cache.set('b', active(later));
    cache.get('a');
    cache.set('c', active(later));
    assert.equal(cache.get('b'), undefined);
    assert.ok(cache.get('a') && cache.get('c'));
  });

  test('a key lives in one store: a newer answer of the other kind replaces it', () => {
    const clock = fakeClock();
    const cache = new MemoryTokenCache({ maxEntries: 5, maxNegativeEntries: 5, now: clock.now });
    const later = clock.now() + 60_000;
    cache.set('k', inactive(later));
    cache.set('k', active(later));
    assert.equal(cache.get('k')?.active, true);
    assert.equal(cache.size, 1);
    cache.set('k', inactive(later));
    assert.equal(cache.get('k')?.active, false);
    assert.equal(cache.size, 1);
    cache.delete('k');
    assert.equal(cache.size, 0);
  });

  test('entries of both stores expire on read, and reads do not extend them', () => {
    const clock = fakeClock();
    const cache = new MemoryTokenCache({ maxEntries: 5, maxNegativeEntries: 5, now: clock.now });
    cache.set('a', active(clock.now() + 1000));
    cache.set('i', inactive(clock.now() + 1000));
    clock.advance(999);
    assert.ok(cache.get('a') && cache.get('i'));
    clock.advance(1);
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.get('i'), undefined);
    assert.equal(cache.size, 0);
  });

  test('bounds are checked when the cache is built', () => {
    assert.throws(() => new MemoryTokenCache({ maxEntries: 1, maxNegativeEntries: 0 }), /"maxNegativeEntries" option must be a positive integer/);
    assert.throws(() => new MemoryTokenCache({ maxEntries: 0 }), /"maxEntries" option must be a positive integer/);
    assert.equal(new MemoryTokenCache({ maxEntries: 1 }).size, 0, 'maxNegativeEntries defaults to maxEntries');
  });
});

describe('MemoryTokenCache.deleteWhere (purge by sub or client_id)', () => {
  test('removes exactly the active entries picked, across scan chunks, and lets the event loop run meanwhile', async () => {
    const c = new MemoryTokenCache({ maxEntries: 20_000 });
    const exp = Date.now() + 60_000;
    for (let i = 0; i < 12_000; i++) c.set(`k${i}`, activeToken('Bearer a.e30.c', ' ', exp, undefined, { clientId: `c${i % 3}`, sub: `u${i % 1000}` }));
    c.set('inactive', { active: false, expiresAt: exp });
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 0);
    const removed = await c.deleteWhere((e) => e.sub === 'u7');
    clearInterval(ticker);
    assert.equal(removed, 12);
    assert.equal(c.get('k7'), undefined);
    assert.equal(c.get('k11007'), undefined, 'an entry past the first chunk');
    assert.ok(c.get('k8'));
    assert.equal(c.get('inactive')?.active, false, 'inactive entries are not purged by subject');
    assert.equal(await c.deleteWhere((e) => e.clientId === 'c1'), 3996);
    assert.equal(c.size, 12_000 - 12 - 3996 + 1);
    assert.ok(ticks > 0, 'timers ran during the scan');
  });
});
