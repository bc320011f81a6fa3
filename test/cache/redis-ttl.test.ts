/*
 * Lifetimes in the shared store (real redis-server): the TTL is set with the
 * value, reads never extend it, and an entry read from Redis never lives
 * longer locally than Redis keeps it, whatever the writer's clock said.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { activeToken } from '../../src/cache/entry.js';
import { RedisSharedCache } from '../../src/cache/redis/shared.js';
import { createLogger } from '../../src/observability/logger.js';
import { skip, startRedis, sharedUp, TEST_KEY_SECRET, type RedisInstance } from '../helpers/redis.js';

/** Writes as the exchange does: after the read that missed (its Redis time is the answer's version). */
async function put(shared: RedisSharedCache, ref: ReturnType<RedisSharedCache['ref']>, entry: Parameters<RedisSharedCache['set']>[1]): Promise<void> {
  await shared.get(ref);
  await shared.set(ref, entry);
}

describe('shared store lifetimes (real redis-server)', { skip }, () => {
  let redis: RedisInstance;
  let shared: RedisSharedCache;
  const options = () => ({ url: redis.url, key_secret: TEST_KEY_SECRET, key_prefix: 'ttl:', connect_timeout_ms: 1000, command_timeout_ms: 1000, lock_wait_ms: 100, verify_ssl: true });
  before(async () => {
    redis = await startRedis();
    shared = new RedisSharedCache(options(), { logger: createLogger('silent') }).retain();
    await sharedUp(shared);
  });
  after(async () => {
    await shared.release();
    await redis.close();
  });

  test('PX is the entry\'s remaining life, and reads never extend it', async () => {
    const ref = shared.ref('ns\n', 'tok-px');
    await put(shared, ref, activeToken('Bearer a.e30.c', ' read ', Date.now() + 5000));
    const first = Number(redis.cli('PTTL', ref.key).trim());
    assert.ok(first > 4000 && first <= 5000, `PTTL ${first}`);
    for (let i = 0; i < 5; i++) assert.ok(await shared.get(ref));
    await new Promise((r) => setTimeout(r, 50));
    const later = Number(redis.cli('PTTL', ref.key).trim());
    assert.ok(later < first, `PTTL went from ${first} to ${later}`);
  });

  test('an entry whose Redis TTL is shorter than its own expiry is given the Redis TTL (a writer whose clock runs ahead)', async () => {
    // A writer 60 s ahead: its entry says "expires in 70 s" by this reader's clock, Redis keeps it 10 s.
    const ahead = new RedisSharedCache({ ...options() }, { logger: createLogger('silent'), now: () => Date.now() + 60_000 }).retain();
    try {
      await sharedUp(ahead);
      const ref = ahead.ref('ns\n', 'tok-skew');
      await put(ahead, ref, activeToken('Bearer a.e30.c', ' read ', Date.now() + 70_000));
      const e = await shared.get(shared.ref('ns\n', 'tok-skew'));
      const pttl = Number(redis.cli('PTTL', ref.key).trim());
      assert.ok(pttl > 5000 && pttl <= 10_000, `Redis TTL ${pttl} ms`);
      assert.ok(e !== undefined);
      const left = e.expiresAt - Date.now();
      assert.ok(left <= 10_000 && left > 5000, `local expiry in ${left} ms, Redis TTL ${pttl} ms (the entry itself said 70 s)`);
    } finally {
      await ahead.release();
    }
  });

  test('after Redis expires an entry it is gone for every reader', async () => {
    const ref = shared.ref('ns\n', 'tok-short');
    await put(shared, ref, { active: false, expiresAt: Date.now() + 150 });
    assert.equal((await shared.get(ref))?.active, false);
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(await shared.get(ref), undefined);
    assert.equal(redis.cli('EXISTS', ref.key).trim(), '0');
  });

  test('a purge index holds the live entries only: expired members go with the next write', async () => {
    for (let i = 0; i < 5; i++) await put(shared, shared.ref('ns\n', `busy-${i}`), activeToken('Bearer a.e30.c', ' ', Date.now() + 100, undefined, { clientId: 'busy-client', sub: undefined }));
    await new Promise((r) => setTimeout(r, 200));
    await put(shared, shared.ref('ns\n', 'busy-live'), activeToken('Bearer a.e30.c', ' ', Date.now() + 60_000, undefined, { clientId: 'busy-client', sub: undefined }));
    const indexes = redis.keys().filter((k) => k.startsWith('ttl:c:'));
    assert.equal(indexes.length, 1);
    assert.equal(redis.cli('ZCARD', indexes[0]!).trim(), '1');
    const pttl = Number(redis.cli('PTTL', indexes[0]!).trim());
    assert.ok(pttl > 50_000 && pttl <= 60_000, `index PTTL ${pttl}`);
  });

  test('a purge by client_id removes every live entry of a client with more entries than one delete batch', async () => {
    const refs = Array.from({ length: 1200 }, (_, i) => shared.ref('ns\n', `many-${i}`));
    await Promise.all(refs.map((ref) => put(shared, ref, activeToken('Bearer a.e30.c', ' ', Date.now() + 60_000, undefined, { clientId: 'many-client', sub: undefined }))));
    const outcome = await shared.purgeBy('client_id', 'many-client');
    assert.deepEqual(outcome, { shared: 1200, instances: 'notified' });
    assert.equal(await shared.get(refs[0]!), undefined);
    assert.equal(await shared.get(refs[1199]!), undefined);
    assert.equal(redis.keys().filter((k) => k.startsWith('ttl:c:')).length, 1, 'only busy-client\'s index is left');
  });

  test('a value written by someone without the key secret is a miss, not an entry', async () => {
    const ref = shared.ref('ns\n', 'tok-forged');
    redis.cli('SET', ref.key, Buffer.from('{"a":1,"e":99999999999999,"j":"Bearer x.y.z","s":" admin "}').toString('base64'), 'PX', '10000');
    assert.equal(await shared.get(ref), undefined);
  });
});
