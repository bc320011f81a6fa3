/*
 * SIGHUP reload of the real command line: the configuration is swapped in
 * under a steady stream of requests (four keep-alive clients), with one
 * process and with two workers; every failed request is counted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { Pool } from 'undici';
import { ensureBuilt, freePort, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const TOKEN = 'reload-opaque-token';

/** Route /api to `upstream` (a URL with a path naming it), with `extra` routes appended. */
function config(port: number, as: string, upstream: string, opts: { workers?: number; endpoint?: string; extra?: string } = {}): string {
  return `listen:
  host: 127.0.0.1
  port: ${port}
phantom_token:
  introspection_endpoint: ${as}${opts.endpoint ?? '/introspect'}
  client_id: gateway-client
  client_secret: reload-secret
  scope: read
server:
  shutdown_timeout_ms: 5000
workers: ${opts.workers ?? 1}
routes:
  - path: /api
    upstream: ${upstream}
${opts.extra ?? ''}`;
}

const count = (run: CliRun, pattern: RegExp): number => (run.stdout().match(new RegExp(pattern.source, 'g')) ?? []).length;

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Which echo upstream answered (`/a/...` or `/b/...` in the URL it saw). */
async function get(pool: Pool, path = '/api/x'): Promise<{ status: number; upstream: string }> {
  const res = await pool.request({ path, method: 'GET', headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await res.body.text();
  if (res.statusCode !== 200) return { status: res.statusCode, upstream: '-' };
  return { status: 200, upstream: (JSON.parse(text) as { url: string }).url.split('/')[1]! };
}

describe('reload on SIGHUP (real process)', () => {
  let as: ScriptedIntrospection;
  let a: EchoUpstream;
  let b: EchoUpstream;
  let files: ReturnType<typeof scratchDir>;
  const runs: CliRun[] = [];
  const pools: Pool[] = [];

  before(async () => {
    ensureBuilt();
    as = await startScriptedIntrospection();
    await as.activate(TOKEN, { scope: 'read' });
    a = await startEchoUpstream();
    b = await startEchoUpstream();
    files = scratchDir();
  });
  after(async () => {
    for (const p of pools) await p.destroy();
    // SIGTERM first: a primary killed outright would leave its workers (and the output pipes) behind for a while.
    for (const r of runs) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM');
    const late = setTimeout(() => runs.forEach((r) => r.kill()), 15_000);
    await Promise.all(runs.map((r) => r.exited));
    clearTimeout(late);
    await Promise.all([as.close(), a.close(), b.close()]);
    files.cleanup();
  });

  async function start(yaml: string, name: string): Promise<{ run: CliRun; port: number; file: string; pool: Pool }> {
    const port = Number(/port: (\d+)/.exec(yaml)![1]);
    const file = files.write(name, yaml);
    const run = startCli(['--config', file]);
    runs.push(run);
    const workers = Number(/workers: (\d+)/.exec(yaml)![1]);
    await until(() => count(run, /"msg":"phantom-gateway listening"/) === workers, 'the gateway to listen');
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 4 });
    pools.push(pool);
    return { run, port, file, pool };
  }

  /**
   * Four clients send requests back to back while `reloads` SIGHUPs swap the
   * route between upstreams a and b. Every request is counted; a request
   * started after a reload was complete must reach the new upstream.
   */
  async function underLoad(workers: number, reloads: number): Promise<void> {
    const port = await freePort();
    const yamlFor = (u: 'a' | 'b') => config(port, as.url, u === 'a' ? `${a.url}/a` : `${b.url}/b`, { workers });
    const { run, pool } = await start(yamlFor('a'), `load-${workers}.yaml`);
    const callsBefore = as.callsFor(TOKEN);
    let expected: 'a' | 'b' | undefined = 'a';
    let stop = false;
    const failures: string[] = [];
    let ok = 0;
    /** Requests that reached the expected upstream, by phase (0: before any reload). */
    const perPhase: number[] = [0];
    let phase = 0;
    let signalled = 0;
    const client = async () => {
      while (!stop) {
        const want = expected;
        const at = phase;
        const signals = signalled;
        try {
          const r = await get(pool);
          // A request under way when a SIGHUP was sent may be served by either configuration.
          const judged = want !== undefined && signals === signalled;
          if (r.status !== 200) failures.push(`status ${r.status}`);
          else if (judged && r.upstream !== want) failures.push(`reached ${r.upstream}, expected ${want}`);
          else {
            ok++;
            if (judged) perPhase[at] = (perPhase[at] ?? 0) + 1;
          }
        } catch (err) {
          failures.push(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
        }
      }
    };
    const clients = Array.from({ length: 4 }, client);
    try {
      // Each phase lasts until enough requests were judged in it (the machine is shared: no fixed rate).
      const settle = (i: number) => until(() => (perPhase[i] ?? 0) >= 20 || failures.length > 0, `requests in phase ${i}`);
      await settle(0);
      let current: 'a' | 'b' = 'a';
      for (let i = 1; i <= reloads; i++) {
        current = current === 'a' ? 'b' : 'a';
        files.write(`load-${workers}.yaml`, yamlFor(current));
        // While the swap is under way either upstream is right.
        expected = undefined;
        const stoppedBefore = count(run, /"msg":"stopped"/);
        signalled++;
        run.child.kill('SIGHUP');
        await until(() => count(run, /"msg":"configuration reloaded"/) === i, `reload ${i}`);
        // With workers, a connection to an old worker may carry one more request
        // (answered with Connection: close) until that worker has stopped.
        if (workers > 1) await until(() => count(run, /"msg":"stopped"/) === stoppedBefore + workers, `the old workers of reload ${i} to stop`);
        phase = i;
        expected = current;
        await settle(i);
      }
    } finally {
      // Whatever failed above, the clients stop (else they would run on after the test).
      stop = true;
      await Promise.all(clients);
    }
    assert.deepEqual(failures, [], `${failures.length} failed of ${failures.length + ok}`);
    // The machine is shared: no rate is asserted, only that traffic flowed in every phase.
    assert.equal(perPhase.length, reloads + 1);
    for (const [i, n] of perPhase.entries()) assert.ok(n >= 20, `phase ${i}: ${n} requests reached the expected upstream (${perPhase.join(', ')}; ${ok} in all)`);
    assert.ok(run.child.exitCode === null, 'still running');
    // The token cache survived every reload (one introspection per process that served it).
    assert.ok(as.callsFor(TOKEN) - callsBefore <= (workers === 1 ? 1 : workers * (reloads + 1)), `introspections: ${as.callsFor(TOKEN) - callsBefore}`);
    run.child.kill('SIGTERM');
    assert.deepEqual(await run.exited, { code: 0, signal: null }, `stdout: ${run.stdout()}\nstderr: ${run.stderr()}`);
  }

  test('one process: three SIGHUPs alternating the upstream under four keep-alive clients: zero failed requests, requests after a reload reach the new upstream, one introspection', async () => {
    await underLoad(1, 3);
  });

  test('workers: 2: two SIGHUPs replace the workers one by one under four keep-alive clients: zero failed requests, then the new upstream', async () => {
    await underLoad(2, 2);
  });

  test('an invalid file on SIGHUP: every problem logged with its line, the old configuration keeps serving, the process lives; fixing it and SIGHUP again applies it', async () => {
    const port = await freePort();
    const { run, file, pool } = await start(config(port, as.url, `${a.url}/a`), 'invalid.yaml');
    files.write('invalid.yaml', config(port, as.url, 'not a url', { extra: '  - path: /other\n    upstream: ftp://x\n    request_buffering: maybe\n' }));
    run.child.kill('SIGHUP');
    await until(() => count(run, /"msg":"reload refused: the configuration in use is kept"/) === 1, 'the refusal');
    const out = run.stdout();
    assert.match(out, /reload refused: [^"]*invalid\.yaml:14: routes\[0\]\.upstream: is not a URL/);
    assert.match(out, /reload refused: [^"]*invalid\.yaml:16: routes\[1\]\.upstream/);
    assert.match(out, /reload refused: [^"]*invalid\.yaml:17: routes\[1\]\.request_buffering: must be true or false/);
    assert.deepEqual(await get(pool), { status: 200, upstream: 'a' });
    assert.equal(run.child.exitCode, null);
    void file;
    files.write('invalid.yaml', config(port, as.url, `${b.url}/b`));
    run.child.kill('SIGHUP');
    await until(() => count(run, /"msg":"configuration reloaded"/) === 1, 'the reload');
    assert.deepEqual(await get(pool), { status: 200, upstream: 'b' });
  });

  test('workers: 2, an invalid file on SIGHUP: the primary refuses it, logs every problem with its line, and no worker is replaced', async () => {
    const port = await freePort();
    const { run, pool } = await start(config(port, as.url, `${a.url}/a`, { workers: 2 }), 'invalid-workers.yaml');
    files.write('invalid-workers.yaml', config(port, as.url, 'not a url', { workers: 2 }));
    run.child.kill('SIGHUP');
    await until(() => count(run, /"msg":"reload refused: the workers keep the configuration in use"/) === 1, 'the refusal');
    assert.match(run.stdout(), /invalid-workers\.yaml:14: routes\[0\]\.upstream/);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(count(run, /"msg":"phantom-gateway listening"/), 2, 'no worker started');
    assert.deepEqual(await get(pool), { status: 200, upstream: 'a' });
    // A hangup reaching a worker itself (a terminal's, sent to the process group) neither kills nor reloads it.
    const workerPid = Number(/"pid":(\d+)[^\n]*"msg":"phantom-gateway listening"/.exec(run.stdout())![1]);
    process.kill(workerPid, 'SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    assert.doesNotThrow(() => process.kill(workerPid, 0), 'the worker is alive');
    assert.equal(count(run, /"msg":"stopped"/), 0);
    assert.equal(count(run, /reloading the configuration/), 1, 'only the primary\'s own SIGHUP');
    for (let i = 0; i < 4; i++) assert.deepEqual(await get(pool), { status: 200, upstream: 'a' });
  });

  test('the token cache survives a reload that adds a route (no new introspection), not one that changes introspection_endpoint; restart-only options keep their value with a warning', async () => {
    const port = await freePort();
    const token = 'reload-cache-token';
    await as.activate(token, { scope: 'read' });
    const { run, pool } = await start(config(port, as.url, `${a.url}/a`), 'cache.yaml');
    const ask = async () => (await pool.request({ path: '/api/c', method: 'GET', headers: { authorization: `Bearer ${token}` } })).body.text();
    await ask();
    assert.equal(as.callsFor(token), 1);
    const other = await freePort();
    files.write('cache.yaml', config(other, as.url, `${a.url}/a`, { extra: `  - path: /new\n    upstream: ${b.url}/b\n` }));
    run.child.kill('SIGHUP');
    await until(() => count(run, /"msg":"configuration reloaded"/) === 1, 'reload 1');
    assert.match(run.stdout(), /"option":"listen\.port"[^\n]*listen\.port cannot change without a restart: the running value is kept/);
    await ask();
    assert.equal(as.callsFor(token), 1, 'a cache hit after an unrelated change');
    assert.deepEqual(await get(pool, '/new/x'), { status: 200, upstream: 'b' }, 'the new route serves, on the running port');
    files.write('cache.yaml', config(port, as.url, `${a.url}/a`, { endpoint: '/introspect-v2' }));
    run.child.kill('SIGHUP');
    await until(() => count(run, /"msg":"configuration reloaded"/) === 2, 'reload 2');
    await ask();
    assert.equal(as.callsFor(token), 2, 'a miss once the introspection endpoint changed');
    assert.equal(as.calls.at(-1)!.url, '/introspect-v2');
    assert.equal((await get(pool, '/new/x')).status, 404, 'the removed route is gone');
  });

  test('a request under way when SIGHUP swaps the upstream finishes on the old one (200, same connection kept alive); the next one reaches the new upstream', async () => {
    const port = await freePort();
    const { run, pool } = await start(config(port, as.url, `${a.url}/a`), 'inflight.yaml');
    const slow = get(pool, '/api/slow?ms=1500');
    await until(() => a.received.some((r) => r.url.startsWith('/a/slow')), 'the slow request to reach upstream a');
    files.write('inflight.yaml', config(port, as.url, `${b.url}/b`));
    run.child.kill('SIGHUP');
    await until(() => count(run, /"msg":"configuration reloaded"/) === 1, 'the reload');
    assert.deepEqual(await get(pool), { status: 200, upstream: 'b' });
    assert.deepEqual(await slow, { status: 200, upstream: 'a' });
    assert.deepEqual(await get(pool), { status: 200, upstream: 'b' });
  });

  test('workers: 2, a new worker that cannot start (its secret file vanished after the primary validated): the roll is aborted, the old workers keep serving the old configuration', async () => {
    const port = await freePort();
    const { run, pool } = await start(config(port, as.url, `${a.url}/a`, { workers: 2 }), 'abort.yaml');
    const secret = files.write('secret.txt', 'reload-secret\n');
    files.write('abort.yaml', config(port, as.url, `${b.url}/b`, { workers: 2 }).replace('client_secret: reload-secret', `client_secret_file: ${secret}`));
    run.child.kill('SIGHUP');
    // The primary validates as soon as it gets the signal; the new worker reads the file a while later, once started.
    await until(() => count(run, /"msg":"reloading the configuration: replacing workers one by one"/) === 1, 'the primary to take the signal');
    await new Promise((r) => setTimeout(r, 50));
    rmSync(secret);
    await until(() => count(run, /reload aborted: a worker with the new configuration failed to start; the workers keep the configuration in use/) >= 1, 'the roll to be aborted');
    assert.equal(count(run, /"msg":"configuration reloaded"/), 0);
    assert.equal(count(run, /"msg":"stopped"/), 0, 'no old worker was told to stop');
    for (let i = 0; i < 4; i++) assert.deepEqual(await get(pool), { status: 200, upstream: 'a' });
    assert.equal(run.child.exitCode, null);
  });
});
