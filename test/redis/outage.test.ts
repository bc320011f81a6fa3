/*
 * Redis down: the gateway keeps serving (its own cache and the
 * authorization server), never answers 5xx because of Redis, says so once
 * per state change in its log and on /readyz (degraded, still ready), and
 * shares again by itself when Redis is back. Real redis-server stopped and
 * restarted on its port, real gateway processes, the scripted peer counting
 * introspections.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureBuilt, freePort, scratchDir } from '../helpers/cli.js';
import { countLines, skip, sleep, startInstance, startRedis, TEST_KEY_SECRET, type GatewayInstance, type RedisInstance } from '../helpers/redis.js';
import { value } from '../admin/prometheus.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

let serial = 0;
const fresh = (label: string) => `outage-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;
const UNAVAILABLE = /shared cache unavailable/i;
const AVAILABLE_AGAIN = /shared cache available again/i;


/** `phantom_gateway_shared_cache_up` on the instance's /metrics (fails when the gauge is missing). */
async function upGauge(g: GatewayInstance): Promise<number> {
  const m = await g.scrape();
  assert.ok(m.has('phantom_gateway_shared_cache_up'), `${g.name}: no phantom_gateway_shared_cache_up on /metrics`);
  return value(m, 'phantom_gateway_shared_cache_up');
}

describe('shared cache outage (real redis-server stopped and restarted, the real command line)', { skip }, () => {
  let redis: RedisInstance;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let scratch: ReturnType<typeof scratchDir>;
  const gateways: GatewayInstance[] = [];

  before(async () => {
    ensureBuilt();
    [redis, as, api] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream()]);
    scratch = scratchDir();
  });

  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await Promise.all([redis?.close(), as?.close(), api?.close()]);
    scratch?.cleanup();
  });

  test('scripted: Redis stopped: cached and new tokens still served, one warning per state change, /readyz degraded; restarted: sharing resumes', async () => {
    const base = { introspection: as.url, upstream: api.url, redisUrl: redis.url };
    const [a, b] = await Promise.all([startInstance('a', scratch, base), startInstance('b', scratch, base)]);
    gateways.push(a, b);
    await Promise.all([a.waitSharedCache('up'), b.waitSharedCache('up')]);
    for (const g of [a, b]) assert.equal(await upGauge(g), 1);

    const cached = fresh('cached');
    const cachedJwt = await as.activate(cached);
    assert.equal((await a.get(cached)).jwt, cachedJwt);
    assert.equal((await b.get(cached)).jwt, cachedJwt);
    assert.equal(as.callsFor(cached), 1);

    await redis.stop();
    const statuses: number[] = [];
    const served = async (g: GatewayInstance, token: string, jwt: string) => {
      const r = await g.get(token);
      statuses.push(r.status);
      assert.equal(r.status, 200, `${g.name}: ${r.status} ${r.body}`);
      assert.equal(r.jwt, jwt, `${g.name}: the upstream did not get the token's JWT`);
    };
    // Tokens each instance has cached, and tokens nobody has seen.
    for (let i = 0; i < 3; i++) {
      await served(a, cached, cachedJwt);
      await served(b, cached, cachedJwt);
      const t = fresh('during');
      const jwt = await as.activate(t);
      await served(a, t, jwt);
      await served(b, t, jwt);
    }
    for (const g of [a, b]) {
      await g.waitSharedCache('down');
      const ready = await g.readyz();
      assert.equal(ready.status, 200, `${g.name}: a Redis outage made the instance not ready: ${ready.text}`);
      assert.equal(await upGauge(g), 0);
    }
    // More traffic while it is down: still no error, and no more warnings.
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const t = fresh('burst');
        const jwt = await as.activate(t);
        await served(i % 2 === 0 ? a : b, t, jwt);
        await served(i % 2 === 0 ? a : b, cached, cachedJwt);
      }),
    );
    assert.deepEqual(statuses.filter((s) => s !== 200), []);
    for (const g of [a, b]) assert.equal(countLines(g.logs(), UNAVAILABLE), 1, `${g.name} logged:\n${g.logs()}`);

    await redis.start();
    await Promise.all([a.waitSharedCache('up', 15_000), b.waitSharedCache('up', 15_000)]);
    for (const g of [a, b]) assert.equal(await upGauge(g), 1);
    const again = fresh('again');
    const againJwt = await as.activate(again);
    assert.equal((await a.get(again)).jwt, againJwt);
    assert.equal((await b.get(again)).jwt, againJwt);
    assert.equal(as.callsFor(again), 1, 'instance b did not find in Redis what instance a introspected after the restart');
    for (const g of [a, b]) {
      assert.equal(countLines(g.logs(), UNAVAILABLE), 1, `${g.name} logged:\n${g.logs()}`);
      assert.equal(countLines(g.logs(), AVAILABLE_AGAIN), 1, `${g.name} logged:\n${g.logs()}`);
      assert.doesNotMatch(g.logs(), /"level":"(error|fatal)"/);
      assert.ok(!g.logs().includes(TEST_KEY_SECRET), 'the key secret was logged');
    }
  });

  test('scripted: Redis never reachable: the gateway starts, serves, warns once, /readyz degraded; the Redis password is never logged', async () => {
    const nothing = await freePort();
    const password = 'itest-redis-password-Zq9';
    const g = await startInstance('unreachable', scratch, {
      introspection: as.url,
      upstream: api.url,
      redisUrl: `redis://gateway:${password}@127.0.0.1:${nothing}`,
    });
    gateways.push(g);
    const t = fresh('never');
    const jwt = await as.activate(t);
    for (let i = 0; i < 5; i++) {
      const r = await g.get(t);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.jwt, jwt);
    }
    // Its own cache still works: one introspection for five requests.
    assert.equal(as.callsFor(t), 1);
    for (let i = 0; i < 5; i++) {
      const other = fresh('never-other');
      await as.activate(other);
      assert.equal((await g.get(other)).status, 200);
    }
    await g.waitSharedCache('down');
    assert.equal((await g.readyz()).status, 200);
    assert.equal(countLines(g.logs(), UNAVAILABLE), 1, g.logs());
    assert.equal(countLines(g.logs(), AVAILABLE_AGAIN), 0, g.logs());
    assert.ok(!g.logs().includes(password), 'the Redis password was logged');
    assert.ok(!g.logs().includes(TEST_KEY_SECRET), 'the key secret was logged');
  });

  test('scripted: Redis hung (connected, never answering): requests still served without waiting for it, one warning, sharing back once it answers', async () => {
    const g = await startInstance('hung', scratch, { introspection: as.url, upstream: api.url, redisUrl: redis.url });
    gateways.push(g);
    await g.waitSharedCache('up');
    const cached = fresh('hung-cached');
    const cachedJwt = await as.activate(cached);
    assert.equal((await g.get(cached)).jwt, cachedJwt);
    // SIGSTOP: the connection stays open, the kernel takes the commands, nothing answers
    // (a Redis stuck in a long command, or a network path that drops packets).
    const pid = Number(/process_id:(\d+)/.exec(redis.cli('INFO', 'server'))![1]);
    process.kill(pid, 'SIGSTOP');
    try {
      const replies = await Promise.all(
        Array.from({ length: 6 }, async () => {
          const t = fresh('hung-new');
          const jwt = await as.activate(t);
          // command_timeout_ms is 250: a request waiting seconds waits for Redis.
          const r = await Promise.race([g.get(t), sleep(3000).then(() => undefined)]);
          return { r, jwt };
        }),
      );
      for (const { r, jwt } of replies) {
        assert.ok(r !== undefined, 'a request was still waiting after 3 s with Redis hung (command_timeout_ms 250)');
        assert.equal(r.status, 200, r.body);
        assert.equal(r.jwt, jwt);
      }
      assert.equal((await g.get(cached)).jwt, cachedJwt);
      await g.waitSharedCache('down', 5000);
      assert.equal((await g.readyz()).status, 200);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await g.waitSharedCache('up', 15_000);
    const after = fresh('hung-after');
    const afterJwt = await as.activate(after);
    assert.equal((await g.get(after)).jwt, afterJwt);
    assert.equal(countLines(g.logs(), UNAVAILABLE), 1, g.logs());
    assert.equal(countLines(g.logs(), AVAILABLE_AGAIN), 1, g.logs());
  });
});
