/*
 * The README's Redis ACL line is enough: a gateway connecting as that user
 * (real redis-server, the line as the README prints it) fills, reads, locks,
 * purges by token, sub and client_id, and publishes, with nothing refused
 * (`ACL LOG` stays empty). Fails when the gateway starts sending a command
 * the README does not list.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { basicConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { skip, startRedis, sharedUp, TEST_KEY_SECRET, type RedisInstance } from '../helpers/redis.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const ACL = /^ACL SETUSER phantom .*$/m.exec(README)?.[0];

describe("the README's Redis ACL user (real redis-server, scripted introspection peer)", { skip }, () => {
  let redis: RedisInstance;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  const gateways: TestGateway[] = [];
  before(async () => {
    [redis, as, api] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream()]);
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await Promise.all([redis.close(), as.close(), api.close()]);
  });

  test('two gateways as that user: one introspection, purges by token, sub and client_id reach both, and Redis refuses nothing', async () => {
    assert.ok(ACL, 'the README prints an ACL SETUSER phantom line');
    redis.cli(...ACL.split(' ').map((w) => (w === '>CHANGE-ME' ? '>acl-test-password' : w)));
    redis.cli('ACL', 'LOG', 'RESET');
    const yaml = basicConfig(as.url, api.url, `cache:\n  redis:\n    url: redis://phantom:acl-test-password@127.0.0.1:${redis.port}\n    key_secret: ${TEST_KEY_SECRET}\n`);
    const [a, b] = await Promise.all([startGateway(yaml), startGateway(yaml)]);
    gateways.push(a, b);
    await Promise.all([sharedUp(a.gateway.guards.shared!), sharedUp(b.gateway.guards.shared!)]);
    const call = async (gw: TestGateway, token: string) => {
      const res = await request(`${gw.url}/api/x`, { headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      return res.statusCode;
    };
    await as.activate('acl-1', { scope: 'read', sub: 'erin', client_id: 'acl-app' });
    await as.activate('acl-2', { scope: 'read', sub: 'erin', client_id: 'acl-app' });
    as.answers.set('acl-inactive', { status: 200, body: '{"active":false}', headers: { 'content-type': 'application/json' } });
    for (const t of ['acl-1', 'acl-2']) {
      assert.deepEqual(await Promise.all([call(a, t), call(b, t)]), [200, 200]);
      assert.equal(as.callsFor(t), 1, t);
    }
    assert.equal(await call(a, 'acl-inactive'), 401);
    assert.equal(await call(b, 'acl-inactive'), 401);
    assert.equal(as.callsFor('acl-inactive'), 1);
    assert.equal((await a.gateway.guards.purge({ token: 'acl-1' })).instances, 'notified');
    assert.equal((await a.gateway.guards.purge({ sub: 'erin' })).instances, 'notified');
    assert.equal((await b.gateway.guards.purge({ client_id: 'acl-app' })).instances, 'notified');
    assert.equal(redis.cli('ACL', 'LOG').trim(), '', 'Redis refused a command or key the ACL does not allow');
    assert.equal(a.gateway.guards.sharedCacheState(), 'up');
    assert.deepEqual(
      [...a.logs, ...b.logs].filter((l) => l.level === 'warn' || l.level === 'error').map((l) => l.msg),
      [],
    );
  });
});
