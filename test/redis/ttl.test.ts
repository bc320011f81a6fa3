/*
 * Lifetimes: an instance that fills its own cache from Redis keeps the entry
 * no longer than Redis does (min of the entry's expiry and the key's PTTL),
 * the Redis TTL is never longer than the token's life, and reads never
 * extend it. Real redis-server, real gateway processes, the scripted peer
 * counting introspections.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureBuilt, scratchDir } from '../helpers/cli.js';
import { value } from '../admin/prometheus.js';
import { eventually, skip, sleep, startInstance, startRedis, type GatewayInstance, type RedisInstance } from '../helpers/redis.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const PREFIX = 'itest-ttl:';
let serial = 0;
const fresh = (label: string) => `ttl-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;

describe('shared cache lifetimes (real redis-server, the real command line)', { skip }, () => {
  let redis: RedisInstance;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let scratch: ReturnType<typeof scratchDir>;
  let a: GatewayInstance;
  /** Keeps one entry in its own cache: every other token it sees is read from Redis again. */
  let b: GatewayInstance;

  /** The Redis entry keys (`<prefix>t:...`) there are now. */
  const entryKeys = () => new Set(redis.keys().filter((k) => k.startsWith(`${PREFIX}t:`)));
  /** Sends `token` to `g` and returns the entry key it added to Redis. */
  const cachedKey = async (g: GatewayInstance, token: string): Promise<string> => {
    const before = entryKeys();
    const r = await g.get(token);
    assert.equal(r.status, 200, r.body);
    const added = [...entryKeys()].filter((k) => !before.has(k));
    assert.equal(added.length, 1, `expected one new entry in Redis, got ${added.length}`);
    return added[0]!;
  };
  const pttl = (key: string) => Number(redis.cli('PTTL', key).trim());

  before(async () => {
    ensureBuilt();
    [redis, as, api] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream()]);
    scratch = scratchDir();
    // lock_wait_ms short: the last test waits it out.
    const base = { introspection: as.url, upstream: api.url, redisUrl: redis.url, redis: { key_prefix: PREFIX, lock_wait_ms: 600 } };
    [a, b] = await Promise.all([startInstance('a', scratch, base), startInstance('b', scratch, { ...base, cache: { max_entries: 1 } })]);
    await Promise.all([a.waitSharedCache('up'), b.waitSharedCache('up')]);
  });

  after(async () => {
    await Promise.all([a, b].filter((g) => g !== undefined).map((g) => g.stop()));
    await Promise.all([redis?.close(), as?.close(), api?.close()]);
    scratch?.cleanup();
  });

  test('scripted: an instance filling its cache from Redis keeps the entry no longer than the Redis TTL', async () => {
    const token = fresh('short');
    const jwt = await as.activate(token); // the token itself lives 300 s
    const key = await cachedKey(a, token);
    assert.equal(as.callsFor(token), 1);
    // Redis will drop the entry long before the token expires.
    redis.cli('PEXPIRE', key, '1500');
    const r = await b.get(token);
    assert.equal(r.jwt, jwt);
    assert.equal(as.callsFor(token), 1, 'instance b did not find the entry in Redis');
    assert.ok(await eventually(() => pttl(key) === -2, 5000), 'the entry never left Redis');
    // b computed its copy's end from the PTTL it read, a round trip after Redis did: a little slack.
    await sleep(200);
    // b's own copy must be gone with it: it asks the authorization server again.
    assert.equal((await b.get(token)).jwt, jwt);
    assert.equal(as.callsFor(token), 2, 'instance b served the token from its own cache after Redis had dropped it');
  });

  test('scripted: the Redis TTL is never longer than the token\'s own life (exp 3 s ahead)', async () => {
    const token = fresh('exp');
    await as.activate(token, {}, { expiresIn: 3 });
    const key = await cachedKey(a, token);
    const left = pttl(key);
    assert.ok(left > 0 && left <= 3000, `PTTL ${left} for a token that expires in 3 s`);
  });

  test('scripted: an inactive answer stays in Redis negative_cache_seconds (10 s by default), no longer', async () => {
    const token = fresh('inactive');
    as.answers.set(token, { status: 200, body: JSON.stringify({ active: false }), headers: { 'content-type': 'application/json' } });
    const before = entryKeys();
    assert.equal((await a.get(token)).status, 401);
    const added = [...entryKeys()].filter((k) => !before.has(k));
    assert.equal(added.length, 1, 'the inactive answer was not shared');
    const left = pttl(added[0]!);
    assert.ok(left > 0 && left <= 10_000, `PTTL ${left} for an inactive answer`);
  });

  test('scripted: reads never extend the Redis TTL', async () => {
    const [token, other] = [fresh('reads'), fresh('reads-other')];
    const jwt = await as.activate(token);
    const otherJwt = await as.activate(other);
    const key = await cachedKey(a, token);
    await cachedKey(a, other);
    const first = pttl(key);
    await sleep(100);
    // b keeps one entry: alternating the two tokens, each of its requests reads Redis.
    for (let i = 0; i < 4; i++) {
      assert.equal((await b.get(token)).jwt, jwt);
      assert.equal((await b.get(other)).jwt, otherJwt);
    }
    assert.equal(as.callsFor(token), 1);
    assert.equal(as.callsFor(other), 1);
    const after = pttl(key);
    assert.ok(after > 0 && after <= first - 100, `PTTL went from ${first} to ${after} over eight reads`);
  });

  test('scripted: an instance waits for another\'s introspection at most lock_wait_ms, then introspects itself', async () => {
    const token = fresh('slow');
    // Slower than lock_wait_ms (600), quicker than timeout_ms (5000).
    const jwt = await as.activate(token, {}, { delayMs: 2000 });
    const gaveUp = async () => value(await b.scrape(), 'phantom_gateway_shared_cache_locks_total', { outcome: 'gave_up' });
    const gaveUpBefore = await gaveUp();
    const first = a.get(token);
    assert.ok(await eventually(() => as.callsFor(token) === 1, 2000), 'instance a did not introspect');
    // b sees a's lock; waiting without bound, it would get a's answer and never ask itself.
    const second = await b.get(token);
    assert.equal(second.status, 200, second.body);
    assert.equal(second.jwt, jwt);
    assert.equal(as.callsFor(token), 2, 'instance b did not introspect after waiting');
    assert.equal((await gaveUp()) - gaveUpBefore, 1, 'phantom_gateway_shared_cache_locks_total{outcome="gave_up"} on instance b');
    assert.equal((await first).jwt, jwt);
  });
});
