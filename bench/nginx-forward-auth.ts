/*
 * NGINX in front, the decision in TypeScript: cache hits side by side, one
 * NGINX worker each, in one run.
 *
 *   - plain NGINX proxy_pass (the floor);
 *   - NGINX + the forward-auth listener with the configuration
 *     `phantom-gateway nginx-conf` generates (decisions in proxy_cache), and
 *     variants of its tuning (cache directory on tmpfs or on disk, without
 *     open_file_cache);
 *   - the same without the decision cache (every request asks the listener);
 *   - Curity's OpenResty plugin on Debian NGINX + the Lua module
 *     (../shared/anchors/curity-lua, a measuring stick only: skipped with a
 *     message when its packages or its kit are missing);
 *   - the gateway's own proxy.
 *
 * Every subject is its own process(es); CPU per request is read from
 * /proc/<pid>/stat of the NGINX master and its worker, plus the forward-auth
 * listener's process where it takes part. The connections between NGINX and
 * the listener are counted from /proc/net/tcp during each run (keep-alive
 * keeps them few). Subjects alternate round by round; medians are reported.
 *
 *   node --import tsx bench/nginx-forward-auth.ts   (npm run bench runs it too)
 *
 * Environment: as bench/run.ts (BENCH_ROUNDS, BENCH_SECONDS, BENCH_CONNECTIONS,
 * BENCH_QUICK=1), and CURITY_LUA_DIR (default ../shared/anchors/curity-lua
 * next to this checkout's parent, or /work/shared/anchors/curity-lua).
 * Prints a table on stderr and the results as JSON on stdout.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, median, nginxMainConf, waitForPort, wrkLoad, type Load, Subjects } from './processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 2 : 5));
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const CURITY = [process.env.CURITY_LUA_DIR, resolve(ROOT, '../../shared/anchors/curity-lua'), '/work/shared/anchors/curity-lua'].find(
  (d): d is string => d !== undefined && existsSync(join(d, 'nginx.conf.template')),
);
const MODULES = '/usr/lib/nginx/modules';
const work = mkdtempSync(join(tmpdir(), 'phantom-bench-nginx-'));
// The decision cache on tmpfs, as the README recommends; a variant keeps it on disk (the work dir).
const shm = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/phantom-bench-nginx-') : undefined;
// NGINX's worker runs as another user when the bench runs as root: it must reach the cache directories.
chmodSync(work, 0o755);
if (shm) chmodSync(shm, 0o755);
const log = (s: string) => process.stderr.write(`${s}\n`);
const subjects = new Subjects(ROOT, shm ? [work, shm] : [work]);
const start = (cmd: string, args: string[], name: string): ChildProcess => subjects.start(cmd, args, name);

/** Whether Curity's plugin can run here: its kit, Debian's Lua module and Lua libraries. */
function curityMissing(): string | undefined {
  if (CURITY === undefined) return 'the curity-lua kit (../shared/anchors/curity-lua) is not there';
  const need = [`${MODULES}/ndk_http_module.so`, `${MODULES}/ngx_http_lua_module.so`, '/usr/share/lua/5.1/resty/core.lua', '/usr/share/lua/5.1/resty/lrucache.lua'];
  const missing = need.filter((f) => !existsSync(f));
  return missing.length === 0 ? undefined : `missing ${missing.join(', ')} (run ${CURITY}/setup.sh)`;
}

/** ESTABLISHED TCP connections whose local port is `port`, by the peer's port. */
function connectionsTo(port: number): Set<string> {
  const out = new Set<string>();
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4 || cols[3] !== '01') continue;
      if (cols[1]!.endsWith(`:${hex}`)) out.add(cols[2]!);
    }
  }
  return out;
}

interface Row extends Load {
  /** Connections to the forward-auth listener opened during the run, and the most open at once. */
  decisionConnections?: { opened: number; most: number };
}

async function measure(url: string, pids: number[], faPort?: number, script?: string): Promise<Row> {
  const before = faPort === undefined ? new Set<string>() : connectionsTo(faPort);
  const seen = new Set<string>();
  let most = before.size;
  const timer =
    faPort === undefined
      ? undefined
      : setInterval(() => {
          const now = connectionsTo(faPort);
          most = Math.max(most, now.size);
          for (const c of now) if (!before.has(c)) seen.add(c);
        }, 100);
  const load = await wrkLoad(url, { connections: CONNECTIONS, seconds: SECONDS, pids, ...(script ? { script } : { header: 'Authorization: Bearer valid-0' }) });
  if (timer) clearInterval(timer);
  return faPort === undefined ? load : { ...load, decisionConnections: { opened: seen.size, most } };
}

async function main(): Promise<void> {
  for (const [cmd, pkg] of [['nginx', 'nginx'], ['wrk', 'wrk']] as const) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) throw new Error(`needs ${cmd} (apt-get install -y ${pkg})`);
  }
  if (!existsSync(`${MODULES}/ngx_http_set_misc_module.so`)) throw new Error('needs the set-misc module (apt-get install -y libnginx-mod-http-set-misc)');
  if (!existsSync(join(ROOT, 'dist/cli.js'))) throw new Error('needs the compiled gateway: npm run build');

  const upstreamPort = await freePort();
  const introPort = await freePort();
  const gwPort = await freePort();
  const body = '{"message":"hello from the upstream API","ok":true}';
  start('nginx', ['-c', nginxMainConf(join(work, 'upstream'), `server { listen 127.0.0.1:${upstreamPort} backlog=4096; keepalive_requests 1000000; location / { default_type application/json; return 200 '${body}'; } }`), '-p', join(work, 'upstream')], 'upstream nginx');
  start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/introspection-server.ts'), String(introPort), '5'], 'introspection server');

  const phantom = `phantom_token:
  introspection_endpoint: http://127.0.0.1:${introPort}/introspect
  client_id: bench
  client_secret: bench-secret
  scope: read
  token_cache_seconds: 3600
routes:
  - path: /
    upstream: http://127.0.0.1:${upstreamPort}
cache: { max_entries: 20000 }
log: { access_log: false }
`;
  const gwConfig = join(work, 'gateway.yaml');
  writeFileSync(gwConfig, `listen: { host: 127.0.0.1, port: ${gwPort} }\n${phantom}`);
  const gateway = start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', gwConfig], 'gateway');

  const loadModules = `load_module ${MODULES}/ndk_http_module.so;\nload_module ${MODULES}/ngx_http_set_misc_module.so;\n`;
  /**
   * A forward-auth listener alone (no proxy listener), as deployed behind
   * NGINX, and an NGINX with the configuration the real CLI generates for it,
   * optionally edited for a variant. Each subject has its own listener, so
   * that its CPU and its connections are its own.
   */
  const generated = async (name: string, flags: string[], edit: (conf: string) => string = (c) => c) => {
    const port = await freePort();
    const faPort = await freePort();
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    const faConfig = join(dir, 'forward-auth.yaml');
    writeFileSync(faConfig, `forward_auth:\n  listen: { host: 127.0.0.1, port: ${faPort} }\n${phantom}`);
    const fa = start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', faConfig], `forward-auth listener (${name})`);
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), 'nginx-conf', '--config', faConfig, '--listen', `127.0.0.1:${port}`, ...flags], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`nginx-conf failed: ${r.stderr}`);
    writeFileSync(join(dir, 'phantom-gateway.conf'), edit(r.stdout));
    const conf = nginxMainConf(dir, `include ${dir}/phantom-gateway.conf;`, loadModules);
    const proc = start('nginx', ['-c', conf, '-p', dir], `nginx (${name})`);
    return { port, proc, fa, faPort, url: `http://127.0.0.1:${port}/` };
  };

  const plainPort = await freePort();
  const plainConf = nginxMainConf(
    join(work, 'plain'),
    `upstream api { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:${plainPort} backlog=4096; keepalive_requests 1000000;
    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
  );
  const plain = start('nginx', ['-c', plainConf, '-p', join(work, 'plain')], 'plain nginx');
  const cachedShm = await generated('fa-cache-shm', ['--cache-path', join(shm ?? work, 'cache')]);
  const cachedDisk = await generated('fa-cache-disk', ['--cache-path', join(work, 'disk-cache')]);
  const cachedNoOpenFile = await generated('fa-cache-shm-no-open-file-cache', ['--cache-path', join(shm ?? work, 'cache-no-ofc'), '--open-files', '0']);
  const uncached = await generated('fa-no-cache', ['--no-decision-cache']);

  const curitySkip = curityMissing();
  let curity: { proc: ChildProcess; url: string; port: number } | undefined;
  if (curitySkip === undefined) {
    const port = await freePort();
    const dir = join(work, 'curity');
    mkdirSync(dir, { recursive: true });
    const conf = readFileSync(join(CURITY!, 'nginx.conf.template'), 'utf8')
      .replaceAll('@@DIR@@', dir)
      .replaceAll('@@LIB@@', join(CURITY!, 'lib'))
      .replaceAll('@@PORT@@', String(port))
      .replaceAll('@@UPSTREAM@@', `127.0.0.1:${upstreamPort}`)
      .replaceAll('@@INTROSPECTION_ENDPOINT@@', `http://127.0.0.1:${introPort}/introspect`)
      .replaceAll('@@CLIENT_ID@@', 'bench')
      .replaceAll('@@CLIENT_SECRET@@', 'bench-secret')
      .replaceAll('@@SCOPE@@', 'read');
    writeFileSync(join(dir, 'nginx.conf'), conf);
    curity = { proc: start('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], 'curity nginx'), url: `http://127.0.0.1:${port}/`, port };
  } else {
    log(`curity-lua: skipped: ${curitySkip}`);
  }

  await Promise.all([
    waitForPort(upstreamPort, 'upstream nginx'),
    waitForPort(introPort, 'introspection server'),
    waitForPort(gwPort, 'gateway'),
    waitForPort(plainPort, 'plain nginx'),
    ...[cachedShm, cachedDisk, cachedNoOpenFile, uncached].flatMap((s) => [waitForPort(s.port, 'nginx (generated)'), waitForPort(s.faPort, 'forward-auth listener')]),
    ...(curity ? [waitForPort(curity.port, 'curity nginx')] : []),
  ]);

  type Subject = { name: string; url: string; pids: () => number[]; faPort?: number; script?: string };
  // 10,000 tokens in turn: 10,000 decision cache files (more than the open files kept), 10,000 entries in Curity's shared dict.
  const tenK = join(work, 'tenk.lua');
  writeFileSync(tenK, 'local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, {["Authorization"] = "Bearer valid-" .. (n % 10000)})\nend\n');
  const subjects: Subject[] = [
    { name: 'nginx proxy_pass (no auth)', url: `http://127.0.0.1:${plainPort}/`, pids: () => [plain.pid!] },
    { name: 'nginx + forward-auth, decision cache (generated, tmpfs)', url: cachedShm.url, pids: () => [cachedShm.proc.pid!, cachedShm.fa.pid!], faPort: cachedShm.faPort },
    { name: 'nginx + forward-auth, decision cache on disk', url: cachedDisk.url, pids: () => [cachedDisk.proc.pid!, cachedDisk.fa.pid!], faPort: cachedDisk.faPort },
    { name: 'nginx + forward-auth, tmpfs, without open_file_cache', url: cachedNoOpenFile.url, pids: () => [cachedNoOpenFile.proc.pid!, cachedNoOpenFile.fa.pid!], faPort: cachedNoOpenFile.faPort },
    { name: 'nginx + forward-auth, no decision cache', url: uncached.url, pids: () => [uncached.proc.pid!, uncached.fa.pid!], faPort: uncached.faPort },
    { name: 'nginx + forward-auth, generated, 10,000 tokens', url: cachedShm.url, pids: () => [cachedShm.proc.pid!, cachedShm.fa.pid!], faPort: cachedShm.faPort, script: tenK },
    ...(curity
      ? [
          { name: "Curity's OpenResty plugin (Lua)", url: curity.url, pids: () => [curity!.proc.pid!] },
          { name: "Curity's OpenResty plugin, 10,000 tokens", url: curity.url, pids: () => [curity!.proc.pid!], script: tenK },
        ]
      : []),
    { name: 'gateway (standalone proxy)', url: `http://127.0.0.1:${gwPort}/`, pids: () => [gateway.pid!] },
  ];

  // Warm-up: the token in every cache, connections open, JITs warm.
  for (const s of subjects) await wrkLoad(s.url, { connections: CONNECTIONS, seconds: s.script ? 4 : 1, ...(s.script ? { script: s.script } : { header: 'Authorization: Bearer valid-0' }) });

  const results: Record<string, Row[]> = {};
  for (let round = 1; round <= ROUNDS; round++) {
    log(`nginx forward-auth: round ${round}/${ROUNDS}`);
    // Alternate the order so that drift favours no subject.
    const order = round % 2 === 1 ? subjects : [...subjects].reverse();
    for (const s of order) (results[s.name] ??= []).push(await measure(s.url, s.pids(), s.faPort, s.script));
  }

  const m = (name: string, k: keyof Load) => median(results[name]!.map((l) => l[k] as number));
  const plainName = subjects[0]!.name;
  const curityName = curity ? "Curity's OpenResty plugin (Lua)" : undefined;
  const rows = subjects.map((s) => {
    const rs = results[s.name]!;
    const conns = rs.map((r) => r.decisionConnections).filter((c) => c !== undefined);
    return {
      subject: s.name,
      rps: Math.round(m(s.name, 'rps')),
      p50_ms: m(s.name, 'p50'),
      p99_ms: m(s.name, 'p99'),
      cpu_us_per_req: Math.round(m(s.name, 'cpuUsPerReq') * 10) / 10,
      rps_vs_nginx: Math.round((m(s.name, 'rps') / m(plainName, 'rps')) * 100) / 100,
      rps_vs_curity: curityName ? Math.round((m(s.name, 'rps') / m(curityName, 'rps')) * 100) / 100 : null,
      cpu_vs_curity: curityName ? Math.round((m(s.name, 'cpuUsPerReq') / m(curityName, 'cpuUsPerReq')) * 100) / 100 : null,
      decision_connections: conns.length > 0 ? { opened_during_run: Math.max(...conns.map((c) => c.opened)), most_open_at_once: Math.max(...conns.map((c) => c.most)) } : null,
      errors: rs.reduce((a, l) => a + l.errors, 0),
    };
  });
  const table = [
    '| subject | req/s | p50 ms | p99 ms | CPU µs/req | vs nginx | vs Curity req/s | vs Curity CPU | connections to the listener |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.subject} | ${r.rps} | ${r.p50_ms.toFixed(2)} | ${r.p99_ms.toFixed(2)} | ${r.cpu_us_per_req} | ${r.rps_vs_nginx} | ${r.rps_vs_curity ?? '—'} | ${r.cpu_vs_curity ?? '—'} | ${r.decision_connections ? `${r.decision_connections.most_open_at_once} open, ${r.decision_connections.opened_during_run} opened` : '—'} |`,
    ),
  ];
  log(`\n${table.join('\n')}\n`);
  if (rows.some((r) => r.errors > 0)) log(`errors: ${rows.filter((r) => r.errors > 0).map((r) => `${r.subject}: ${r.errors}`).join('; ')}`);
  process.stdout.write(
    `${JSON.stringify({ settings: { rounds: ROUNDS, seconds: SECONDS, connections: CONNECTIONS }, curity: curitySkip === undefined ? 'measured' : `skipped: ${curitySkip}`, rows, table: table.join('\n') })}\n`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(`bench/nginx-forward-auth.ts failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
