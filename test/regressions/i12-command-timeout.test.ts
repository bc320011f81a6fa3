/*
 * command_timeout_ms does not bound a command once it is on the wire.
 * node-redis's `commandOptions.timeout` (src/cache/redis/shared.ts passes
 * `command_timeout_ms` there) only rejects a command still waiting to be
 * written: node-redis removes the timer when the command is written
 * (commands-queue.js, `#removeTimeoutListener` before `waitingForReply.push`).
 * A Redis that accepts the bytes but does not answer (SIGSTOP, a blackholed
 * network with the TCP connection still open, CLIENT PAUSE during a
 * failover, a long DEBUG SLEEP or a slow Lua script) holds every L1 miss for
 * as long as it does not answer; nothing fails, so the circuit breaker
 * never opens and /readyz says `shared_cache: "up"`. (MULTI/EXEC, used for
 * writes, gets no timeout at all: `_executeMulti` passes none.)
 *
 * Expected: each call to Redis gives up after command_timeout_ms (a timer
 * of our own around each call, e.g. Promise.race with a timeout, or an
 * AbortSignal.timeout), counts as a failure, and three of them turn sharing
 * off, so a hung Redis costs a miss at most about command_timeout_ms.
 * (Fixed on main in 7b40511, `#timed`; this test guards it with CLIENT
 * PAUSE, beside test/redis/outage.test.ts's SIGSTOP.)
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skip } from '../helpers/redis.js';
import { call, sharedSuite, until } from './i12-helpers.js';

describe('i12: a Redis that stops answering (real redis-server under CLIENT PAUSE, scripted introspection peer)', { skip }, () => {
  const s = sharedSuite();

  test('with Redis not answering, a new token is served without waiting for Redis (well within the pause) and sharing is reported down', async () => {
    const a = await s.gateway({ redisExtra: '    command_timeout_ms: 200\n' });
    for (const t of ['hung-1', 'hung-2', 'hung-3']) await s.as.activate(t, { scope: 'read' });
    s.redis.cli('CLIENT', 'PAUSE', '8000', 'ALL');
    const started = Date.now();
    const statuses = await Promise.all(['hung-1', 'hung-2', 'hung-3'].map((t) => call(a, t)));
    const took = Date.now() - started;
    assert.deepEqual(statuses, [200, 200, 200]);
    // A get and a lock of 200 ms each plus the introspection: far below the 8 s pause even on a loaded machine.
    assert.ok(took < 4000, `requests waited ${took} ms for a Redis that did not answer (command_timeout_ms: 200)`);
    await until(() => a.gateway.guards.sharedCacheState() === 'down', 1000, 'sharing to be reported down');
    // (No CLIENT UNPAUSE: Redis 7.0 pauses it too; the server is killed in after().)
  });
});
