/*
 * Gateways sharing one real redis-server, in-process (the CLI-level tests are
 * in test/redis/): the introspection is made once for all of them, a new
 * token seen by many at once is introspected once, inactive answers are
 * shared and failures never are, and what is in Redis opens only with the
 * token.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { basicConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { skip, startRedis, sharedUp, TEST_KEY_SECRET, type RedisInstance } from '../helpers/redis.js';

describe('gateways sharing a real Redis (scripted introspection peer, to count and inject faults)', { skip }, () => {
  let redis: RedisInstance;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  const gateways: TestGateway[] = [];

  const yaml = (extra = '') =>
    basicConfig(
      as.url,
      api.url,
      `cache:\n  redis:\n    url: ${redis.url}\n    key_secret: ${TEST_KEY_SECRET}\n    lock_wait_ms: 2000\n${extra}`,
    );
  async function gateway(extra = ''): Promise<TestGateway> {
    const gw = await startGateway(yaml(extra));
    gateways.push(gw);
    await sharedUp(gw.gateway.guards.shared!);
    return gw;
  }
  const call = async (gw: TestGateway, token: string) => {
    const res = await request(`${gw.url}/api/x`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    return res.statusCode;
  };

  before(async () => {
    [redis, as, api] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream()]);
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await Promise.all([redis.close(), as.close(), api.close()]);
  });

  test('two instances, one token: one introspection, and the second forwards the same JWT', async () => {
    const [a, b] = await Promise.all([gateway(), gateway()]);
    const jwt = await as.activate('two-instances', { scope: 'read' });
    assert.equal(await call(a, 'two-instances'), 200);
    assert.equal(await call(b, 'two-instances'), 200);
    assert.equal(as.callsFor('two-instances'), 1);
    assert.equal(api.received.at(-1)!.headers.authorization, `Bearer ${jwt}`);
  });

  test('five instances and one new token at once: one introspection (cross-instance single-flight)', async () => {
    const many = await Promise.all(Array.from({ length: 5 }, () => gateway()));
    await as.activate('burst', { scope: 'read' }, { delayMs: 150 });
    const statuses = await Promise.all(many.flatMap((g) => [call(g, 'burst'), call(g, 'burst')]));
    assert.deepEqual(statuses, Array(10).fill(200));
    assert.equal(as.callsFor('burst'), 1);
  });

  test('an inactive answer is shared; a failure is not', async () => {
    const [a, b] = await Promise.all([gateway(), gateway()]);
    as.answers.set('inactive', { status: 200, body: '{"active":false}', headers: { 'content-type': 'application/json' } });
    assert.equal(await call(a, 'inactive'), 401);
    assert.equal(await call(b, 'inactive'), 401);
    assert.equal(as.callsFor('inactive'), 1);
    as.answers.set('failing', { status: 500, body: 'no' });
    assert.equal(await call(a, 'failing'), 502);
    assert.equal(await call(b, 'failing'), 502);
    assert.equal(as.callsFor('failing'), 2);
  });

  test('what Redis holds names no token and opens only with it', async () => {
    const a = await gateway();
    const jwt = await as.activate('opaque-dump-check', { scope: 'read', sub: 'alice-in-clear' });
    assert.equal(await call(a, 'opaque-dump-check'), 200);
    const all = redis.keys().map((k) => `${k} ${redis.cli('--raw', 'TYPE', k)}`).join('\n');
    assert.doesNotMatch(all, /opaque-dump-check|alice-in-clear|eyJ/);
    const values = redis.keys().filter((k) => k.includes(':t:')).map((k) => redis.cli('--raw', 'GET', k)).join('\n');
    assert.doesNotMatch(values, /opaque-dump-check|alice-in-clear|eyJ/);
    assert.ok(!values.includes(jwt.split('.')[1]!));
  });

  test('a purge by token on one instance: the other instance introspects again', async () => {
    const [a, b] = await Promise.all([gateway(), gateway()]);
    await as.activate('purged', { scope: 'read', sub: 'bob' });
    assert.equal(await call(a, 'purged'), 200);
    assert.equal(await call(b, 'purged'), 200);
    assert.equal(as.callsFor('purged'), 1);
    const outcome = await a.gateway.guards.purge({ token: 'purged' });
    assert.equal(outcome.instances, 'notified');
    assert.equal(outcome.shared, 1);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await call(b, 'purged'), 200);
    assert.equal(as.callsFor('purged'), 2);
  });

  test('a purge by sub removes every token of that subject everywhere, and no other', async () => {
    const [a, b] = await Promise.all([gateway(), gateway()]);
    await as.activate('carol-1', { scope: 'read', sub: 'carol' });
    await as.activate('carol-2', { scope: 'read', sub: 'carol' });
    await as.activate('dave-1', { scope: 'read', sub: 'dave' });
    for (const t of ['carol-1', 'carol-2', 'dave-1']) {
      assert.equal(await call(a, t), 200);
      assert.equal(await call(b, t), 200);
    }
    const outcome = await a.gateway.guards.purge({ sub: 'carol' });
    assert.deepEqual(outcome, { local: 2, shared: 2, instances: 'notified' });
    await new Promise((r) => setTimeout(r, 100));
    for (const t of ['carol-1', 'carol-2', 'dave-1']) assert.equal(await call(b, t), 200);
    assert.deepEqual(['carol-1', 'carol-2', 'dave-1'].map((t) => as.callsFor(t)), [2, 2, 1]);
  });
});

describe('a gateway whose Redis goes away and comes back (real redis-server, scripted introspection peer)', { skip }, () => {
  test('requests keep succeeding, one warning when sharing stops and one when it resumes, and sharing resumes', async () => {
    const [redis, as, api] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream()]);
    const extra = `cache:\n  redis:\n    url: ${redis.url}\n    key_secret: ${TEST_KEY_SECRET}\n    command_timeout_ms: 200\n`;
    const a = await startGateway(basicConfig(as.url, api.url, extra));
    const b = await startGateway(basicConfig(as.url, api.url, extra));
    try {
      await Promise.all([sharedUp(a.gateway.guards.shared!), sharedUp(b.gateway.guards.shared!)]);
      const call = async (gw: TestGateway, token: string) => {
        const res = await request(`${gw.url}/api/x`, { headers: { authorization: `Bearer ${token}` } });
        await res.body.dump();
        return res.statusCode;
      };
      await as.activate('before', { scope: 'read' });
      assert.equal(await call(a, 'before'), 200);
      await redis.stop();
      await as.activate('during', { scope: 'read' });
      const during = [];
      for (let i = 0; i < 20; i++) during.push(await call(a, i % 2 ? 'before' : 'during'), await call(b, 'during'));
      assert.deepEqual(during, Array(40).fill(200));
      assert.equal(a.gateway.guards.sharedCacheState(), 'down');
      const warnings = (gw: TestGateway) => gw.logs.filter((l) => /shared cache/.test(String(l.msg)) && l.level === 'warn').map((l) => String(l.msg));
      assert.equal(warnings(a).filter((m) => /unavailable/.test(m)).length, 1, warnings(a).join('\n'));
      await redis.start();
      await Promise.all([sharedUp(a.gateway.guards.shared!), sharedUp(b.gateway.guards.shared!)]);
      assert.equal(warnings(a).filter((m) => /available again/.test(m)).length, 1, warnings(a).join('\n'));
      await as.activate('after', { scope: 'read' });
      assert.equal(await call(a, 'after'), 200);
      assert.equal(await call(b, 'after'), 200);
      assert.equal(as.callsFor('after'), 1, 'sharing resumed');
      assert.doesNotMatch(a.rawLogs() + b.rawLogs(), new RegExp(TEST_KEY_SECRET));
    } finally {
      await Promise.all([a.close(), b.close()]);
      await Promise.all([redis.close(), as.close(), api.close()]);
    }
  });
});
