/*
 * A Redis that answers reads but refuses every write is reported "up". After
 * a failover the old primary becomes a replica (READONLY errors; a static
 * URL or a cached DNS answer keeps the gateway on it), or the URL names a
 * replica by mistake. Every miss then makes a GET that succeeds (the
 * breaker's failure count goes back to 0, `#answered`) and a lock and a
 * write that fail: three failures *in a row* never happen, so sharing is
 * never turned off. Nothing is shared any more, every instance introspects
 * every token, purges answer 503 `unavailable`, but no warning is logged and
 * /readyz and phantom_gateway_shared_cache_up say the shared cache is up.
 *
 * Expected: failing writes count toward the breaker (or are counted apart:
 * e.g. N failures within a window, whatever succeeded in between), so a
 * Redis refusing writes is reported down with the one warning, and comes
 * back up when it accepts writes again.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort } from '../helpers/cli.js';
import { skip } from '../helpers/redis.js';
import { call, sharedSuite, until } from './i12-helpers.js';

describe('i12: a Redis that refuses writes (real redis-server turned into a replica, scripted introspection peer)', { skip }, () => {
  const s = sharedSuite();

  test('a Redis answering READONLY to every write is reported down (one warning, sharedCacheState "down") instead of "up"', async () => {
    const a = await s.gateway({ redisExtra: '    command_timeout_ms: 200\n' });
    // The primary becomes a replica of a primary that is not there: reads answer, writes fail with READONLY.
    s.redis.cli('REPLICAOF', '127.0.0.1', String(await freePort()));
    try {
      for (let i = 0; i < 6; i++) {
        await s.as.activate(`readonly-${i}`, { scope: 'read' });
        assert.equal(await call(a, `readonly-${i}`), 200);
      }
      await until(() => a.gateway.guards.sharedCacheState() === 'down', 2000, 'sharing to be reported down').catch(() => {});
      assert.equal(a.gateway.guards.sharedCacheState(), 'down');
      const warnings = a.logs.filter((l) => l.level === 'warn' && /shared cache unavailable/.test(String(l.msg)));
      assert.equal(warnings.length, 1);
      // (A purge does notice: it answers `unavailable`, and its failure may be what finally opens the breaker.)
    } finally {
      s.redis.cli('REPLICAOF', 'NO', 'ONE');
    }
  });
});
