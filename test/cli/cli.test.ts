import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import { Agent, request } from 'undici';
import { ensureBuilt, freePort, runCli, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const SECRET = 'cli-Secret:&=+ 9d1e';
/** How the secret travels in the Basic header (form-encoded, then base64): must not leak either. */
const SECRET_FORMS = [SECRET, encodeURIComponent(SECRET), new URLSearchParams({ s: SECRET }).toString().slice(2)];
/** No stack frame lines ("    at fn (file:1:2)") in what a user sees. */
const STACK_FRAME = /^\s+at .+\(?.*:\d+:\d+\)?$/m;

/** A gateway config taking its ports and secret from the environment, as a deployment would. */
const CONFIG = `listen:
  host: 127.0.0.1
  port: \${PORT}
phantom_token:
  introspection_endpoint: \${AS_URL}/introspect
  client_id: gateway-client
  client_secret: \${INTROSPECTION_CLIENT_SECRET}
  scope: read
server:
  shutdown_timeout_ms: \${SHUTDOWN_MS:-5000}
log:
  level: \${LOG_LEVEL:-info}
workers: \${WORKERS:-1}
routes:
  - path: /api
    upstream: \${API_URL}
  - path: /public
    upstream: \${API_URL}
    phantom_token: false
`;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    }),
  ]);
}

/** What a TCP connection attempt to the port gives: 'connected' or the error code (ECONNREFUSED once nothing listens). */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('cli: phantom-gateway as a process', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let busy: Server;
  let busyPort: number;
  let files: ReturnType<typeof scratchDir>;
  let configFile: string;
  // One client per test file, so no pooled connection outlives a gateway.
  let client: Agent;
  const children: CliRun[] = [];

  const env = (port: number, extra: Record<string, string> = {}) => ({
    PORT: String(port),
    AS_URL: as.url,
    API_URL: api.url,
    INTROSPECTION_CLIENT_SECRET: SECRET,
    ...extra,
  });

  /** Starts the gateway on a free port and waits until it listens. */
  async function startGatewayProcess(extra: Record<string, string> = {}) {
    const port = await freePort();
    const run = startCli(['--config', configFile], env(port, extra));
    children.push(run);
    await run.waitFor(/"msg":"phantom-gateway listening"/);
    return { run, port, url: `http://127.0.0.1:${port}` };
  }

  before(async () => {
    ensureBuilt();
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    busy = createServer();
    busy.listen(0, '127.0.0.1');
    await once(busy, 'listening');
    busyPort = (busy.address() as { port: number }).port;
    files = scratchDir();
    configFile = files.write('gateway.yaml', CONFIG);
    client = new Agent({ keepAliveTimeout: 100 });
  });
  after(async () => {
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.exited));
    await client.close();
    busy.close();
    await as.close();
    await api.close();
    files.cleanup();
  });
  beforeEach(() => {
    api.received.length = 0;
    as.calls.length = 0;
  });

  // Independent processes: run them side by side to keep the file fast.
  describe('usage and configuration errors (exit 2, nothing served)', { concurrency: true }, () => {
    test('no --config: exit 2 with the usage on stderr', async () => {
      const r = await runCli([]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^phantom-gateway: --config is required\n/);
      assert.match(r.stderr, /Usage: phantom-gateway --config <file\.yaml> \[--check\]/);
      assert.equal(r.stdout, '');
    });

    test('an unknown option: exit 2 naming it, with the usage', async () => {
      const r = await runCli(['--confg', configFile]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--confg/);
      assert.match(r.stderr, /Usage: phantom-gateway/);
      assert.doesNotMatch(r.stderr, STACK_FRAME);
    });

    test('--help: exit 0 with the usage on stdout', async () => {
      const r = await runCli(['--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^Usage: phantom-gateway --config/);
      assert.equal(r.stderr, '');
    });

    test('a configuration file that does not exist: exit 2 naming the file', async () => {
      const missing = `${files.dir}/nope.yaml`;
      const r = await runCli(['--config', missing]);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, `phantom-gateway: invalid configuration:\n  ${missing}: cannot read the configuration file (ENOENT)\n`);
      assert.equal(r.stdout, '');
    });

    test('a broken configuration: exit 2, each problem with field and line, no stack trace, no secret', async () => {
      const broken = CONFIG.replace('  scope: read\n', '  scop: read\n').replace('upstream: ${API_URL}\n  - path: /public', 'upstream: ftp://x\n  - path: /public');
      const file = files.write('broken.yaml', broken);
      const port = await freePort();
      const r = await runCli(['--config', file], env(port));
      assert.equal(r.code, 2);
      const lines = broken.split('\n');
      const scop = lines.findIndex((l) => l.includes('scop:')) + 1;
      const ftp = lines.findIndex((l) => l.includes('ftp://x')) + 1;
      assert.equal(
        r.stderr,
        'phantom-gateway: invalid configuration:\n' +
          `  ${file}:${scop}: phantom_token.scop: unknown option (did you mean "scope"?)\n` +
          `  ${file}:${ftp}: routes[0].upstream: must be an http:// or https:// upstream URL, not ftp://\n`,
      );
      assert.doesNotMatch(r.stderr, STACK_FRAME);
      assert.equal(r.stdout, '', 'nothing logged: the gateway never started');
      assert.equal(await tryConnect(port), 'ECONNREFUSED', 'nothing listens on the configured port');
    });

    test('an unset environment variable: exit 2 naming the variable, the field and the line', async () => {
      const r = await runCli(['--config', configFile], { PORT: '1', AS_URL: as.url, API_URL: api.url });
      assert.equal(r.code, 2);
      const line = CONFIG.split('\n').findIndex((l) => l.includes('INTROSPECTION_CLIENT_SECRET')) + 1;
      assert.match(r.stderr, new RegExp(`${configFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:${line}: phantom_token\\.client_secret: environment variable INTROSPECTION_CLIENT_SECRET is not set`));
    });

    test('--check on a valid file: exit 0 without binding the port (it is busy here)', async () => {
      const r = await runCli(['--config', configFile, '--check'], env(busyPort));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${configFile}: configuration is valid (2 route(s))\n`);
      assert.equal(r.stderr, '');
    });

    test('--check on a broken file: exit 2', async () => {
      const file = files.write('check-broken.yaml', CONFIG.replace('client_id: gateway-client', 'client_di: gateway-client'));
      const r = await runCli(['--config', file, '--check'], env(busyPort));
      assert.equal(r.code, 2);
      assert.match(r.stderr, /phantom_token\.client_di: unknown option \(did you mean "client_id"\?\)/);
      assert.equal(r.stdout, '');
    });
  });

  test('a busy port: exit 1 with a clear message and no stack trace', async () => {
    const r = await runCli(['--config', configFile], env(busyPort));
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^phantom-gateway: 127\\.0\\.0\\.1:${busyPort} is already in use: stop what is using it or change listen\\.port\\n$`));
    assert.doesNotMatch(r.stderr, STACK_FRAME);
  });

  test('a valid configuration: serves, swaps the token for the JWT, and stops on SIGTERM after finishing the in-flight request', async () => {
    const jwt = await as.activate('cli-opaque-token-1', { scope: 'read' });
    const { run, port, url } = await startGatewayProcess();

    const res = await request(`${url}/api/orders?x=1`, { dispatcher: client, headers: { authorization: 'Bearer cli-opaque-token-1' } });
    assert.equal(res.statusCode, 200);
    const seen = (await res.body.json()) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/api/orders?x=1');
    assert.equal(seen.headers.authorization, `Bearer ${jwt}`);
    assert.equal(as.callsFor('cli-opaque-token-1'), 1);
    // The secret reached the introspection endpoint from the environment.
    const basic = Buffer.from(String(as.calls[0]!.headers.authorization).slice('Basic '.length), 'base64').toString();
    assert.equal(decodeURIComponent(basic.split(':')[1]!.replace(/\+/g, ' ')), SECRET);

    const denied = await request(`${url}/api/orders`, { dispatcher: client });
    assert.equal(denied.statusCode, 401);
    await denied.body.dump();

    // A slow request is in flight at the upstream when SIGTERM arrives.
    const slow = request(`${url}/api/slow?ms=800`, { dispatcher: client, headers: { authorization: 'Bearer cli-opaque-token-1' } });
    let slowDone = false;
    slow.then(
      () => (slowDone = true),
      () => (slowDone = true), // awaited below; a failure must not surface as an unhandled rejection first
    );
    await until(() => api.received.some((r) => r.url === '/api/slow?ms=800'), 'the slow request to reach the upstream');
    run.child.kill('SIGTERM');
    // The log line can reach us before the listening socket is closed, so probe.
    await until(async () => (await tryConnect(port)) === 'ECONNREFUSED', 'new connections to be refused', 2000);
    assert.equal(slowDone, false, 'new connections are refused while the request is still in flight');
    await run.waitFor(/"signal":"SIGTERM".*shutting down/);

    const slowRes = await withTimeout(slow, 5000, 'the in-flight request');
    assert.equal(slowRes.statusCode, 200);
    assert.equal(slowRes.headers.connection, 'close', 'answered with Connection: close while draining');
    assert.equal(((await slowRes.body.json()) as { url: string }).url, '/api/slow?ms=800');

    assert.deepEqual(await withTimeout(run.exited, 5000, 'the process to exit'), { code: 0, signal: null });
    assert.match(run.stdout(), /"msg":"stopped"/);
    assert.doesNotMatch(run.stderr(), STACK_FRAME);
  });

  test('SIGINT also stops gracefully with exit 0', async () => {
    const { run, url } = await startGatewayProcess();
    const res = await request(`${url}/public/ping`, { dispatcher: client });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const slow = request(`${url}/public/slow?ms=300`, { dispatcher: client });
    slow.catch(() => {}); // awaited below
    await until(() => api.received.some((r) => r.url === '/public/slow?ms=300'), 'the slow request to reach the upstream');
    run.child.kill('SIGINT');
    const slowRes = await withTimeout(slow, 5000, 'the in-flight request');
    assert.equal(slowRes.statusCode, 200);
    await slowRes.body.dump();
    assert.deepEqual(await withTimeout(run.exited, 5000, 'the process to exit'), { code: 0, signal: null });
    assert.match(run.stdout(), /"signal":"SIGINT"/);
  });

  test('workers: 2 runs two gateway processes on one port, each serving; SIGTERM drains both and exits 0', async () => {
    const jwt = await as.activate('cli-opaque-token-workers', { scope: 'read' });
    const port = await freePort();
    const run = startCli(['--config', configFile], env(port, { WORKERS: '2' }));
    children.push(run);
    await until(() => (run.stdout().match(/"msg":"phantom-gateway listening"/g) ?? []).length === 2, 'both workers to listen', 10_000);
    assert.match(run.stdout(), /"worker":1/);
    assert.match(run.stdout(), /"worker":2/);
    // Separate connections land on the workers in turn; every one is served.
    for (let i = 0; i < 6; i++) {
      const res = await request(`http://127.0.0.1:${port}/api/w`, { headers: { authorization: 'Bearer cli-opaque-token-workers', connection: 'close' } });
      assert.equal(res.statusCode, 200);
      assert.equal(((await res.body.json()) as { headers: Record<string, string> }).headers.authorization, `Bearer ${jwt}`);
    }
    // Each worker has its own cache: at most one introspection per worker.
    assert.ok(as.callsFor('cli-opaque-token-workers') <= 2);
    run.child.kill('SIGTERM');
    assert.deepEqual(await withTimeout(run.exited, 8000, 'the cluster to exit'), { code: 0, signal: null });
    assert.equal((run.stdout().match(/"msg":"stopped"/g) ?? []).length, 2, 'both workers drained and stopped');
  });

  test('workers: 2, a worker that dies is replaced and requests keep being served, with the configuration the gateway started with', async () => {
    const port = await freePort();
    const ownFile = files.write('replaced.yaml', CONFIG);
    const run = startCli(['--config', ownFile], env(port, { WORKERS: '2' }));
    children.push(run);
    const listening = () => (run.stdout().match(/"msg":"phantom-gateway listening"/g) ?? []).length;
    await until(() => listening() === 2, 'both workers to listen', 10_000);
    const { readdirSync, readFileSync } = await import('node:fs');
    const workerPids = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === run.child.pid;
        } catch {
          return false;
        }
      })
      .map(Number);
    assert.equal(workerPids.length, 2);
    // Edited (and broken) after start: a replacement must not read it.
    files.write('replaced.yaml', 'listen: [broken\n');
    process.kill(workerPids[0]!, 'SIGKILL');
    await until(() => listening() === 3, 'a replacement worker to listen', 10_000);
    assert.match(run.stdout(), /worker died: starting a new one/);
    assert.equal(run.stderr(), '');
    for (let i = 0; i < 4; i++) {
      const res = await request(`http://127.0.0.1:${port}/public/after-crash`, { headers: { connection: 'close' } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    }
    run.child.kill('SIGTERM');
    assert.deepEqual(await withTimeout(run.exited, 8000, 'the cluster to exit'), { code: 0, signal: null });
  });

  test('SIGTERM while a request waits on a slow authorization server: exit 0 within shutdown_timeout_ms, not when the server answers', async () => {
    await as.activate('cli-opaque-token-slow-as', { scope: 'read' }, { delayMs: 8000 });
    const { run, url } = await startGatewayProcess({ SHUTDOWN_MS: '1000' });
    const pending = request(`${url}/api/slow-as`, { dispatcher: client, headers: { authorization: 'Bearer cli-opaque-token-slow-as' } }).catch((e: unknown) => e);
    await until(() => as.callsFor('cli-opaque-token-slow-as') === 1, 'the introspection call');
    const t0 = performance.now();
    run.child.kill('SIGTERM');
    assert.deepEqual(await withTimeout(run.exited, 6000, 'the gateway to exit'), { code: 0, signal: null });
    const elapsed = performance.now() - t0;
    assert.ok(elapsed < 3000, `exited ${Math.round(elapsed)} ms after SIGTERM`);
    await pending;
  });

  test('log lines carry the process id', async () => {
    const { run } = await startGatewayProcess();
    assert.match(run.stdout(), new RegExp(`"pid":${run.child.pid},[^\n]*"msg":"phantom-gateway listening"`));
    run.child.kill('SIGTERM');
    await run.exited;
  });

  test('workers: 2 on a busy port: exit 1 with the clear message, no restart loop', async () => {
    const r = await runCli(['--config', configFile], env(busyPort, { WORKERS: '2' }));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is already in use/);
    assert.doesNotMatch(r.stderr, STACK_FRAME);
  });

  test('the logs of a whole run (trace level) never contain an opaque token, a JWT or the client secret', async () => {
    const jwt = await as.activate('cli-opaque-token-2', { scope: 'read' });
    const lacking = await as.activate('cli-opaque-token-scope', { scope: 'other' });
    as.answers.set('cli-opaque-token-down', { status: 500, body: 'boom cli-opaque-token-down' });
    const { run, url } = await startGatewayProcess({ LOG_LEVEL: 'trace' });

    const statuses: number[] = [];
    for (const [path, token] of [
      ['/api/a?token=cli-opaque-token-q', 'cli-opaque-token-2'],
      ['/api/a', 'cli-opaque-token-2'], // cache hit
      ['/api/b', 'cli-opaque-token-scope'],
      ['/api/c', 'cli-opaque-token-inactive'],
      ['/api/d', 'cli-opaque-token-down'],
    ] as const) {
      const res = await request(`${url}${path}`, { dispatcher: client, headers: { authorization: `Bearer ${token}` } });
      statuses.push(res.statusCode);
      await res.body.dump();
    }
    assert.deepEqual(statuses, [200, 200, 403, 401, 502], 'each path through the gateway was exercised');
    run.child.kill('SIGTERM');
    assert.deepEqual(await withTimeout(run.exited, 5000, 'the process to exit'), { code: 0, signal: null });

    const output = run.stdout() + run.stderr();
    assert.match(output, /"status":502/, 'the logs were captured (access log present)');
    for (const needle of ['cli-opaque-token', jwt, jwt.split('.')[2]!, lacking, ...SECRET_FORMS]) {
      assert.equal(output.includes(needle), false, `logs contain ${needle.slice(0, 20)}...`);
    }
  });
});
