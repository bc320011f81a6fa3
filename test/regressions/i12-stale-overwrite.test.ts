/*
 * An older answer overwrites a newer one in Redis. Entries are written with
 * a plain `SET ... PX`, whoever wrote last wins: an introspection that was
 * sent first but answered last (a slow authorization server, a lock that
 * expired after lock_wait_ms so a second instance introspected too, or
 * lock_wait_ms: 0) replaces the later "inactive" answer with its earlier
 * "active" one, and every instance that reads Redis afterwards accepts the
 * revoked token for the whole positive lifetime. Locally a revoked token
 * seen by one instance is then accepted by the others.
 *
 * Expected: an active entry never replaces a newer inactive one in Redis
 * (e.g. write with a check in a script: an entry written by a lock holder
 * whose lock was taken over does not overwrite, or inactive entries win
 * over active ones written after them), in the spirit of jose's sequence
 * guard (STYLE.md: an older answer never overwrites a newer one).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skip } from '../helpers/redis.js';
import { signJwt } from '../helpers/servers.js';
import { call, sharedSuite, sleep, until } from './i12-helpers.js';

describe('i12: an older introspection answer written over a newer one (real redis-server, scripted introspection peer)', { skip }, () => {
  const s = sharedSuite();

  test('a revoked token seen inactive by instance B is not made active in Redis by A\'s slower, earlier introspection (instance C refuses it, 401)', async () => {
    const jwt = await signJwt({ scope: 'read' });
    let n = 0;
    // First introspection (A's): "active", answered late. Every later one (after the revocation): "inactive".
    s.as.answers.set('overwritten', () =>
      n++ === 0
        ? { status: 200, body: jwt, headers: { 'content-type': 'application/jwt' }, delayMs: 1200 }
        : { status: 200, body: '{"active":false}', headers: { 'content-type': 'application/json' } },
    );
    const lock = '    lock_wait_ms: 200\n';
    const [a, b, c] = await Promise.all([s.gateway({ redisExtra: lock }), s.gateway({ redisExtra: lock }), s.gateway({ redisExtra: lock })]);
    const first = call(a, 'overwritten');
    await until(() => s.as.callsFor('overwritten') === 1, 5000, "A's introspection");
    await sleep(400); // A's lock (200 ms) has expired; A is still waiting for its answer
    assert.equal(await call(b, 'overwritten'), 401); // B introspects: revoked, shared as inactive
    assert.equal(s.as.callsFor('overwritten'), 2);
    assert.equal(await first, 200); // A's old answer arrives
    await sleep(100);
    assert.equal(await call(c, 'overwritten'), 401);
  });
});
