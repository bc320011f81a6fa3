/*
 * npm run bench: the gateway against NGINX on this machine, in one run.
 *
 * Every subject is its own process (upstream NGINX, proxy NGINX, the gateway,
 * a scripted introspection endpoint with a fixed latency), load comes from
 * wrk (and autocannon for fixed-rate latency), and CPU per request is read
 * from /proc/<pid>/stat of the proxy process only. Subjects alternate round
 * by round and medians are reported, because shared machines are noisy.
 *
 * Then bench/nginx-forward-auth.ts: NGINX with the generated configuration
 * in front of the forward-auth listener, against plain NGINX and Curity's plugin;
 * and bench/dialects.ts: the json dialect (introspect, mint, sign) against the
 * jwt dialect, cache hit and cold path (alone: node --import tsx bench/dialects.ts --save);
 * and bench/redis.ts: the shared Redis cache, L1 hit with and without it, the
 * L2 hit (an L1 miss found in Redis), the cold path (alone: node --import tsx bench/redis.ts --save);
 * and bench/dpop.ts: what a DPoP proof costs, per algorithm in-process and as
 * a DPoP cache hit against a Bearer cache hit over HTTP (alone: node --import tsx bench/dpop.ts --save).
 *
 * Environment: BENCH_ROUNDS (default 3), BENCH_SECONDS (default 5),
 * BENCH_CONNECTIONS (default 50), BENCH_QUICK=1 (1 round of 2 s, for a smoke run),
 * BENCH_BASELINE=<git ref> (also runs the gateway built from that commit, in
 * the same rounds, so a change is compared before/after on one machine state).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { benchGatewayYaml, exitOnSignals, freePort, median, nginxMainConf, runChild, waitForPort, wrkLoad, type Load } from './processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 2 : 5));
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const BASELINE = process.env.BENCH_BASELINE || undefined;
const INTROSPECTION_LATENCY_MS = 5;
const MEMORY_HEAP_CAP_MIB = 320;
const work = mkdtempSync(join(tmpdir(), 'phantom-bench-'));
const children: ChildProcess[] = [];

// ---------------------------------------------------------------- prerequisites

function need(cmd: string, pkg: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? undefined : pkg;
}
const missing = [need('nginx', 'nginx'), need('wrk', 'wrk')].filter(Boolean);
if (missing.length > 0) {
  process.stderr.write(`npm run bench needs these Debian packages: ${missing.join(' ')}\n  apt-get install -y ${missing.join(' ')}\n`);
  process.exit(1);
}
/** Debian's nginx has it; a custom build may not, and then the cold path has no NGINX reference. */
const hasAuthRequest = /http_auth_request_module/.test(spawnSync('nginx', ['-V'], { encoding: 'utf8' }).stderr ?? '');
try {
  readFileSync(join(ROOT, 'dist/cli.js'));
} catch {
  process.stderr.write('npm run bench needs the compiled gateway: run npm run build (npm ci does it)\n');
  process.exit(1);
}

/**
 * The gateway as it was at `ref`: its tree extracted with `git archive` into
 * the work folder, sharing this checkout's node_modules, and compiled there.
 * Returns the path of its CLI.
 */
function buildBaseline(ref: string): string {
  const dir = join(work, 'baseline');
  mkdirSync(dir);
  const tar = spawnSync('git', ['-C', ROOT, 'archive', '--format=tar', ref], { maxBuffer: 512 * 1024 * 1024 });
  if (tar.status !== 0) throw new Error(`BENCH_BASELINE: git archive ${ref} failed: ${tar.stderr.toString().trim()}`);
  const x = spawnSync('tar', ['-x', '-C', dir], { input: tar.stdout });
  if (x.status !== 0) throw new Error(`BENCH_BASELINE: extracting ${ref} failed`);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.build.json')], { encoding: 'utf8' });
  if (tsc.status !== 0) throw new Error(`BENCH_BASELINE: building ${ref} failed: ${tsc.stdout}${tsc.stderr}`);
  return join(dir, 'bin/phantom-gateway.js');
}

// ---------------------------------------------------------------- processes



function start(cmd: string, args: string[], name: string): ChildProcess {
  // Its own process group, so that stopping it stops what it started too
  // (NGINX workers, cluster workers): a SIGKILLed NGINX master leaves its
  // workers running, holding their ports and skewing the next run.
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT, detached: true });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  child.once('exit', (code) => {
    if (code !== 0 && code !== null && !stopping) process.stderr.write(`${name} exited with ${code}: ${err}\n`);
  });
  children.push(child);
  return child;
}

let stopping = false;
function stopAll(): void {
  stopping = true;
  for (const c of children) {
    if (c.pid === undefined) continue;
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', stopAll);
exitOnSignals();

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

// ---------------------------------------------------------------- load

function nginxConf(dir: string, body: string): string {
  return nginxMainConf(dir, body);
}

function wrk(url: string, opts: { pid?: number; header?: string; script?: string; connections?: number; seconds?: number }): Promise<Load> {
  return wrkLoad(url, {
    connections: opts.connections ?? CONNECTIONS,
    seconds: opts.seconds ?? SECONDS,
    ...(opts.pid ? { pids: [opts.pid] } : {}),
    ...(opts.header ? { header: opts.header } : {}),
    ...(opts.script ? { script: opts.script } : {}),
    // Refusals are the point of these two loads.
    expectRefusals: opts.header?.includes('garbage') === true || opts.script?.includes('invalid') === true,
  });
}

function luaScript(name: string, body: string): string {
  const file = join(work, `${name}.lua`);
  writeFileSync(file, body);
  return file;
}

async function autocannonP99(url: string, header: string | undefined, rate: number): Promise<number> {
  const args = [join(ROOT, 'node_modules/autocannon/autocannon.js'), '-c', '50', '-R', String(rate), '-d', String(SECONDS), '-j'];
  if (header) args.push('-H', header.replace(': ', '='));
  args.push(url);
  const out = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const result = JSON.parse(out.stdout) as { latency: { p99: number; p50: number } };
  return result.latency.p99;
}

async function stats(port: number): Promise<{ calls: number; connections: number }> {
  const r = await fetch(`http://127.0.0.1:${port}/stats`);
  return (await r.json()) as { calls: number; connections: number };
}


// ---------------------------------------------------------------- subjects

async function main(): Promise<void> {
  const upstreamPort = await freePort();
  const nginxPort = await freePort();
  const introPort = await freePort();
  const gwPort = await freePort();

  const body = '{"message":"hello from the upstream API","ok":true}';
  const upstreamConf = nginxConf(join(work, 'upstream'), `server { listen 127.0.0.1:${upstreamPort} backlog=4096; keepalive_requests 1000000; location / { default_type application/json; return 200 '${body}'; } }`);
  const proxyConf = nginxConf(
    join(work, 'proxy'),
    `upstream api { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:${nginxPort} backlog=4096; keepalive_requests 1000000;
    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
  );
  start('nginx', ['-c', upstreamConf, '-p', join(work, 'upstream')], 'upstream nginx');
  const nginx = start('nginx', ['-c', proxyConf, '-p', join(work, 'proxy')], 'proxy nginx');
  // The cold path's reference: NGINX making the same two calls per request
  // (auth_request to the introspection endpoint, then proxy_pass), so what
  // this machine charges for two extra loopback hops can be told apart from
  // what the gateway adds. Not a phantom token implementation: it forwards
  // nothing from the answer.
  const authPort = hasAuthRequest ? await freePort() : undefined;
  if (authPort !== undefined) {
    const authConf = nginxConf(
      join(work, 'auth'),
      `upstream api { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 1000000; }
  upstream as { server 127.0.0.1:${introPort}; keepalive 32; keepalive_requests 1000000; }
  map $http_authorization $token { "~^Bearer (?<t>.+)$" $t; default ""; }
  server { listen 127.0.0.1:${authPort} backlog=4096; keepalive_requests 1000000;
    location = /_introspect { internal; proxy_pass http://as/introspect; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_method POST; proxy_pass_request_body off; proxy_set_header Content-Type application/x-www-form-urlencoded;
      proxy_set_header Accept application/jwt; proxy_set_body "token=$token"; }
    location / { auth_request /_introspect; proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
    );
    start('nginx', ['-c', authConf, '-p', join(work, 'auth')], 'auth_request nginx');
  }
  start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/introspection-server.ts'), String(introPort), String(INTROSPECTION_LATENCY_MS)], 'introspection server');

  const gwConfig = (port: number, extra = '') => {
    const file = join(work, `gateway-${port}.yaml`);
    writeFileSync(
      file,
      benchGatewayYaml({ port, introPort, upstreamPort, extra }),
    );
    return file;
  };
  const gateway = start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', gwConfig(gwPort, 'cache: { max_entries: 20000 }')], 'gateway');
  const floorPort = await freePort();
  const floor = start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/node-floor.ts'), String(floorPort), String(upstreamPort)], 'node floor');
  const baselineBin = BASELINE === undefined ? undefined : buildBaseline(BASELINE);
  const basePort = BASELINE === undefined ? undefined : await freePort();
  const baseline =
    basePort === undefined ? undefined : start(process.execPath, [baselineBin!, '--config', gwConfig(basePort, 'cache: { max_entries: 20000 }')], `gateway at ${BASELINE}`);
  const gwAutoPort = await freePort();
  const gatewayAuto = start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', gwConfig(gwAutoPort, 'workers: auto')], 'gateway (workers: auto)');

  if (authPort !== undefined) await waitForPort(authPort, 'auth_request nginx');
  if (basePort !== undefined) await waitForPort(basePort, `gateway at ${BASELINE}`);
  await Promise.all([waitForPort(upstreamPort, 'upstream nginx'), waitForPort(nginxPort, 'nginx'), waitForPort(introPort, 'introspection server'), waitForPort(gwPort, 'gateway'), waitForPort(gwAutoPort, 'gateway (workers: auto)'), waitForPort(floorPort, 'node floor')]);

  const direct = `http://127.0.0.1:${upstreamPort}/`;
  const viaNginx = `http://127.0.0.1:${nginxPort}/`;
  const viaGw = `http://127.0.0.1:${gwPort}/`;
  const viaGwAuto = `http://127.0.0.1:${gwAutoPort}/`;
  const viaBase = basePort === undefined ? undefined : `http://127.0.0.1:${basePort}/`;

  // Warm-up: JIT, keep-alive pools, and the 10,000 cached tokens.
  const tenK = Array.from({ length: 10_000 }, (_, i) => `valid-${i}`);
  for (const url of viaBase === undefined ? [viaGw] : [viaGw, viaBase]) {
    const warm = new Pool(url, { connections: 50 });
    for (let i = 0; i < tenK.length; i += 50) {
      await Promise.all(tenK.slice(i, i + 50).map((t) => warm.request({ path: '/', method: 'GET', headers: { authorization: `Bearer ${t}` } }).then((r) => r.body.dump())));
    }
    await warm.close();
    await wrk(url, { seconds: 1, header: 'Authorization: Bearer valid-0' });
  }
  await wrk(viaNginx, { seconds: 1 });
  await wrk(viaGwAuto, { seconds: 2, header: 'Authorization: Bearer valid-0' });
  await wrk(`http://127.0.0.1:${floorPort}/`, { seconds: 1 });

  const tenKScript = luaScript('tenk', `local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, {["Authorization"] = "Bearer valid-" .. (n % 10000)})\nend\n`);
  const invalidScript = luaScript('invalid', `local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, {["Authorization"] = "Bearer inactive-" .. (n % 100)})\nend\n`);

  const results: Record<string, Load[]> = {};
  const record = (name: string, l: Load) => (results[name] ??= []).push(l);
  const cold: { p50: number; callsPerToken: number; connections: number; cpu: number | undefined }[] = [];
  const endpointP50: number[] = [];
  const nginxColdP50: number[] = [];

  for (let round = 1; round <= ROUNDS; round++) {
    process.stderr.write(`round ${round}/${ROUNDS}\n`);
    record('direct', await wrk(direct, {}));
    record('nginx', await wrk(viaNginx, { pid: nginx.pid! }));
    record('node floor: bare node:http + undici', await wrk(`http://127.0.0.1:${floorPort}/`, { pid: floor.pid! }));
    // The baseline (BENCH_BASELINE) runs right before or right after the
    // current gateway, alternating by round, so drift favours neither.
    const hits = [
      async () => {
        record('gateway: cache hit, 1 token', await wrk(viaGw, { pid: gateway.pid!, header: 'Authorization: Bearer valid-0' }));
        record('gateway: cache hit, 10,000 tokens', await wrk(viaGw, { pid: gateway.pid!, script: tenKScript }));
      },
    ];
    if (viaBase !== undefined) {
      const base = async () => {
        record('baseline gateway: cache hit, 1 token', await wrk(viaBase, { pid: baseline!.pid!, header: 'Authorization: Bearer valid-0' }));
        record('baseline gateway: cache hit, 10,000 tokens', await wrk(viaBase, { pid: baseline!.pid!, script: tenKScript }));
      };
      if (round % 2 === 1) hits.push(base);
      else hits.unshift(base);
    }
    for (const run of hits) await run();
    record('nginx', await wrk(viaNginx, { pid: nginx.pid! }));
    record('gateway: garbage tokens', await wrk(viaGw, { pid: gateway.pid!, header: 'Authorization: Bearer garbage!token' }));
    record('gateway: inactive tokens', await wrk(viaGw, { pid: gateway.pid!, script: invalidScript }));
    record(`gateway: cache hit, workers: auto (${availableParallelism()})`, await wrk(viaGwAuto, { pid: gatewayAuto.pid!, header: 'Authorization: Bearer valid-0' }));

    // Cold: every request a token never seen before. Few connections, so the
    // latency measured is the gateway's and the 5 ms endpoint's, not a queue.
    const before = await stats(introPort);
    const coldScript = luaScript(`cold-${round}`, `local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, {["Authorization"] = "Bearer cold-${round}-" .. n})\nend\n`);
    const c = await wrk(viaGw, { pid: gateway.pid!, script: coldScript, connections: 10 });
    const after = await stats(introPort);
    cold.push({ p50: c.p50, callsPerToken: (after.calls - before.calls) / c.requests, connections: after.connections - before.connections, cpu: c.cpuUsPerReq });
    record('gateway: cold (5 ms introspection)', c);
    // The scripted endpoint's own latency at the same concurrency (its 5 ms
    // timer overshoots), so the gateway's share can be told apart.
    const endpointScript = luaScript(`direct-${round}`, `local n = 0\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, nil, "token=cold-direct-${round}-" .. n)\nend\n`);
    endpointP50.push((await wrk(`http://127.0.0.1:${introPort}/introspect`, { script: endpointScript, connections: 10 })).p50);
    if (authPort !== undefined) {
      const authScript = luaScript(`auth-${round}`, `local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, {["Authorization"] = "Bearer cold-nginx-${round}-" .. n})\nend\n`);
      nginxColdP50.push((await wrk(`http://127.0.0.1:${authPort}/`, { script: authScript, connections: 10 })).p50);
    }
  }

  // Single-flight: 100 concurrent requests for each of 20 new tokens.
  const sfBefore = await stats(introPort);
  const pool = new Pool(viaGw, { connections: 100 });
  for (let t = 0; t < 20; t++) {
    await Promise.all(Array.from({ length: 100 }, () => pool.request({ path: '/', method: 'GET', headers: { authorization: `Bearer cold-sf-${t}` } }).then((r) => r.body.dump())));
  }
  await pool.close();
  const sfAfter = await stats(introPort);
  const singleFlight = (sfAfter.calls - sfBefore.calls) / 20;

  // Fixed-rate latency.
  const rate = 5000;
  const p99Nginx = median([await autocannonP99(viaNginx, undefined, rate), await autocannonP99(viaNginx, undefined, rate)]);
  const p99Gw = median([await autocannonP99(viaGw, 'Authorization: Bearer valid-0', rate), await autocannonP99(viaGw, 'Authorization: Bearer valid-0', rate)]);

  // Memory: a fresh gateway, 100,000 tokens with ~800-byte JWTs, then a flood
  // of 200,000 more distinct tokens against the bound.
  const memPort = await freePort();
  // With a heap cap, as in production: V8 otherwise lets garbage pile up on a
  // large machine, and RSS says little. Had the cache bound failed, the flood
  // below would crash this process (out of memory) instead of completing.
  const memGw = start(process.execPath, [`--max-old-space-size=${MEMORY_HEAP_CAP_MIB}`, join(ROOT, 'bin/phantom-gateway.js'), '--config', gwConfig(memPort, 'cache: { max_entries: 100000 }')], 'gateway (memory)');
  await waitForPort(memPort, 'gateway (memory)');
  const memPool = new Pool(`http://127.0.0.1:${memPort}`, { connections: 60 });
  // 60 at a time from one address: within what the gateway lets one client
  // have running and waiting (connections + max_queued_per_client), so every
  // token is introspected and cached rather than refused with 429.
  let refusedFills = 0;
  const fill = async (prefix: string, n: number) => {
    for (let i = 0; i < n; i += 60) {
      await Promise.all(
        Array.from({ length: Math.min(60, n - i) }, (_, j) =>
          memPool.request({ path: '/', method: 'GET', headers: { authorization: `Bearer mem-${prefix}-${i + j}` } }).then((r) => {
            if (r.statusCode !== 200) refusedFills++;
            return r.body.dump();
          }),
        ),
      );
    }
  };
  await fill('warm', 1000);
  const rssBase = rssMiB(memGw.pid!);
  await fill('a', 100_000);
  const rss100k = rssMiB(memGw.pid!);
  await fill('b', 200_000);
  const rssFlood = rssMiB(memGw.pid!);
  await memPool.close();
  const survived = memGw.exitCode === null;

  // Token scanning (bench/scanning.ts, its own processes): a legitimate new
  // token's latency while another client bursts 300 garbage tokens; for the
  // baseline too when there is one.
  const scanning = async (bin: string): Promise<unknown> => {
    const r = await runChild(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/scanning.ts')], {
      cwd: ROOT,
      env: { ...process.env, SCAN_GATEWAY_BIN: bin, SCAN_ROUNDS: String(QUICK ? 2 : 5) },
      timeoutMs: 180_000,
    });
    if (r.status !== 0) throw new Error(`bench/scanning.ts failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as unknown;
  };
  process.stderr.write('token scanning\n');
  const scan = (await scanning(join(ROOT, 'bin/phantom-gateway.js'))) as { legitimate: { p50_ms: number; max_ms: number; statuses: number[] }; introspections_per_round: number[] };
  const scanBase = baselineBin === undefined ? undefined : ((await scanning(baselineBin)) as typeof scan);

  // NGINX in front with the forward-auth listener (bench/nginx-forward-auth.ts,
  // its own processes, after the subjects above have stopped loading the machine).
  process.stderr.write('nginx + forward-auth\n');
  const nfa = await runChild(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/nginx-forward-auth.ts')], { cwd: ROOT, timeoutMs: 900_000 });
  if (nfa.status !== 0) throw new Error(`bench/nginx-forward-auth.ts failed: ${nfa.stderr}`);
  const nginxForwardAuth = JSON.parse(nfa.stdout) as { table: string; curity: string };

  // The json dialect (introspect, mint, sign) against the jwt dialect
  // (bench/dialects.ts, its own processes): cache hit and cold path.
  process.stderr.write('dialects: json against jwt\n');
  const dia = await runChild(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/dialects.ts')], { cwd: ROOT, timeoutMs: 600_000 });
  if (dia.status !== 0) throw new Error(`bench/dialects.ts failed: ${dia.stderr}`);
  const dialects = JSON.parse(dia.stdout) as { table: string };
  // The shared Redis cache (bench/redis.ts, its own processes and redis-server): L1 hit with and without cache.redis, the L2 hit, the cold path.
  process.stderr.write('redis: the shared cache\n');
  const rds = await runChild(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/redis.ts')], { cwd: ROOT, timeoutMs: 900_000 });
  if (rds.status !== 0) throw new Error(`bench/redis.ts failed: ${rds.stderr}`);
  const redis = JSON.parse(rds.stdout) as { table: string };
  // DPoP (bench/dpop.ts, its own processes and load generator): the proof's cost per algorithm, a DPoP cache hit against a Bearer one.
  process.stderr.write('dpop: what a proof costs\n');
  const dp = await runChild(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/dpop.ts')], { cwd: ROOT, timeoutMs: 900_000 });
  if (dp.status !== 0) throw new Error(`bench/dpop.ts failed: ${dp.stderr}`);
  const dpop = JSON.parse(dp.stdout) as { table: string };
  // Metrics on against off, cache hit (bench/metrics.ts, its own processes; its table on stderr, its results in bench/results/).
  process.stderr.write(`metrics: on against off\n${spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/metrics.ts'), '--save'], { cwd: ROOT, encoding: 'utf8', env: process.env, timeout: 600_000 }).stderr}`);

  // ------------------------------------------------------------ report
  const m = (name: string, k: keyof Load) => median(results[name]!.map((l) => l[k] as number));
  const nginxRps = m('nginx', 'rps');
  const nginxCpu = m('nginx', 'cpuUsPerReq');
  const rows = Object.keys(results).map((name) => ({
    subject: name,
    rps: Math.round(m(name, 'rps')),
    p50_ms: m(name, 'p50'),
    p99_ms: m(name, 'p99'),
    cpu_us_per_req: name === 'direct' ? null : Math.round(m(name, 'cpuUsPerReq') * 10) / 10,
    rps_vs_nginx: /^(gateway|node|baseline)/.test(name) ? Math.round((m(name, 'rps') / nginxRps) * 100) / 100 : null,
    cpu_vs_nginx: /^(gateway|node|baseline)/.test(name) ? Math.round((m(name, 'cpuUsPerReq') / nginxCpu) * 100) / 100 : null,
    errors: results[name]!.reduce((a, l) => a + l.errors, 0),
  }));
  // The same subject before (BENCH_BASELINE) and after: ratios of the medians.
  const vsBaseline =
    viaBase === undefined
      ? null
      : {
          ref: BASELINE,
          commit: spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', BASELINE!], { encoding: 'utf8' }).stdout.trim(),
          ...Object.fromEntries(
            ['cache hit, 1 token', 'cache hit, 10,000 tokens'].map((k) => [
              k,
              {
                rps_ratio: Math.round((m(`gateway: ${k}`, 'rps') / m(`baseline gateway: ${k}`, 'rps')) * 100) / 100,
                cpu_ratio: Math.round((m(`gateway: ${k}`, 'cpuUsPerReq') / m(`baseline gateway: ${k}`, 'cpuUsPerReq')) * 100) / 100,
              },
            ]),
          ),
        };
  const coldP50 = median(cold.map((c) => c.p50));
  const endpointP50Median = median(endpointP50);
  const summary = {
    date: new Date().toISOString(),
    machine: { cpus: availableParallelism(), model: cpus()[0]?.model, memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version },
    settings: { rounds: ROUNDS, seconds: SECONDS, connections: CONNECTIONS, introspection_latency_ms: INTROSPECTION_LATENCY_MS },
    rows,
    vs_baseline: vsBaseline,
    cold: {
      p50_ms: coldP50,
      endpoint_p50_ms: endpointP50Median,
      added_p50_ms: Math.round((coldP50 - endpointP50Median) * 100) / 100,
      nginx_auth_request_p50_ms: nginxColdP50.length > 0 ? median(nginxColdP50) : null,
      nginx_auth_request_added_p50_ms: nginxColdP50.length > 0 ? Math.round((median(nginxColdP50) - endpointP50Median) * 100) / 100 : null,
      introspections_per_distinct_token: median(cold.map((c) => c.callsPerToken)),
      new_connections_to_authorization_server: cold.reduce((a, c) => a + c.connections, 0),
    },
    single_flight: { concurrent_requests_per_token: 100, introspections_per_token: singleFlight },
    fixed_rate: { rate, p99_ms_nginx: p99Nginx, p99_ms_gateway: p99Gw, ratio: Math.round((p99Gw / p99Nginx) * 100) / 100 },
    memory: {
      rss_base_mib: Math.round(rssBase),
      rss_after_100k_tokens_mib: Math.round(rss100k),
      added_by_100k_tokens_mib: Math.round(rss100k - rssBase),
      rss_after_200k_more_distinct_tokens_mib: Math.round(rssFlood),
      heap_cap_mib: MEMORY_HEAP_CAP_MIB,
      survived_flood: survived,
      requests_not_answered_200: refusedFills,
    },
    token_scanning: { gateway: scan, baseline: scanBase ?? null },
    nginx_forward_auth: nginxForwardAuth,
    dialects,
    redis,
    dpop,
  };

  const pad = (s: string, n: number) => s.padEnd(n);
  const lines = [
    `| subject | req/s | p50 ms | p99 ms | CPU µs/req | req/s vs nginx | CPU vs nginx |`,
    `|---|---:|---:|---:|---:|---:|---:|`,
    ...rows.map((r) => `| ${pad(r.subject, 36)} | ${r.rps} | ${r.p50_ms.toFixed(2)} | ${r.p99_ms.toFixed(2)} | ${r.cpu_us_per_req ?? '—'} | ${r.rps_vs_nginx ?? '—'} | ${r.cpu_vs_nginx ?? '—'} |`),
  ];
  process.stdout.write(`\n${lines.join('\n')}\n\n`);
  if (vsBaseline !== null) process.stdout.write(`against ${BASELINE} (${vsBaseline.commit}), same rounds: ${JSON.stringify(vsBaseline)}\n`);
  process.stdout.write(
    `cold path: p50 ${coldP50.toFixed(2)} ms = introspection endpoint alone ${endpointP50Median.toFixed(2)} ms (set to ${INTROSPECTION_LATENCY_MS} ms) + gateway ${summary.cold.added_p50_ms} ms; ` +
      (summary.cold.nginx_auth_request_added_p50_ms !== null
        ? `(NGINX making the same two calls with auth_request: +${summary.cold.nginx_auth_request_added_p50_ms} ms); `
        : '(no NGINX auth_request reference: this nginx lacks the module); ') +
      `${summary.cold.introspections_per_distinct_token.toFixed(3)} introspections per distinct token; ` +
      `${summary.cold.new_connections_to_authorization_server} new connections to the authorization server over ${cold.length} cold runs\n` +
      `single-flight: 100 concurrent requests per new token -> ${singleFlight} introspection(s) per token\n` +
      `fixed rate ${rate} req/s: p99 nginx ${p99Nginx.toFixed(2)} ms, gateway ${p99Gw.toFixed(2)} ms (${summary.fixed_rate.ratio}x)\n` +
      `memory (--max-old-space-size=${MEMORY_HEAP_CAP_MIB}): +${summary.memory.added_by_100k_tokens_mib} MiB RSS for 100,000 cached tokens; ` +
      `${summary.memory.rss_after_200k_more_distinct_tokens_mib} MiB after 200,000 more distinct tokens (bound 100,000 entries)${survived ? '' : ' -- THE GATEWAY DIED'}` +
      `${refusedFills > 0 ? ` (${refusedFills} fill requests not answered 200)` : ''}\n` +
      `token scanning (300 garbage tokens from one client, 50 ms introspection): a new valid token from another client took p50 ${scan.legitimate.p50_ms} ms, max ${scan.legitimate.max_ms} ms, statuses ${scan.legitimate.statuses.join(' ')}; introspections per burst ${scan.introspections_per_round.join(' ')}` +
      (scanBase === undefined ? '' : `; baseline: p50 ${scanBase.legitimate.p50_ms} ms, max ${scanBase.legitimate.max_ms} ms, statuses ${scanBase.legitimate.statuses.join(' ')}, introspections ${scanBase.introspections_per_round.join(' ')}`) +
      '\n',
  );
  process.stdout.write(`\nNGINX in front, decisions from the forward-auth listener (cache hit, one NGINX worker each; CPU = NGINX + listener; Curity's plugin: ${nginxForwardAuth.curity}):\n\n${nginxForwardAuth.table}\n\n`);
  process.stdout.write(`introspection_response json (mint + sign) against jwt, same run:\n\n${dialects.table}\n\n`);
  process.stdout.write(`the shared Redis cache (cache.redis), same run:\n\n${redis.table}\n\n`);
  process.stdout.write(`DPoP (RFC 9449), same run:\n\n${dpop.table}\n\n`);
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  const out = join(ROOT, 'bench/results', `${summary.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, `${JSON.stringify(summary, null, 2)}\n`);
  process.stdout.write(`results: ${out}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
