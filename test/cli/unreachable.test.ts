/*
 * SIGTERM while the authorization server is unreachable at the TCP level
 * (connects to it hang): the process stops within shutdown_timeout_ms, with
 * one worker or two, and exits 0. Pending connects used to keep it alive
 * until their timeout (timeout_ms), and the primary then killed the workers
 * and exited 1.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { ensureBuilt, freePort, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { startUnreachable, type Unreachable } from '../helpers/unreachable.js';

const SHUTDOWN_MS = 1000;

const CONFIG = `listen:
  host: 127.0.0.1
  port: \${PORT}
phantom_token:
  introspection_endpoint: \${AS_URL}/introspect
  client_id: gateway-client
  client_secret: gateway-secret
  timeout_ms: 8000
  connections: 4
server:
  shutdown_timeout_ms: ${SHUTDOWN_MS}
log:
  access_log: false
workers: \${WORKERS}
routes:
  - path: /api
    upstream: \${API_URL}
`;

describe('cli: SIGTERM with the authorization server unreachable at the TCP level', { timeout: 30_000 }, () => {
  let dead: Unreachable;
  let api: EchoUpstream;
  let files: ReturnType<typeof scratchDir>;
  let configFile: string;
  const children: CliRun[] = [];
  const clients: Agent[] = [];

  before(async () => {
    ensureBuilt();
    dead = await startUnreachable();
    api = await startEchoUpstream();
    files = scratchDir();
    configFile = files.write('gateway.yaml', CONFIG);
  });
  after(async () => {
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.exited));
    await Promise.all(clients.map((c) => c.destroy()));
    await api.close();
    await dead.close();
    files.cleanup();
  });

  for (const workers of [1, 2]) {
    test(`workers: ${workers}, new tokens waiting on connects that hang: stops within shutdown_timeout_ms (${SHUTDOWN_MS}) and exits 0`, async () => {
      const port = await freePort();
      const run = startCli(['--config', configFile], { PORT: String(port), AS_URL: dead.url, API_URL: api.url, WORKERS: String(workers) });
      children.push(run);
      const deadline = Date.now() + 10_000;
      while ((run.stdout().match(/"msg":"phantom-gateway listening"/g) ?? []).length < workers) {
        if (Date.now() > deadline || run.child.exitCode !== null) throw new Error(`did not start:\n${run.stdout()}\n${run.stderr()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      // Separate connections, so that with two workers both get some.
      const client = new Agent({ pipelining: 0, connections: 20 });
      clients.push(client);
      const pending = Array.from({ length: 12 }, (_, i) =>
        request(`http://127.0.0.1:${port}/api/x`, { dispatcher: client, headers: { authorization: `Bearer cli-dead-as-${workers}-${i}` } }).catch((e: unknown) => e),
      );
      await new Promise((r) => setTimeout(r, 400)); // the introspections are connecting
      const t0 = performance.now();
      run.child.kill('SIGTERM');
      const exit = await run.exited;
      const took = performance.now() - t0;
      assert.deepEqual(exit, { code: 0, signal: null }, run.stdout() + run.stderr());
      assert.ok(took < SHUTDOWN_MS + 1500, `exited ${Math.round(took)} ms after SIGTERM`);
      assert.equal((run.stdout().match(/"msg":"stopped"/g) ?? []).length, workers, 'every worker stopped by itself');
      await Promise.all(pending);
    });
  }
});
