/*
 * A purge made while sharing is off is lost when Redis comes back. With the
 * circuit open, `purgeTokens`/`purgeBy` skip Redis (503, `unavailable`: "the
 * entries were removed from this process only"). Redis did not lose its
 * data (a slow or unreachable Redis, not an emptied one), so when sharing
 * resumes the purged entry is still there: the very instance that purged
 * reads it back on its next request and serves the revoked token again, and
 * so does every instance whose local cache a resubscription cleared.
 *
 * Expected: a purge that could not reach Redis is remembered (bounded) and
 * replayed when sharing resumes, before the shared cache is read again (or
 * at least the purging instance does not take the purged token back from
 * Redis).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skip } from '../helpers/redis.js';
import { call, revoke, sharedSuite, until } from './i12-helpers.js';

const PASSWORD = 'temporarily-required-0123456789';

describe('i12: a purge while the shared cache is unavailable (real redis-server refusing the gateway for a while, scripted introspection peer)', { skip }, () => {
  const s = sharedSuite();

  test('a token purged while Redis was unavailable is not served again from Redis once sharing resumes (401, introspected again)', async () => {
    const a = await s.gateway({ redisExtra: '    command_timeout_ms: 200\n' });
    await s.as.activate('purged-while-down', { scope: 'read' });
    assert.equal(await call(a, 'purged-while-down'), 200);
    assert.equal(s.as.callsFor('purged-while-down'), 1);
    // Redis refuses the gateway for a while, its data intact (as an unreachable Redis would):
    // a password required from now on, and the gateway's connections cut.
    s.redis.cli('CONFIG', 'SET', 'requirepass', PASSWORD);
    s.redis.cli('-a', PASSWORD, '--no-auth-warning', 'CLIENT', 'KILL', 'TYPE', 'normal');
    s.redis.cli('-a', PASSWORD, '--no-auth-warning', 'CLIENT', 'KILL', 'TYPE', 'pubsub');
    await until(() => a.gateway.guards.sharedCacheState() === 'down', 5000, 'sharing to turn off');
    const outcome = await a.gateway.guards.purge({ token: 'purged-while-down' });
    assert.equal(outcome.instances, 'unavailable');
    revoke(s.as, 'purged-while-down');
    s.redis.cli('-a', PASSWORD, '--no-auth-warning', 'CONFIG', 'SET', 'requirepass', '');
    await until(() => a.gateway.guards.sharedCacheState() === 'up', 8000, 'sharing to resume');
    assert.equal(await call(a, 'purged-while-down'), 401);
    assert.equal(s.as.callsFor('purged-while-down'), 2);
  });
});
