/*
 * The shared Redis cache (cache.redis), in one run:
 *
 *   - cache hit with Redis configured against without: the same token(s)
 *     answered from the in-process cache (L1) by a gateway with `cache.redis`
 *     and by one without; req/s and the gateway's CPU per request, with the
 *     ratio. L1 still answers synchronously, so this must be no regression.
 *   - the L2 hit: an L1 miss answered from Redis. Instance A (`cache.redis`,
 *     a large L1) introspects N distinct tokens and fills Redis; instance B
 *     (the same Redis, `cache.max_entries: 1`, so its L1 misses on nearly
 *     every request) is driven by wrk over the same N tokens. req/s, p50/p99,
 *     CPU per request of B and of redis-server, the Redis commands one
 *     request costs, against the L1 hit and the cold path of the same run;
 *     and both hits again at the cold path's 10 connections, where the
 *     latencies of an L1 hit, an L2 hit and an introspection compare.
 *   - the cold path (every request a new token, introspected), with Redis
 *     and without: what the lock, the write and the publish add to a miss.
 *   - introspections: A's fill must cost N, everything after it none (B
 *     finds every token in Redis).
 *   - where an L2 hit's CPU goes, in this process (no HTTP): the shared
 *     store's lookup (MULTI GET PTTL TIME, open) 50 at a time, the crypto
 *     alone (entry id, open), and node-redis's MULTI alone.
 *
 * Processes: an NGINX upstream, the scripted introspection endpoint
 * (bench/introspection-server.ts, 5 ms), a redis-server of its own (free
 * loopback port, no persistence), three gateways. CPU is read from
 * /proc/<pid>/stat. Subjects alternate round by round; medians are reported.
 * Without redis-server (Debian package redis-server) the run is skipped with
 * the reason, and exits 0.
 *
 *   npm run build && node --import tsx bench/redis.ts [--save]
 *   (npm run bench runs it too; --save writes bench/results/<date>-redis.json)
 *
 * Environment: as bench/run.ts (BENCH_ROUNDS, BENCH_SECONDS,
 * BENCH_CONNECTIONS, BENCH_QUICK=1), and BENCH_REDIS_TOKENS (N, default
 * 2000). Prints a table on stderr and the results as JSON on stdout.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@redis/client';
import { Pool } from 'undici';
import { activeToken } from '../src/cache/entry.js';
import { CacheCrypto } from '../src/cache/redis/crypto.js';
import { RedisSharedCache } from '../src/cache/redis/shared.js';
import { REDIS_DEFAULTS } from '../src/config/schema.js';
import { createLogger } from '../src/observability/logger.js';
import { benchGatewayYaml, cpuTicks, finishBench, freePort, HZ, median, nginxMainConf, sleep, Subjects, waitForPort, wrkLoad, type Load } from './processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 2 : 5));
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const TOKENS = Number(process.env.BENCH_REDIS_TOKENS ?? 2000);
const COLD_CONNECTIONS = 10;
const INTROSPECTION_LATENCY_MS = 5;
const KEY_PREFIX = 'phantom-gateway:';
const MICRO_CALLS = QUICK ? 5000 : 20_000;
const work = mkdtempSync(join(tmpdir(), 'phantom-bench-redis-'));
const log = (s: string) => process.stderr.write(`${s}\n`);
const subjects = new Subjects(ROOT, [work]);
const start = (cmd: string, args: string[], name: string): ChildProcess => subjects.start(cmd, args, name);

try {
  readFileSync(join(ROOT, 'dist/cli.js'));
} catch {
  log('bench/redis.ts needs the compiled gateway: run npm run build');
  process.exit(1);
}

/** redis-server from PATH, else /usr/bin; undefined when neither has it. */
function findRedisServer(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim() !== '') return r.stdout.trim();
  return existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : undefined;
}

function luaScript(name: string, body: string): string {
  const file = join(work, `${name}.lua`);
  writeFileSync(file, body);
  return file;
}

/** A wrk script: every request the next of `count` tokens `<prefix><i>`, round robin (or a never-seen one when count is 0). */
function rotating(name: string, prefix: string, count: number): string {
  const index = count > 0 ? `(n % ${count})` : 'n';
  return luaScript(name, `local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, {["Authorization"] = "Bearer ${prefix}" .. ${index}})\nend\n`);
}

async function stats(port: number): Promise<{ calls: number }> {
  const r = await fetch(`http://127.0.0.1:${port}/stats`);
  return (await r.json()) as { calls: number };
}

/** `count` requests with tokens `<prefix><i>`, 50 at a time (within max_queued_per_client); throws on an answer other than 200. */
async function requestAll(url: string, prefix: string, count: number, what: string): Promise<void> {
  const pool = new Pool(url, { connections: 50 });
  try {
    for (let i = 0; i < count; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, count - i) }, async (_, j) => {
          const r = await pool.request({ path: '/', method: 'GET', headers: { authorization: `Bearer ${prefix}${i + j}` } });
          await r.body.dump();
          if (r.statusCode !== 200) throw new Error(`${what}: ${prefix}${i + j} answered ${r.statusCode}`);
        }),
      );
    }
  } finally {
    await pool.close();
  }
}

type Hit = 'plain' | 'shared';
const HITS: Hit[] = ['plain', 'shared'];
const round2 = (n: number) => Math.round(n * 100) / 100;

interface Run extends Load {
  /** redis-server's CPU per request of the load. */
  redisUsPerReq: number;
  /** Redis commands (INFO commandstats, INFO itself left out) per request, by command. */
  commands: Record<string, number>;
  /** Introspections the endpoint saw per request. */
  introspectionsPerReq: number;
}

async function main(): Promise<{ summary: Record<string, unknown>; table: string }> {
  const redisServer = findRedisServer();
  if (redisServer === undefined) {
    const reason = 'redis-server not found on PATH or in /usr/bin (Debian: apt-get install -y redis-server): the shared-cache scenarios are skipped';
    log(reason);
    subjects.stopAll();
    return { summary: { date: new Date().toISOString(), skipped: reason }, table: `skipped: ${reason}` };
  }
  const redisVersion = /v=(\S+)/.exec(spawnSync(redisServer, ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';

  const upstreamPort = await freePort();
  const introPort = await freePort();
  const redisPort = await freePort();
  const ports = { plain: await freePort(), shared: await freePort(), l2: await freePort() };

  const upstreamConf = nginxMainConf(
    join(work, 'upstream'),
    `server { listen 127.0.0.1:${upstreamPort} backlog=4096; keepalive_requests 1000000; location / { default_type application/json; return 200 '{"ok":true}'; } }`,
  );
  start('nginx', ['-c', upstreamConf, '-p', join(work, 'upstream')], 'upstream nginx');
  start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/introspection-server.ts'), String(introPort), String(INTROSPECTION_LATENCY_MS)], 'introspection server');
  const redis = start(
    redisServer,
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', work, '--daemonize', 'no', '--loglevel', 'warning'],
    'redis-server',
  );

  const secretFile = join(work, 'key-secret');
  writeFileSync(secretFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const config = (name: keyof typeof ports, cache: string) => {
    const file = join(work, `gateway-${name}.yaml`);
    writeFileSync(
      file,
      benchGatewayYaml({ port: ports[name], introPort, upstreamPort, extra: cache }),
    );
    return file;
  };
  const redisBlock = (maxEntries: number) => `cache:
  max_entries: ${maxEntries}
  redis:
    url: redis://127.0.0.1:${redisPort}
    key_secret_file: ${secretFile}
    key_prefix: "${KEY_PREFIX}"
`;
  await waitForPort(redisPort, 'redis-server');
  const gateways = {
    plain: start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', config('plain', `cache: { max_entries: 20000 }\n`)], 'gateway (no redis)'),
    shared: start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', config('shared', redisBlock(20_000))], 'gateway A (redis, L1 20,000)'),
    l2: start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', config('l2', redisBlock(1))], 'gateway B (redis, L1 1)'),
  };
  const urls = { plain: `http://127.0.0.1:${ports.plain}/`, shared: `http://127.0.0.1:${ports.shared}/`, l2: `http://127.0.0.1:${ports.l2}/` };
  await Promise.all([
    waitForPort(upstreamPort, 'upstream nginx'),
    waitForPort(introPort, 'introspection server'),
    waitForPort(ports.plain, 'gateway (no redis)'),
    waitForPort(ports.shared, 'gateway A'),
    waitForPort(ports.l2, 'gateway B'),
  ]);

  const client = createClient({ url: `redis://127.0.0.1:${redisPort}`, socket: { connectTimeout: 2000 } });
  client.on('error', () => {
    // a failed command rejects; the redis-server subject ending stops the run
  });
  await client.connect();
  const commandStats = async (): Promise<Map<string, number>> => {
    const text = String(await client.sendCommand(['INFO', 'commandstats']));
    const out = new Map<string, number>();
    for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (m[1] !== 'info') out.set(m[1]!, Number(m[2]));
    return out;
  };
  const entryKeys = async (): Promise<number> => {
    let n = 0;
    for await (const keys of client.scanIterator({ MATCH: `${KEY_PREFIX}t:*`, COUNT: 1000 })) n += keys.length;
    return n;
  };

  /** One wrk load on `gateway`, with redis-server's CPU, the Redis commands and the introspections it cost. */
  const measure = async (url: string, gateway: ChildProcess, opts: { header?: string; script?: string; connections?: number }): Promise<Run> => {
    const cmdBefore = await commandStats();
    const introBefore = (await stats(introPort)).calls;
    const redisBefore = cpuTicks(redis.pid!);
    const load = await wrkLoad(url, { connections: opts.connections ?? CONNECTIONS, seconds: SECONDS, pids: [gateway.pid!], ...(opts.header ? { header: opts.header } : {}), ...(opts.script ? { script: opts.script } : {}) });
    const redisAfter = cpuTicks(redis.pid!);
    const introAfter = (await stats(introPort)).calls;
    const cmdAfter = await commandStats();
    const per = Math.max(load.requests, 1);
    const commands: Record<string, number> = {};
    for (const [cmd, calls] of cmdAfter) {
      const d = calls - (cmdBefore.get(cmd) ?? 0);
      if (d > 0) commands[cmd] = Math.round((d / per) * 1000) / 1000;
    }
    return { ...load, redisUsPerReq: (((redisAfter - redisBefore) / HZ) * 1e6) / per, commands, introspectionsPerReq: (introAfter - introBefore) / per };
  };

  // A gateway serves before its Redis connection is up (without the shared
  // cache meanwhile): wait until each of A and B writes a probe token's entry.
  const connected = async (url: string, name: string) => {
    for (let k = 0; k < 100; k++) {
      const before = await entryKeys();
      const r = await fetch(url, { headers: { authorization: `Bearer valid-probe-${name}-${k}` } });
      await r.arrayBuffer();
      await sleep(100);
      if ((await entryKeys()) > before) return;
    }
    throw new Error(`gateway ${name} wrote nothing to Redis in 100 tries`);
  };
  await connected(urls.shared, 'a');
  await connected(urls.l2, 'b');

  // Warm-up: the gateway without Redis caches the N tokens (its own introspections).
  log(`redis: warm-up, ${TOKENS} tokens`);
  await requestAll(urls.plain, 'valid-r-', TOKENS, 'gateway (no redis) warm-up');

  // A fills Redis: one introspection per token, and one entry in Redis each.
  const beforeFill = (await stats(introPort)).calls;
  const entriesBefore = await entryKeys();
  await requestAll(urls.shared, 'valid-r-', TOKENS, 'gateway A fill');
  const fillIntrospections = (await stats(introPort)).calls - beforeFill;
  // An instance may write Redis after answering; give it a moment.
  let entries = (await entryKeys()) - entriesBefore;
  for (let i = 0; i < 20 && entries < TOKENS; i++) {
    await sleep(100);
    entries = (await entryKeys()) - entriesBefore;
  }

  // B's warm-up (JIT, keep-alive, its Redis connection): every token found in Redis, not introspected.
  const afterFill = (await stats(introPort)).calls;
  await requestAll(urls.l2, 'valid-r-', TOKENS, 'gateway B warm-up');
  const nScript = rotating('n-tokens', 'valid-r-', TOKENS);
  for (const [name, url] of Object.entries(urls)) {
    await wrkLoad(url, { connections: CONNECTIONS, seconds: 1, ...(name === 'l2' ? { script: nScript } : { header: 'Authorization: Bearer valid-r-0' }) });
  }

  const hit1: Record<Hit, Run[]> = { plain: [], shared: [] };
  const hitN: Record<Hit, Run[]> = { plain: [], shared: [] };
  const cold: Record<Hit, Run[]> = { plain: [], shared: [] };
  const l2: Run[] = [];
  // The same two at the cold path's concurrency, so their latency compares with an introspection's.
  const hitNLow: Run[] = [];
  const l2Low: Run[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    log(`redis: round ${round}/${ROUNDS}`);
    const order = round % 2 === 1 ? HITS : [...HITS].reverse();
    for (const s of order) hit1[s].push(await measure(urls[s], gateways[s], { header: 'Authorization: Bearer valid-r-0' }));
    // The L2 run between the L1 runs over the same tokens, so drift favours neither side.
    hitN[order[0]!].push(await measure(urls[order[0]!], gateways[order[0]!], { script: nScript }));
    l2.push(await measure(urls.l2, gateways.l2, { script: nScript }));
    hitN[order[1]!].push(await measure(urls[order[1]!], gateways[order[1]!], { script: nScript }));
    const low = [
      async () => hitNLow.push(await measure(urls.shared, gateways.shared, { script: nScript, connections: COLD_CONNECTIONS })),
      async () => l2Low.push(await measure(urls.l2, gateways.l2, { script: nScript, connections: COLD_CONNECTIONS })),
    ];
    for (const run of round % 2 === 1 ? low : [...low].reverse()) await run();
  }
  const afterL2 = (await stats(introPort)).calls;
  const introspectionsAfterFill = afterL2 - afterFill;

  // The cold path, last (it adds entries to Redis and to both L1s).
  for (let round = 1; round <= ROUNDS; round++) {
    log(`redis: cold, round ${round}/${ROUNDS}`);
    for (const s of round % 2 === 1 ? HITS : [...HITS].reverse()) {
      cold[s].push(await measure(urls[s], gateways[s], { script: rotating(`cold-${s}-${round}`, `cold-${s}-${round}-`, 0), connections: COLD_CONNECTIONS }));
    }
  }
  log('redis: an L2 lookup in-process');
  const inProcess = await lookupCost(redisPort);
  await client.close();
  subjects.stopAll();

  const row = (runs: Run[]) => ({
    rps: Math.round(median(runs.map((r) => r.rps))),
    p50_ms: median(runs.map((r) => r.p50)),
    p99_ms: median(runs.map((r) => r.p99)),
    cpu_us_per_req: round2(median(runs.map((r) => r.cpuUsPerReq ?? NaN))),
    redis_cpu_us_per_req: round2(median(runs.map((r) => r.redisUsPerReq))),
    redis_commands_per_req: Object.fromEntries([...new Set(runs.flatMap((r) => Object.keys(r.commands)))].sort().map((c) => [c, median(runs.map((r) => r.commands[c] ?? 0))])),
    introspections_per_req: Math.round(median(runs.map((r) => r.introspectionsPerReq)) * 1000) / 1000,
    requests: runs.reduce((a, r) => a + r.requests, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
  });
  type Row = ReturnType<typeof row>;
  const ratio = (a: Row, b: Row) => ({ rps: round2(a.rps / b.rps), cpu: round2(a.cpu_us_per_req / b.cpu_us_per_req), added_cpu_us_per_req: round2(a.cpu_us_per_req - b.cpu_us_per_req), added_p50_ms: round2(a.p50_ms - b.p50_ms) });
  const h1 = { without_redis: row(hit1.plain), with_redis: row(hit1.shared) };
  const hn = { without_redis: row(hitN.plain), with_redis: row(hitN.shared) };
  const c = { without_redis: row(cold.plain), with_redis: row(cold.shared) };
  const l2Row = row(l2);
  const hitNLowRow = row(hitNLow);
  const l2LowRow = row(l2Low);
  const summary = {
    date: new Date().toISOString(),
    machine: { cpus: availableParallelism(), model: cpus()[0]?.model, node: process.version, load_average: loadavg().map((x) => round2(x)) },
    settings: { rounds: ROUNDS, seconds: SECONDS, connections: CONNECTIONS, cold_connections: COLD_CONNECTIONS, tokens: TOKENS, introspection_latency_ms: INTROSPECTION_LATENCY_MS, redis: redisVersion },
    cache_hit_1_token: { ...h1, with_over_without: ratio(h1.with_redis, h1.without_redis) },
    cache_hit_n_tokens: { ...hn, with_over_without: ratio(hn.with_redis, hn.without_redis) },
    l2_hit: { ...l2Row, over_l1_hit: ratio(l2Row, hn.with_redis) },
    // At the cold path's concurrency: latency comparable with an L1 hit and with an introspection.
    at_cold_connections: {
      l1_hit: hitNLowRow,
      l2_hit: l2LowRow,
      l2_over_l1_hit: ratio(l2LowRow, hitNLowRow),
      l2_over_cold_with_redis: ratio(l2LowRow, c.with_redis),
    },
    cold: { ...c, with_over_without: ratio(c.with_redis, c.without_redis) },
    introspections: { tokens: TOKENS, fill_by_a: fillIntrospections, entries_in_redis_after_fill: entries, after_fill: introspectionsAfterFill },
    l2_lookup_in_process_cpu_us: inProcess,
  };

  const line = (name: string, r: Row, withRedis: boolean) =>
    `| ${name} | ${r.rps} | ${r.p50_ms.toFixed(2)} | ${r.p99_ms.toFixed(2)} | ${r.cpu_us_per_req} | ${withRedis ? r.redis_cpu_us_per_req : '—'} | ${withRedis ? Object.entries(r.redis_commands_per_req).map(([k, v]) => `${k} ${v}`).join(', ') || '0' : '—'} | ${r.introspections_per_req} | ${r.errors} |`;
  const sign = (n: number) => `${n >= 0 ? '+' : ''}${n}`;
  const ratioLine = (name: string, r: ReturnType<typeof ratio>) => `| ${name} | ${r.rps} | ${sign(r.added_p50_ms)} | | ${r.cpu} (${sign(r.added_cpu_us_per_req)} µs) | | | | |`;
  const table = [
    '| subject | req/s | p50 ms | p99 ms | gateway CPU µs/req | redis-server CPU µs/req | Redis commands per request | introspections per request | errors |',
    '|---|---:|---:|---:|---:|---:|---|---:|---:|',
    line('L1 hit, 1 token, no cache.redis', h1.without_redis, false),
    line('L1 hit, 1 token, cache.redis', h1.with_redis, true),
    ratioLine('with / without', summary.cache_hit_1_token.with_over_without),
    line(`L1 hit, ${TOKENS} tokens, no cache.redis`, hn.without_redis, false),
    line(`L1 hit, ${TOKENS} tokens, cache.redis`, hn.with_redis, true),
    ratioLine('with / without', summary.cache_hit_n_tokens.with_over_without),
    line(`L2 hit: L1 miss, Redis hit (B, L1 of 1 entry), ${TOKENS} tokens`, l2Row, true),
    ratioLine(`L2 hit / L1 hit (${TOKENS} tokens, cache.redis)`, summary.l2_hit.over_l1_hit),
    line(`cold (new token, ${INTROSPECTION_LATENCY_MS} ms introspection, ${COLD_CONNECTIONS} conns), no cache.redis`, c.without_redis, false),
    line(`cold, ${COLD_CONNECTIONS} conns, cache.redis`, c.with_redis, true),
    ratioLine('with / without', summary.cold.with_over_without),
    line(`L1 hit, ${TOKENS} tokens, ${COLD_CONNECTIONS} conns, cache.redis`, hitNLowRow, true),
    line(`L2 hit, ${TOKENS} tokens, ${COLD_CONNECTIONS} conns`, l2LowRow, true),
    ratioLine(`L2 hit / L1 hit (${COLD_CONNECTIONS} conns)`, summary.at_cold_connections.l2_over_l1_hit),
    ratioLine(`L2 hit / cold with cache.redis (${COLD_CONNECTIONS} conns)`, summary.at_cold_connections.l2_over_cold_with_redis),
    '',
    `an L2 lookup in-process (${MICRO_CALLS} calls, 50 at a time, best of 3, CPU µs per call of this process): the shared store's get ${inProcess.shared_get} ` +
      `= node-redis MULTI GET PTTL TIME ${inProcess.client_multi} (GET alone ${inProcess.client_get}) ` +
      `+ entry id (HMAC) ${inProcess.entry_id} + open (HKDF, AES-256-GCM, JSON) ${inProcess.open} + the rest`,
    `Redis commands per request: INFO commandstats over the run, the commands a script runs (EVAL) included; CPU: /proc/<pid>/stat of the gateway and of redis-server`,
    `introspections: ${fillIntrospections} for A's fill of ${TOKENS} tokens (${entries} entries in Redis after it); ${introspectionsAfterFill} after it (B's warm-up and its ${l2Row.requests + l2LowRow.requests} requests in the L2 runs, the L1-hit runs)`,
  ].join('\n');
  return { summary, table };
}

/**
 * CPU per L2 lookup in this process, on the bench's redis-server (keys under
 * a prefix of their own): the shared store's get() 50 at a time, and its
 * parts: node-redis's MULTI GET PTTL TIME (what the store sends) and a GET alone,
 * the entry id and the opening of a sealed entry. Best of 3.
 */
async function lookupCost(port: number): Promise<Record<string, number>> {
  const url = `redis://127.0.0.1:${port}`;
  const secret = randomBytes(32).toString('hex');
  const prefix = 'bench-in-process:';
  const silent = createLogger('error', { write: () => true } as unknown as NodeJS.WritableStream);
  const store = new RedisSharedCache({ ...REDIS_DEFAULTS, url, key_secret: secret, key_prefix: prefix, verify_ssl: true }, { logger: silent }).retain();
  const crypto = new CacheCrypto(secret);
  // A JWT of the size the scripted endpoint answers (818 bytes), with a sub and a client_id (indexed).
  const entry = activeToken(`Bearer ${'x'.repeat(818)}`, 'read write', Date.now() + 3_600_000, undefined, { clientId: 'bench-client', sub: 'bench-sub' });
  const namespace = 'bench-namespace|';
  const refs = Array.from({ length: MICRO_CALLS }, (_, i) => store.ref(namespace, `valid-in-process-${i}`));
  const deadline = Date.now() + 5000;
  while (store.state !== 'up') {
    if (Date.now() > deadline) throw new Error('the shared store did not connect to the bench redis-server');
    await sleep(20);
  }
  // As the exchange writes: after the read that missed (its Redis time is the answer's version).
  const put = async (r: (typeof refs)[number]) => {
    await store.get(r);
    await store.set(r, entry);
  };
  for (let i = 0; i < refs.length; i += 100) await Promise.all(refs.slice(i, i + 100).map(put));
  const sealed = refs.slice(0, 1000).map((r) => ({ r, value: crypto.seal(r.material, r.key, entry) }));
  const plain = createClient({ url });
  await plain.connect();

  const fifty = async (fn: (i: number) => Promise<unknown>) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < MICRO_CALLS) await fn(next++);
      }),
    );
  };
  const best = async (fn: () => Promise<void> | void, calls = MICRO_CALLS) => {
    let min = Infinity;
    for (let r = 0; r < 3; r++) {
      const t = process.cpuUsage();
      await fn();
      const d = process.cpuUsage(t);
      min = Math.min(min, (d.user + d.system) / calls);
    }
    return round2(min);
  };
  let found = 0;
  const out = {
    shared_get: await best(() =>
      fifty(async (i) => {
        if ((await store.get(refs[i]!)) !== undefined) found++;
      }),
    ),
    client_multi: await best(() => fifty((i) => plain.multi().get(refs[i]!.key).pTTL(refs[i]!.key).time().exec())),
    client_get: await best(() => fifty((i) => plain.get(refs[i]!.key))),
    entry_id: await best(() => {
      for (let i = 0; i < MICRO_CALLS; i++) crypto.entryId(refs[i]!.material);
    }),
    open: await best(() => {
      for (let i = 0; i < MICRO_CALLS; i++) {
        const s = sealed[i % sealed.length]!;
        if (crypto.open(s.r.material, s.r.key, s.value) === undefined) throw new Error('in-process: a sealed entry did not open');
      }
    }),
  };
  if (found !== 3 * MICRO_CALLS) throw new Error(`in-process: ${3 * MICRO_CALLS - found} lookups of ${3 * MICRO_CALLS} missed`);
  await Promise.all([plain.close(), store.release()]);
  return out;
}

finishBench('redis', main, () => subjects.stopAll());
