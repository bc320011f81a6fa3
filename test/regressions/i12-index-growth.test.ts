/*
 * The purge indexes (`<prefix>s:<hmac(sub)>`, `<prefix>c:<hmac(client_id)>`)
 * only ever grow while they live: each cached token adds its entry key
 * (SADD) and pushes the index's expiry out to its own (PEXPIRE GT), and
 * nothing removes the keys of entries that have expired. A client_id that
 * keeps getting new tokens (one public SPA or mobile client for every user,
 * a busy service account) keeps its index alive forever, and it accumulates
 * one key per token ever cached: Redis memory without bound, and a purge by
 * that client_id then sends one SMEMBERS and one DEL of millions of keys
 * (blocking Redis for every instance).
 *
 * Expected: once the index is written to again, it holds the keys of live
 * entries only (e.g. a sorted set scored by expiry, trimmed with
 * ZREMRANGEBYSCORE on each add), so its size follows the live entries, not
 * the history. (Fixed on main in 7b40511; this test guards it.)
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skip, type RedisInstance } from '../helpers/redis.js';
import { call, sharedSuite, sleep } from './i12-helpers.js';

/** Members of the index key `key`, whatever its type (set or sorted set). */
function members(redis: RedisInstance, key: string): string[] {
  const type = redis.cli('--raw', 'TYPE', key).trim();
  const out = type === 'zset' ? redis.cli('--raw', 'ZRANGE', key, '0', '-1') : redis.cli('--raw', 'SMEMBERS', key);
  return out.split('\n').filter((l) => l !== '');
}

describe('i12: purge indexes and expired entries (real redis-server, scripted introspection peer)', { skip }, () => {
  const s = sharedSuite();
  const shortLived = (block: string) => `
phantom_token:
  introspection_endpoint: ${s.as.url}/introspect
  client_id: gateway-client
  client_secret: "s3cret:&=+ x"
  token_cache_seconds: 2
routes:
  - path: /api
    upstream: ${s.api.url}
${block}`;

  test("a client's purge index, once written to again, keeps only the keys of entries still in Redis (expired tokens' keys are dropped, the index does not grow with history)", async () => {
    const a = await s.gateway({ yaml: shortLived });
    const batch = async (name: string) => {
      for (let i = 0; i < 4; i++) {
        await s.as.activate(`${name}-${i}`, { client_id: 'busy-spa-client', sub: `${name}-user-${i}` });
        assert.equal(await call(a, `${name}-${i}`), 200);
      }
    };
    await batch('first'); // cached 2 s
    await sleep(1200);
    await batch('second'); // cached 2 s: pushes the client index's expiry out
    await sleep(1100); // the first batch has expired, the second lives on
    await batch('third'); // a write after the first batch expired
    const indexes = s.redis.keys().filter((k) => k.startsWith('phantom-gateway:c:'));
    assert.equal(indexes.length, 1);
    const keys = members(s.redis, indexes[0]!);
    const live = keys.filter((k) => s.redis.cli('--raw', 'EXISTS', k).trim() === '1');
    assert.equal(live.length, 8, 'the second and third batches are still cached');
    assert.equal(keys.length, live.length, `the client index holds ${keys.length - live.length} keys of expired entries`);
  });
});
