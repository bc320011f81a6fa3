/*
 * i13 regression: with `workers: 2` (or `auto`) and no cache.redis, a DPoP
 * proof is accepted once by every worker.
 *
 * Each worker builds its own Guards and so its own MemoryReplayStore; the
 * primary hands every worker one nonce secret (so nonces work across
 * workers) but nothing shares the memory of proofs seen. New connections go
 * to the workers in turn, so a captured proof (with its token) replayed on
 * a new connection reaches a worker that never saw it, and is accepted:
 * `jti` "not seen before within the window" holds per process only. Nothing
 * warns about it at start-up, and the README's "in Redis too when
 * cache.redis is set" does not say that workers need it.
 *
 * Fix: keep the replay memory in the primary (one IPC round trip per proof,
 * like the workers' other shared state), or refuse (config error) / at least
 * warn at start-up for `workers > 1` with a DPoP route and no cache.redis.
 * This test expects the replay refused.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureBuilt, freePort, scratchDir, startCli } from '../helpers/cli.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { dpopKey, freshGet, proof } from './i13-helpers.js';

describe('i13: DPoP replay across workers without Redis (scripted introspection, real CLI)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  const dir = scratchDir();
  before(async () => {
    ensureBuilt();
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
  });
  after(async () => {
    await api.close();
    await as.close();
    dir.cleanup();
  });

  test('the same proof on new connections is accepted once only', async () => {
    const port = await freePort();
    const file = dir.write(
      'workers.yaml',
      `
listen: { host: 127.0.0.1, port: ${port} }
workers: 2
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
routes:
  - path: /api
    upstream: ${api.url}
`,
    );
    const key = await dpopKey();
    await as.activate('tok', { cnf: { jkt: key.jkt } });
    const run = startCli(['--config', file]);
    try {
      await run.waitFor(/phantom-gateway listening[\s\S]*phantom-gateway listening/, 20_000);
      const url = `http://127.0.0.1:${port}/api/items`;
      const p = await proof(key, 'GET', url, 'tok');
      const statuses: number[] = [];
      // Round robin over two workers: four new connections reach each worker twice.
      for (let i = 0; i < 4; i++) statuses.push((await freshGet(url, { authorization: 'DPoP tok', dpop: p })).status);
      assert.equal(statuses.filter((st) => st === 200).length, 1, `a proof was accepted more than once: ${statuses.join(' ')}`);
      assert.equal(api.received.length, 1);
    } finally {
      run.child.kill('SIGTERM');
      await run.exited;
    }
  });
});
