/*
 * A purge by token reaches only the cache keys the purging instance can
 * compute. The purge deletes, in Redis, the entries of the namespaces of
 * its own exchanges (`Guards.purge`: `exchange.sharedRefOf(token)` for each
 * of its exchanges) and tells the other instances to drop the local keys of
 * *its* exchanges (the purge message carries first-level keys, SHA-256 of
 * the purging instance's namespace, bounds and token). An instance whose
 * routes differ (a route with other cache bounds, another client, another
 * authorization server: instances in the middle of a rolling deploy, or
 * instances serving different routes over one Redis) keeps the token in its
 * local cache and in Redis, while the purge answers `notified`.
 *
 * Expected: a purge by token removes the token under every namespace of
 * every instance: e.g. the sealed purge message carries the token itself
 * (only holders of the key secret can open it) so each instance derives
 * its own keys, and Redis entries are indexed by an HMAC of the token alone
 * so the purging instance can delete all of them.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skip } from '../helpers/redis.js';
import { call, revoke, sharedSuite, sleep } from './i12-helpers.js';

describe('i12: purge by token across instances whose routes differ (real redis-server, scripted introspection peer)', { skip }, () => {
  const s = sharedSuite();
  /** Instance B's configuration: A's /api route, plus /reports cached at most 120 s (another namespace). */
  const withReports = (block: string) => `
phantom_token:
  introspection_endpoint: ${s.as.url}/introspect
  client_id: gateway-client
  client_secret: "s3cret:&=+ x"
  scope: read
routes:
  - path: /api
    upstream: ${s.api.url}
  - path: /reports
    upstream: ${s.api.url}
    phantom_token: { token_cache_seconds: 120 }
${block}`;

  test('a purge by token on instance A removes it from instance B, whose route has other cache bounds, and from Redis (B introspects again, 401)', async () => {
    const a = await s.gateway();
    const b = await s.gateway({ yaml: withReports });
    await s.as.activate('other-config', { scope: 'read' });
    assert.equal(await call(b, 'other-config', '/reports/q1'), 200);
    assert.equal(s.as.callsFor('other-config'), 1);
    const outcome = await a.gateway.guards.purge({ token: 'other-config' });
    assert.equal(outcome.instances, 'notified');
    revoke(s.as, 'other-config');
    await sleep(100);
    assert.equal(await call(b, 'other-config', '/reports/q1'), 401);
    assert.equal(s.as.callsFor('other-config'), 2);
  });

  test('a purge by token on instance A removes from Redis the entry a third instance with B\'s routes would read (C introspects again, 401)', async () => {
    const a = await s.gateway();
    const b = await s.gateway({ yaml: withReports });
    await s.as.activate('other-config-2', { scope: 'read' });
    assert.equal(await call(b, 'other-config-2', '/reports/q1'), 200);
    const outcome = await a.gateway.guards.purge({ token: 'other-config-2' });
    assert.equal(outcome.instances, 'notified');
    revoke(s.as, 'other-config-2');
    const c = await s.gateway({ yaml: withReports });
    assert.equal(await call(c, 'other-config-2', '/reports/q1'), 401);
    assert.equal(s.as.callsFor('other-config-2'), 2);
  });
});
