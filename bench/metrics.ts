/*
 * What Prometheus metrics cost on the cache-hit path: the same gateway
 * configuration with `admin` (metrics on) and without (off), in one run.
 *
 *   - cache hit over HTTP: one token, many requests; req/s and the gateway's
 *     CPU per request (from /proc/<pid>/stat), on against off;
 *   - the cache hit alone, in this process (decide(), no HTTP): ns per call
 *     with the exchange's hit counter against without.
 *
 * Two gateway processes, one scripted introspection endpoint
 * (bench/introspection-server.ts, 5 ms), an NGINX upstream. Subjects
 * alternate round by round; medians are reported. At the end /metrics of
 * the gateway with metrics is scraped and its request count checked against
 * what the load generator sent.
 *
 *   npm run build && node --import tsx bench/metrics.ts [--save]
 *   (npm run bench runs it too; --save writes bench/results/<date>-metrics.json)
 *
 * Environment: as bench/run.ts (BENCH_ROUNDS, BENCH_SECONDS,
 * BENCH_CONNECTIONS, BENCH_QUICK=1). Prints a table on stderr and the results
 * as JSON on stdout.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { parseConfig } from '../src/config/load.js';
import { createGuards } from '../src/core/guards.js';
import { decide, type DecisionRequest } from '../src/core/decide.js';
import { createLogger } from '../src/observability/logger.js';
import { metricsFor, PROXY } from '../src/observability/metrics.js';
import { freePort, median, nginxMainConf, waitForPort, wrkLoad, type Load, Subjects, finishBench } from './processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 2 : 5));
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const INTROSPECTION_LATENCY_MS = 5;
const MICRO_ITERATIONS = QUICK ? 50_000 : 300_000;
const work = mkdtempSync(join(tmpdir(), 'phantom-bench-metrics-'));
const log = (s: string) => process.stderr.write(`${s}\n`);
const subjects = new Subjects(ROOT, [work]);
const start = (cmd: string, args: string[], name: string): ChildProcess => subjects.start(cmd, args, name);
// npm run bench may be stopped with SIGTERM as well as SIGINT: every subject goes with it.
process.on('SIGTERM', () => process.exit(143));

try {
  readFileSync(join(ROOT, 'dist/cli.js'));
} catch {
  log('bench/metrics.ts needs the compiled gateway: run npm run build');
  process.exit(1);
}

type Subject = 'off' | 'on';
const SUBJECTS: Subject[] = ['off', 'on'];

async function main(): Promise<{ summary: Record<string, unknown>; table: string }> {
  const upstreamPort = await freePort();
  const introPort = await freePort();
  const ports: Record<Subject, number> = { off: await freePort(), on: await freePort() };
  const adminPort = await freePort();

  const upstreamConf = nginxMainConf(
    join(work, 'upstream'),
    `server { listen 127.0.0.1:${upstreamPort} backlog=4096; keepalive_requests 1000000; location / { default_type application/json; return 200 '{"ok":true}'; } }`,
  );
  start('nginx', ['-c', upstreamConf, '-p', join(work, 'upstream')], 'upstream nginx');
  start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/introspection-server.ts'), String(introPort), String(INTROSPECTION_LATENCY_MS)], 'introspection server');

  const config = (s: Subject) => {
    const file = join(work, `gateway-${s}.yaml`);
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: ${ports[s]} }
${s === 'on' ? `admin: { listen: { host: 127.0.0.1, port: ${adminPort} } }\n` : ''}phantom_token:
  introspection_endpoint: http://127.0.0.1:${introPort}/introspect
  client_id: bench
  client_secret: bench-secret
  scope: read
  token_cache_seconds: 3600
routes:
  - path: /
    upstream: http://127.0.0.1:${upstreamPort}
cache: { max_entries: 200000 }
log: { access_log: false }
`,
    );
    return file;
  };
  const gateways: Record<Subject, ChildProcess> = {
    off: start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', config('off')], 'gateway (metrics off)'),
    on: start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', config('on')], 'gateway (metrics on)'),
  };
  const urls: Record<Subject, string> = { off: `http://127.0.0.1:${ports.off}/`, on: `http://127.0.0.1:${ports.on}/` };
  await Promise.all([
    waitForPort(upstreamPort, 'upstream nginx'),
    waitForPort(introPort, 'introspection server'),
    waitForPort(ports.off, 'gateway (metrics off)'),
    waitForPort(ports.on, 'gateway (metrics on)'),
    waitForPort(adminPort, 'admin listener'),
  ]);

  // Warm-up: JIT, keep-alive pools, the cached token.
  for (const s of SUBJECTS) {
    const pool = new Pool(urls[s], { connections: 10 });
    for (let i = 0; i < 500; i++) {
      const r = await pool.request({ path: '/', method: 'GET', headers: { authorization: `Bearer valid-${i % 50}` } });
      await r.body.dump();
      if (r.statusCode !== 200) throw new Error(`gateway (metrics ${s}) answered ${r.statusCode} in the warm-up`);
    }
    await pool.close();
    await wrkLoad(urls[s], { connections: CONNECTIONS, seconds: 1, header: 'Authorization: Bearer valid-0' });
  }
  const scrape = async () => {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const m = /^phantom_gateway_requests_total\{[^}]*route="\/",status="200",code=""\} (\d+)$/m.exec(text);
    return Number(m?.[1] ?? NaN);
  };
  const countedBefore = await scrape();

  const hits: Record<Subject, Load[]> = { off: [], on: [] };
  for (let round = 1; round <= ROUNDS; round++) {
    log(`metrics: round ${round}/${ROUNDS}`);
    for (const s of round % 2 === 1 ? SUBJECTS : [...SUBJECTS].reverse()) {
      hits[s].push(await wrkLoad(urls[s], { connections: CONNECTIONS, seconds: SECONDS, pids: [gateways[s].pid!], header: 'Authorization: Bearer valid-0' }));
    }
  }
  // Every request answered is counted once; wrk leaves out those answered after its clock stopped (at most one per connection).
  const counted = (await scrape()) - countedBefore;
  const sent = hits.on.reduce((a, l) => a + l.requests, 0);

  // The cache hit alone, in this process: decide() with and without the exchange's counters.
  log('metrics: cache hit in-process');
  const req: DecisionRequest = { method: 'GET', target: '/items', authorization: ['Bearer valid-0'], preflight: false, clientAddress: '127.0.0.1' };
  const silent = createLogger('error', { write: () => true } as unknown as NodeJS.WritableStream);
  const inProcess = {} as Record<Subject, ReturnType<typeof createGuards>>;
  for (const s of SUBJECTS) {
    const c = parseConfig(readFileSync(join(work, `gateway-${s}.yaml`), 'utf8'), { file: `gateway-${s}.yaml`, env: {} });
    inProcess[s] = createGuards(c, { logger: silent, metrics: metricsFor(c) });
    const first = await decide(inProcess[s], req);
    if (!first.allow) throw new Error(`in-process ${s}: the token was refused`);
  }
  const hitNs: Record<Subject, number> = { off: Infinity, on: Infinity };
  for (let r = 0; r < 6; r++) {
    const s = SUBJECTS[r % 2]!;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < MICRO_ITERATIONS; i++) {
      const v = decide(inProcess[s], req);
      if (v instanceof Promise || !v.allow || v.cache !== 'hit') throw new Error(`in-process ${s}: not a cache hit`);
    }
    hitNs[s] = Math.min(hitNs[s], Math.round(Number(process.hrtime.bigint() - t0) / MICRO_ITERATIONS));
  }
  // The hooks a proxied cache hit runs, alone: request start (in flight), the hit, the upstream
  // latency, the request counted by route (with the route lookup from the path).
  const m = inProcess.on.metrics!;
  const routes = inProcess.on.routeMetrics!;
  const res = { on: () => res };
  let hooksNs = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < MICRO_ITERATIONS; i++) {
      m.started(PROXY, res);
      m.hit();
      routes.upstream(0, 0.0004);
      routes.request(PROXY, inProcess.on.routeIndex('/items'), 200, undefined);
    }
    hooksNs = Math.min(hooksNs, Math.round(Number(process.hrtime.bigint() - t0) / MICRO_ITERATIONS));
  }
  for (const s of SUBJECTS) await inProcess[s].close();
  subjects.stopAll();

  const med = (xs: Load[], k: keyof Load) => median(xs.map((l) => l[k] as number));
  const round2 = (n: number) => Math.round(n * 100) / 100;
  const row = (s: Subject) => ({
    rps: Math.round(med(hits[s], 'rps')),
    p50_ms: med(hits[s], 'p50'),
    p99_ms: med(hits[s], 'p99'),
    cpu_us_per_req: round2(med(hits[s], 'cpuUsPerReq')),
    errors: hits[s].reduce((a, l) => a + l.errors, 0),
  });
  const off = row('off');
  const on = row('on');
  const summary = {
    date: new Date().toISOString(),
    machine: { cpus: availableParallelism(), model: cpus()[0]?.model, node: process.version },
    settings: { rounds: ROUNDS, seconds: SECONDS, connections: CONNECTIONS, introspection_latency_ms: INTROSPECTION_LATENCY_MS },
    metrics_off: off,
    metrics_on: on,
    ratios_on_over_off: { rps: round2(on.rps / off.rps), cpu: round2(on.cpu_us_per_req / off.cpu_us_per_req), added_cpu_us_per_req: round2(on.cpu_us_per_req - off.cpu_us_per_req) },
    requests_counted: { sent, counted },
    cache_hit_in_process_ns: { off: hitNs.off, on: hitNs.on },
    hooks_per_proxied_hit_ns: hooksNs,
  };
  const r = summary.ratios_on_over_off;
  const table = [
    '| gateway | cache hit req/s | p50 ms | p99 ms | CPU µs/req |',
    '|---|---:|---:|---:|---:|',
    `| metrics off (no admin) | ${off.rps} | ${off.p50_ms.toFixed(2)} | ${off.p99_ms.toFixed(2)} | ${off.cpu_us_per_req} |`,
    `| metrics on (admin set) | ${on.rps} | ${on.p50_ms.toFixed(2)} | ${on.p99_ms.toFixed(2)} | ${on.cpu_us_per_req} |`,
    `| on / off | ${r.rps} | | | ${r.cpu} (${r.added_cpu_us_per_req >= 0 ? '+' : ''}${r.added_cpu_us_per_req} µs) |`,
    '',
    `cache hit in-process (decide(), no HTTP, best of 3 x ${MICRO_ITERATIONS}): off ${hitNs.off} ns, on ${hitNs.on} ns`,
    `the hooks of one proxied cache hit alone (in flight, hit, upstream latency, request by route): ${hooksNs} ns`,
    `requests_total after the load: ${counted} counted, ${sent} completed by wrk`,
  ].join('\n');
  return { summary, table };
}

finishBench('metrics', main, () => subjects.stopAll());
