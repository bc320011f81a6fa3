/*
 * Token scanning (RFC 7662 §4): how long a legitimate new token waits while
 * another client floods the gateway with distinct garbage tokens.
 *
 * One round: client A (source address 127.0.0.2) sends a burst of BURST
 * distinct unknown tokens at once; as soon as the first of them reach the
 * authorization server, client B (127.0.0.3) presents one new valid token.
 * The scripted introspection endpoint (bench/introspection-server.ts, its own
 * process) answers every call after 50 ms; the gateway (compiled, dist/) runs
 * in its own process with `connections: CONNECTIONS`. Printed as JSON: the
 * legitimate request's status and latency (p50/max over ROUNDS rounds), what
 * the burst got, and how many introspections each round cost.
 *
 *   node --import tsx bench/scanning.ts
 *
 * Environment: SCAN_ROUNDS (default 5), SCAN_BURST (default 300, at least
 * 300), SCAN_CONNECTIONS (default 8), SCAN_TIMEOUT_MS (the gateway's
 * timeout_ms, default 2000), SCAN_MAX_QUEUED_PER_CLIENT (unset: the gateway's
 * default; set high to see the queue order alone), SCAN_GATEWAY_BIN (the
 * gateway's CLI to run, default this checkout's: `npm run bench` passes the
 * BENCH_BASELINE build to compare before/after). Loopback only; bounded in
 * count and time (a watchdog stops everything after 120 s).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool, request } from 'undici';
import { exitOnSignals, freePort, sleep, waitForPort } from './processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.SCAN_ROUNDS ?? 5);
const BURST = Math.max(300, Number(process.env.SCAN_BURST ?? 300));
const CONNECTIONS = Number(process.env.SCAN_CONNECTIONS ?? 8);
const TIMEOUT_MS = Number(process.env.SCAN_TIMEOUT_MS ?? 2000);
/** Unset: the gateway's default. Set high to see the queue order alone, without the per-client cap. */
const PER_CLIENT = process.env.SCAN_MAX_QUEUED_PER_CLIENT;
const GATEWAY_BIN = process.env.SCAN_GATEWAY_BIN || join(ROOT, 'bin/phantom-gateway.js');
const LATENCY_MS = 50;
const FLOODER = '127.0.0.2';
const LEGIT = '127.0.0.3';

const work = mkdtempSync(join(tmpdir(), 'phantom-scan-'));
const children: ChildProcess[] = [];
let upstream: Server | undefined;

function stopAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  upstream?.close();
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', stopAll);
exitOnSignals();
const watchdog = setTimeout(() => {
  process.stderr.write('scanning benchmark: watchdog fired after 120 s\n');
  process.exit(1);
}, 120_000);
watchdog.unref();




function start(args: string[], name: string): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  child.once('exit', (code) => {
    if (code !== 0 && code !== null) process.stderr.write(`${name} exited with ${code}: ${err}\n`);
  });
  children.push(child);
  return child;
}

async function introspections(port: number): Promise<number> {
  const res = await request(`http://127.0.0.1:${port}/stats`);
  return ((await res.body.json()) as { calls: number }).calls;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  try {
    readFileSync(join(ROOT, 'dist/cli.js'));
  } catch {
    process.stderr.write('the scanning benchmark needs the compiled gateway: run npm run build\n');
    process.exit(1);
  }
  const [introPort, gwPort] = [await freePort(), await freePort()];
  upstream = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => upstream!.listen(0, '127.0.0.1', r));
  const upstreamPort = (upstream.address() as { port: number }).port;

  start(['--import', 'tsx', join(ROOT, 'bench/introspection-server.ts'), String(introPort), String(LATENCY_MS)], 'introspection server');
  const config = join(work, 'gateway.yaml');
  writeFileSync(
    config,
    `listen: { host: 127.0.0.1, port: ${gwPort} }
phantom_token:
  introspection_endpoint: http://127.0.0.1:${introPort}/introspect
  client_id: bench
  client_secret: bench-secret
  scope: read
  connections: ${CONNECTIONS}
  timeout_ms: ${TIMEOUT_MS}
${PER_CLIENT === undefined ? '' : `  max_queued_per_client: ${Number(PER_CLIENT)}\n`}routes:
  - path: /
    upstream: http://127.0.0.1:${upstreamPort}
log: { access_log: false, level: error }
`,
  );
  start([GATEWAY_BIN, '--config', config], 'gateway');
  await Promise.all([waitForPort(introPort, 'introspection server'), waitForPort(gwPort, 'gateway')]);

  const origin = `http://127.0.0.1:${gwPort}`;
  const flooder = new Pool(origin, { connections: BURST, localAddress: FLOODER });
  const legit = new Pool(origin, { connections: 1, localAddress: LEGIT });
  const get = async (pool: Pool, token: string): Promise<number> => {
    try {
      const res = await pool.request({ path: '/', method: 'GET', headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      return res.statusCode;
    } catch {
      return 0; // connection-level failure
    }
  };
  // Warm-up: connections and JIT, one cached token.
  await get(legit, 'valid-warm-up');

  const rounds: Array<{ status: number; ms: number; introspections: number; burst: Record<string, number> }> = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const before = await introspections(introPort);
    const burst = Array.from({ length: BURST }, (_, i) => get(flooder, `scan-${round}-${i}`));
    while ((await introspections(introPort)) === before) await sleep(2);
    const t0 = performance.now();
    const status = await get(legit, `valid-scan-${round}-${Date.now()}`);
    const ms = performance.now() - t0;
    const statuses: Record<string, number> = {};
    for (const s of await Promise.all(burst)) statuses[s] = (statuses[s] ?? 0) + 1;
    await sleep(TIMEOUT_MS / 4); // let the authorization server's last answers land
    rounds.push({ status, ms: Math.round(ms * 10) / 10, introspections: (await introspections(introPort)) - before, burst: statuses });
    process.stderr.write(`round ${round}/${ROUNDS}: legitimate token ${status} in ${Math.round(ms)} ms\n`);
  }
  await flooder.close();
  await legit.close();

  const latencies = rounds.map((r) => r.ms);
  process.stdout.write(
    `${JSON.stringify(
      {
        benchmark: 'token scanning: one client bursts distinct garbage tokens, another presents a new valid token',
        settings: {
          rounds: ROUNDS,
          burst: BURST,
          connections: CONNECTIONS,
          timeout_ms: TIMEOUT_MS,
          max_queued_per_client: PER_CLIENT === undefined ? 'default' : Number(PER_CLIENT),
          introspection_latency_ms: LATENCY_MS,
        },
        legitimate: {
          p50_ms: percentile(latencies, 50),
          max_ms: Math.max(...latencies),
          statuses: rounds.map((r) => r.status),
        },
        introspections_per_round: rounds.map((r) => r.introspections),
        burst_statuses_per_round: rounds.map((r) => r.burst),
      },
      null,
      2,
    )}\n`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`scanning benchmark failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
