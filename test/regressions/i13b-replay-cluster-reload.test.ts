/*
 * i13b regression: with `workers` and no cache.redis, a reload that raises
 * `dpop.max_age_seconds` makes proofs the primary has forgotten fresh again.
 *
 * The first review's fix for a longer window (MemoryReplayStore
 * forgetBefore + extend) is applied in Guards, i.e. to a process's own
 * memory across an in-place reload. With workers a reload starts new worker
 * processes: their own memory is empty, and the only one that saw the proof
 * is the primary's PrimaryReplayMemory, which the reload only resizes
 * (cli.ts `dpopReplay.resize`), and which ignores the floor (it asks its
 * store with iatMs = +Infinity). A proof remembered until iat + 1 + 1 s
 * under max_age_seconds 1 is forgotten by the primary, and once the new
 * workers accept proofs up to 60 s old, the captured proof (with its token)
 * is accepted again: a replayed request reaches the API.
 *
 * Fix: the primary applies the same floor/extend on reload (it knows old and
 * new configurations), and honours the floor for the iat the worker sends.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureBuilt, freePort, scratchDir, startCli } from '../helpers/cli.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { dpopKey, freshGet, proof } from './i13-helpers.js';

describe('i13b: DPoP replay memory of a cluster across a reload (scripted introspection, real CLI)', () => {
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

  test('a proof used under max_age_seconds 1 is refused by the new workers after a reload raises it to 60', async () => {
    const port = await freePort();
    const text = (maxAge: number) => `
listen: { host: 127.0.0.1, port: ${port} }
workers: 2
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
  dpop: { max_age_seconds: ${maxAge}, clock_skew_seconds: 0 }
routes:
  - path: /api
    upstream: ${api.url}
`;
    const file = dir.write('workers.yaml', text(1));
    const key = await dpopKey();
    await as.activate('tok', { cnf: { jkt: key.jkt } });
    const run = startCli(['--config', file]);
    try {
      await run.waitFor(/phantom-gateway listening[\s\S]*phantom-gateway listening/, 20_000);
      const url = `http://127.0.0.1:${port}/api/items`;
      const p = await proof(key, 'GET', url, 'tok');
      const iatMs = Math.floor(Date.now() / 1000) * 1000;
      assert.equal((await freshGet(url, { authorization: 'DPoP tok', dpop: p })).status, 200);
      dir.write('workers.yaml', text(60));
      run.child.kill('SIGHUP');
      await run.waitFor(/configuration reloaded/, 20_000);
      await new Promise((r) => setTimeout(r, Math.max(0, iatMs + 2500 - Date.now())));
      const statuses: number[] = [];
      // Round robin: each new worker gets one.
      for (let i = 0; i < 2; i++) statuses.push((await freshGet(url, { authorization: 'DPoP tok', dpop: p })).status);
      assert.deepEqual(statuses, [401, 401], 'the proof was accepted again after the reload');
      assert.equal(api.received.length, 1, 'the replayed request reached the API');
    } finally {
      run.child.kill('SIGTERM');
      await run.exited;
    }
  });
});
