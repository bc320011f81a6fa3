/*
 * Purge by `sub` or `client_id` silently misses tokens whose value is longer
 * than 256 characters. The cache keeps `sub` and `client_id` cut to 256
 * characters (`whoOf` in src/cache/entry.ts, meant for the access log), and
 * both the local purge (`deleteWhere(e => e.sub === request.sub)`) and the
 * Redis index (HMAC of the cut value) compare against that cut copy, while
 * POST /cache/purge accepts up to 1024 characters. The purge answers 200
 * with nothing removed, and the token stays usable everywhere. Long
 * subjects exist (DN-style subjects, URIs, SPIFFE-like client ids).
 *
 * Expected: a purge by the full sub / client_id removes the token (keep the
 * full value, or its hash, for purges; cut only for the log), or the purge
 * endpoint refuses values the cache cannot match instead of answering 200.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skip } from '../helpers/redis.js';
import { call, revoke, sharedSuite, sleep } from './i12-helpers.js';

describe('i12: purge by a long sub or client_id (real redis-server, scripted introspection peer)', { skip }, () => {
  const s = sharedSuite();
  const longSub = `CN=${'a'.repeat(150)},OU=${'b'.repeat(150)},O=example`; // 312 characters
  const longClient = `spiffe://example.org/${'ns/'.repeat(90)}sa/api`; // 296 characters

  test('a purge by a sub longer than 256 characters removes its token locally and from Redis, and the next request introspects again', async () => {
    const a = await s.gateway();
    await s.as.activate('long-sub-token', { scope: 'read', sub: longSub });
    assert.equal(await call(a, 'long-sub-token'), 200);
    const outcome = await a.gateway.guards.purge({ sub: longSub });
    assert.deepEqual(outcome, { local: 1, shared: 1, instances: 'notified' });
    revoke(s.as, 'long-sub-token');
    await sleep(50);
    assert.equal(await call(a, 'long-sub-token'), 401);
    assert.equal(s.as.callsFor('long-sub-token'), 2);
  });

  test('a purge by a client_id longer than 256 characters removes its token locally and from Redis, and the next request introspects again', async () => {
    const a = await s.gateway();
    await s.as.activate('long-client-token', { scope: 'read', client_id: longClient });
    assert.equal(await call(a, 'long-client-token'), 200);
    const outcome = await a.gateway.guards.purge({ client_id: longClient });
    assert.deepEqual(outcome, { local: 1, shared: 1, instances: 'notified' });
    revoke(s.as, 'long-client-token');
    await sleep(50);
    assert.equal(await call(a, 'long-client-token'), 401);
    assert.equal(s.as.callsFor('long-client-token'), 2);
  });
});
