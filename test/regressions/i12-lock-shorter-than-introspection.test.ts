/*
 * Cross-instance single-flight gives up exactly when it matters most. The
 * lock lives lock_wait_ms (default 3000) and the others wait lock_wait_ms,
 * but an introspection may take up to timeout_ms (default 5000). When the
 * authorization server is slow (overloaded: answers in 3-5 s with the
 * defaults), every waiting instance gives up and introspects the same
 * token itself, so N instances send N introspections to a server that is
 * already struggling, and the lock expires under its holder.
 *
 * Expected: while the holder's introspection may still succeed (within
 * timeout_ms), the others keep waiting for it. Fixed: the lock lasts the
 * route's timeout_ms + 1 s, and without lock_wait_ms the others wait as
 * long; an explicit lock_wait_ms is the operator's bound on the wait.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skip } from '../helpers/redis.js';
import { call, sharedSuite } from './i12-helpers.js';

describe('i12: single-flight with an authorization server slower than lock_wait_ms (real redis-server, scripted introspection peer)', { skip }, () => {
  const s = sharedSuite();

  test('three instances, one new token, an introspection answered in 3.5 s (lock_wait_ms not set, timeout_ms 5000 by default): one introspection', async () => {
    const gws = await Promise.all([s.gateway(), s.gateway(), s.gateway()]);
    await s.as.activate('slow-server', { scope: 'read' }, { delayMs: 3500 });
    const statuses = await Promise.all(gws.map((g) => call(g, 'slow-server')));
    assert.deepEqual(statuses, [200, 200, 200]);
    assert.equal(s.as.callsFor('slow-server'), 1);
  });

  test('an explicit lock_wait_ms shorter than the introspection is a bound the operator chose: the others wait that long, then introspect themselves', async () => {
    const opts = { redisExtra: '    lock_wait_ms: 500\n' };
    const gws = await Promise.all([s.gateway(opts), s.gateway(opts)]);
    await s.as.activate('impatient', { scope: 'read' }, { delayMs: 1500 });
    const statuses = await Promise.all(gws.map((g) => call(g, 'impatient')));
    assert.deepEqual(statuses, [200, 200]);
    assert.equal(s.as.callsFor('impatient'), 2);
  });
});
