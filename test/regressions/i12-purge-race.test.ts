/*
 * A purge that lands while the token's introspection is under way. The
 * operator revokes a token at the authorization server and purges it; an
 * introspection sent just before the revocation comes back "active" after
 * the purge, and is cached (locally and in Redis) for its whole lifetime:
 * the purge said it removed the token, yet the revoked token keeps working
 * on this instance and on every instance that reads Redis.
 *
 * Expected: an answer to an introspection that started before a purge of
 * its token is not kept (neither in the local cache nor in Redis); every
 * instance told of the purge does the same for its own introspections
 * under way (e.g. a purge epoch checked before caching).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skip } from '../helpers/redis.js';
import { signJwt, type ScriptedIntrospection } from '../helpers/servers.js';
import { call, sharedSuite, sleep, until } from './i12-helpers.js';

/** The first introspection of `token` answers active after `delayMs`; every later one says inactive (revoked meanwhile). */
async function revokedDuringIntrospection(as: ScriptedIntrospection, token: string, delayMs: number): Promise<void> {
  const jwt = await signJwt({ scope: 'read', sub: `sub-${token}` });
  let n = 0;
  as.answers.set(token, () =>
    n++ === 0
      ? { status: 200, body: jwt, headers: { 'content-type': 'application/jwt' }, delayMs }
      : { status: 200, body: '{"active":false}', headers: { 'content-type': 'application/json' } },
  );
}

describe('i12: a purge racing an introspection under way (real redis-server, scripted introspection peer)', { skip }, () => {
  const s = sharedSuite();

  test('a token purged while its introspection is under way is refused afterwards on the same instance (401, introspected again)', async () => {
    const a = await s.gateway();
    await revokedDuringIntrospection(s.as, 'race-same', 600);
    const first = call(a, 'race-same');
    await until(() => s.as.callsFor('race-same') === 1, 5000, 'the introspection to reach the peer');
    const outcome = await a.gateway.guards.purge({ token: 'race-same' });
    assert.equal(outcome.instances, 'notified');
    assert.equal(await first, 200); // answered before the purge was known: fine
    // After the purge: the revoked token must not be served from what the pre-purge introspection brought back.
    assert.equal(await call(a, 'race-same'), 401);
    assert.equal(s.as.callsFor('race-same'), 2);
  });

  test('a token purged on instance B while A introspects it is not served from Redis afterwards (B refuses it, 401)', async () => {
    const [a, b] = await Promise.all([s.gateway(), s.gateway()]);
    await revokedDuringIntrospection(s.as, 'race-other', 600);
    const first = call(a, 'race-other');
    await until(() => s.as.callsFor('race-other') === 1, 5000, 'the introspection to reach the peer');
    const outcome = await b.gateway.guards.purge({ token: 'race-other' });
    assert.equal(outcome.instances, 'notified');
    assert.equal(await first, 200);
    await sleep(100); // A's write to Redis is not awaited by its request
    // B never cached the token; after its own purge it must not accept it from A's late write to Redis.
    assert.equal(await call(b, 'race-other'), 401);
    assert.equal(s.as.callsFor('race-other'), 2);
  });

  test('requests arriving after a purge do not join the introspection that started before it (they are refused, 401)', async () => {
    const a = await s.gateway();
    await revokedDuringIntrospection(s.as, 'race-join', 600);
    const first = call(a, 'race-join');
    await until(() => s.as.callsFor('race-join') === 1, 5000, 'the introspection to reach the peer');
    await a.gateway.guards.purge({ token: 'race-join' });
    const second = call(a, 'race-join'); // sent after the purge answered
    assert.equal(await first, 200);
    assert.equal(await second, 401);
  });
});
