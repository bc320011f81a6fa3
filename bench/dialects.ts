/*
 * The json dialect (RFC 7662 JSON: introspect, then mint and sign an RFC 9068
 * JWT) against the jwt dialect (Curity: the answer is the JWT), in one run.
 *
 *   - cache hit: one token, many requests; req/s and the gateway's CPU per
 *     request. A cache hit must cost the same in every dialect: the ratio
 *     json/jwt is reported.
 *   - cold path: every request a token never seen before (introspect, and
 *     for json mint + sign); p50 latency, CPU per request, introspections
 *     per token.
 *   - the cache hit alone, in this process (decide(), no HTTP): ns per call.
 *   - minting alone, in this process: what one mint costs with each signing
 *     algorithm (ES256, EdDSA, RS256).
 *
 * Two gateway processes (one per dialect), one scripted introspection
 * endpoint answering both (bench/introspection-server.ts: a JWT for Accept
 * application/jwt, the same claims as JSON for application/json, 5 ms), an
 * NGINX upstream. CPU per request is read from /proc/<pid>/stat of the
 * gateway only. Subjects alternate round by round; medians are reported.
 *
 *   npm run build && node --import tsx bench/dialects.ts [--save]
 *   (npm run bench runs it too; --save writes bench/results/<date>-dialects.json)
 *
 * Environment: as bench/run.ts (BENCH_ROUNDS, BENCH_SECONDS,
 * BENCH_CONNECTIONS, BENCH_QUICK=1). Prints a table on stderr and the results
 * as JSON on stdout.
 */
import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { parseConfig } from '../src/config/load.js';
import { createGuards } from '../src/core/guards.js';
import { decide, type DecisionRequest } from '../src/core/decide.js';
import { KeySet, Minter, signingKey } from '../src/minting/index.js';
import { createLogger } from '../src/observability/logger.js';
import { freePort, median, nginxMainConf, waitForPort, wrkLoad, type Load, Subjects, finishBench } from './processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 2 : 5));
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const COLD_CONNECTIONS = 10;
const INTROSPECTION_LATENCY_MS = 5;
const MINTS = QUICK ? 500 : 3000;
const MICRO_ITERATIONS = QUICK ? 50_000 : 300_000;
const work = mkdtempSync(join(tmpdir(), 'phantom-bench-dialects-'));
const log = (s: string) => process.stderr.write(`${s}\n`);
const subjects = new Subjects(ROOT, [work]);
const start = (cmd: string, args: string[], name: string): ChildProcess => subjects.start(cmd, args, name);
const stopAll = (): void => subjects.stopAll();

try {
  readFileSync(join(ROOT, 'dist/cli.js'));
} catch {
  log('bench/dialects.ts needs the compiled gateway: run npm run build');
  process.exit(1);
}

function luaScript(name: string, body: string): string {
  const file = join(work, `${name}.lua`);
  writeFileSync(file, body);
  return file;
}

async function stats(port: number): Promise<{ calls: number }> {
  const r = await fetch(`http://127.0.0.1:${port}/stats`);
  return (await r.json()) as { calls: number };
}

/** µs per mint with a fresh key of `alg`, `n` mints one after another (after a warm-up). */
async function mintCost(alg: 'ES256' | 'EdDSA' | 'RS256', n: number): Promise<number> {
  const pair =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'EdDSA'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keys = new KeySet(signingKey(pair.privateKey, undefined, `bench ${alg}`), []);
  const minter = new Minter({ issuer: 'https://gateway.example.com', maxLifetimeSeconds: 300, copyClaims: ['preferred_username', 'tenant'], keys });
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: 'https://login.example.com',
    sub: 'a'.repeat(64),
    aud: 'api.example.com',
    client_id: 'bench-client-with-a-realistic-name',
    scope: 'read write openid profile email orders:read orders:write customers:read',
    exp: now + 3600,
    iat: now,
    preferred_username: 'benchmark.user@example.com',
    tenant: 'example-tenant-0001',
  };
  for (let i = 0; i < 200; i++) await minter.mint(claims);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await minter.mint(claims);
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

async function main(): Promise<{ summary: Record<string, unknown>; table: string }> {
  const upstreamPort = await freePort();
  const introPort = await freePort();
  const jwtPort = await freePort();
  const jsonPort = await freePort();

  const upstreamConf = nginxMainConf(
    join(work, 'upstream'),
    `server { listen 127.0.0.1:${upstreamPort} backlog=4096; keepalive_requests 1000000; location / { default_type application/json; return 200 '{"ok":true}'; } }`,
  );
  start('nginx', ['-c', upstreamConf, '-p', join(work, 'upstream')], 'upstream nginx');
  start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/introspection-server.ts'), String(introPort), String(INTROSPECTION_LATENCY_MS)], 'introspection server');

  const keyFile = join(work, 'signing.pem');
  writeFileSync(keyFile, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const config = (port: number, dialect: 'jwt' | 'json') => {
    const file = join(work, `gateway-${dialect}.yaml`);
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: ${port} }
phantom_token:
  introspection_endpoint: http://127.0.0.1:${introPort}/introspect
  client_id: bench
  client_secret: bench-secret
  scope: read
  token_cache_seconds: 3600
  introspection_response: ${dialect}
${
  dialect === 'json'
    ? `minting:
  issuer: https://gateway.example.com
  signing_key_file: ${keyFile}
  copy_claims: [preferred_username, tenant]
`
    : ''
}routes:
  - path: /
    upstream: http://127.0.0.1:${upstreamPort}
cache: { max_entries: 200000 }
log: { access_log: false }
`,
    );
    return file;
  };
  const gateways = {
    jwt: start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', config(jwtPort, 'jwt')], 'gateway (jwt)'),
    json: start(process.execPath, [join(ROOT, 'bin/phantom-gateway.js'), '--config', config(jsonPort, 'json')], 'gateway (json)'),
  };
  const urls = { jwt: `http://127.0.0.1:${jwtPort}/`, json: `http://127.0.0.1:${jsonPort}/` };
  await Promise.all([
    waitForPort(upstreamPort, 'upstream nginx'),
    waitForPort(introPort, 'introspection server'),
    waitForPort(jwtPort, 'gateway (jwt)'),
    waitForPort(jsonPort, 'gateway (json)'),
  ]);

  // Warm-up: JIT, keep-alive pools, the cached token; and a check that each
  // gateway forwards what its dialect should (a minted token is not the server's).
  for (const [dialect, url] of Object.entries(urls)) {
    const pool = new Pool(url, { connections: 10 });
    for (let i = 0; i < 500; i++) {
      const r = await pool.request({ path: '/', method: 'GET', headers: { authorization: `Bearer valid-${i % 50}` } });
      await r.body.dump();
      if (r.statusCode !== 200) throw new Error(`gateway (${dialect}) answered ${r.statusCode} in the warm-up`);
    }
    await pool.close();
    await wrkLoad(url, { connections: CONNECTIONS, seconds: 1, header: 'Authorization: Bearer valid-0' });
  }

  const order: Array<'jwt' | 'json'> = ['jwt', 'json'];
  const hits: Record<string, Load[]> = { jwt: [], json: [] };
  const cold: Record<string, Array<Load & { callsPerToken: number }>> = { jwt: [], json: [] };
  for (let round = 1; round <= ROUNDS; round++) {
    log(`dialects: round ${round}/${ROUNDS}`);
    for (const d of round % 2 === 1 ? order : [...order].reverse()) {
      hits[d]!.push(await wrkLoad(urls[d], { connections: CONNECTIONS, seconds: SECONDS, pids: [gateways[d].pid!], header: 'Authorization: Bearer valid-0' }));
    }
    for (const d of round % 2 === 1 ? order : [...order].reverse()) {
      const script = luaScript(`cold-${d}-${round}`, `local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, {["Authorization"] = "Bearer cold-${d}-${round}-" .. n})\nend\n`);
      const before = await stats(introPort);
      const load = await wrkLoad(urls[d], { connections: COLD_CONNECTIONS, seconds: SECONDS, pids: [gateways[d].pid!], script });
      const after = await stats(introPort);
      cold[d]!.push({ ...load, callsPerToken: (after.calls - before.calls) / load.requests });
    }
  }
  // The cache hit alone, in this process, without HTTP: decide() on a token
  // already cached, with guards built from each gateway's configuration.
  log('dialects: cache hit in-process');
  const hitNs: Record<string, number> = { jwt: Infinity, json: Infinity };
  const req: DecisionRequest = { method: 'GET', target: '/items', authorization: ['Bearer valid-0'], preflight: false, clientAddress: '127.0.0.1' };
  const inProcess = {} as Record<'jwt' | 'json', ReturnType<typeof createGuards>>;
  for (const d of order) {
    inProcess[d] = createGuards(parseConfig(readFileSync(join(work, `gateway-${d}.yaml`), 'utf8'), { file: `gateway-${d}.yaml`, env: {} }), {
      logger: createLogger('error', { write: () => true } as unknown as NodeJS.WritableStream),
    });
    const first = await decide(inProcess[d], req);
    if (!first.allow) throw new Error(`in-process ${d}: the token was refused`);
  }
  // Alternating, best of 3 each, so neither is favoured by JIT state or GC.
  for (let r = 0; r < 6; r++) {
    const d = order[r % 2]!;
    const guards = inProcess[d];
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < MICRO_ITERATIONS; i++) {
      const v = decide(guards, req);
      if (v instanceof Promise || !v.allow || v.cache !== 'hit') throw new Error(`in-process ${d}: not a cache hit`);
    }
    hitNs[d] = Math.min(hitNs[d]!, Math.round(Number(process.hrtime.bigint() - t0) / MICRO_ITERATIONS));
  }
  for (const d of order) await inProcess[d].close();
  stopAll();

  log('dialects: minting alone');
  const mint = { ES256: await mintCost('ES256', MINTS), EdDSA: await mintCost('EdDSA', MINTS), RS256: await mintCost('RS256', MINTS / 5) };

  const med = (xs: Load[], k: keyof Load) => median(xs.map((l) => l[k] as number));
  const round2 = (n: number) => Math.round(n * 100) / 100;
  const row = (d: 'jwt' | 'json') => ({
    cache_hit: { rps: Math.round(med(hits[d]!, 'rps')), p50_ms: med(hits[d]!, 'p50'), cpu_us_per_req: round2(med(hits[d]!, 'cpuUsPerReq')), errors: hits[d]!.reduce((a, l) => a + l.errors, 0) },
    cold: {
      rps: Math.round(med(cold[d]!, 'rps')),
      p50_ms: med(cold[d]!, 'p50'),
      cpu_us_per_req: round2(med(cold[d]!, 'cpuUsPerReq')),
      introspections_per_token: round2(median(cold[d]!.map((c) => c.callsPerToken))),
      errors: cold[d]!.reduce((a, l) => a + l.errors, 0),
    },
  });
  const jwt = row('jwt');
  const json = row('json');
  const summary = {
    date: new Date().toISOString(),
    machine: { cpus: availableParallelism(), model: cpus()[0]?.model, node: process.version },
    settings: { rounds: ROUNDS, seconds: SECONDS, connections: CONNECTIONS, cold_connections: COLD_CONNECTIONS, introspection_latency_ms: INTROSPECTION_LATENCY_MS },
    jwt,
    json,
    ratios_json_over_jwt: {
      cache_hit_rps: round2(json.cache_hit.rps / jwt.cache_hit.rps),
      cache_hit_cpu: round2(json.cache_hit.cpu_us_per_req / jwt.cache_hit.cpu_us_per_req),
      cold_cpu: round2(json.cold.cpu_us_per_req / jwt.cold.cpu_us_per_req),
      cold_added_cpu_us_per_req: round2(json.cold.cpu_us_per_req - jwt.cold.cpu_us_per_req),
      cold_p50: round2(json.cold.p50_ms / jwt.cold.p50_ms),
    },
    mint_us: { ES256: round2(mint.ES256), EdDSA: round2(mint.EdDSA), RS256: round2(mint.RS256) },
    cache_hit_in_process_ns: { jwt: hitNs.jwt, json: hitNs.json, ratio: round2(hitNs.json! / hitNs.jwt!) },
  };
  const r = summary.ratios_json_over_jwt;
  const table = [
    '| dialect | cache hit req/s | cache hit CPU µs/req | cold req/s | cold p50 ms | cold CPU µs/req | introspections per new token |',
    '|---|---:|---:|---:|---:|---:|---:|',
    `| jwt (answer is the JWT) | ${jwt.cache_hit.rps} | ${jwt.cache_hit.cpu_us_per_req} | ${jwt.cold.rps} | ${jwt.cold.p50_ms.toFixed(2)} | ${jwt.cold.cpu_us_per_req} | ${jwt.cold.introspections_per_token} |`,
    `| json (mint + sign ES256) | ${json.cache_hit.rps} | ${json.cache_hit.cpu_us_per_req} | ${json.cold.rps} | ${json.cold.p50_ms.toFixed(2)} | ${json.cold.cpu_us_per_req} | ${json.cold.introspections_per_token} |`,
    `| json / jwt | ${r.cache_hit_rps} | ${r.cache_hit_cpu} | | ${r.cold_p50} | ${r.cold_cpu} (+${r.cold_added_cpu_us_per_req} µs) | |`,
    '',
    `cache hit in-process (decide(), no HTTP, best of 3 x ${MICRO_ITERATIONS}): jwt ${hitNs.jwt} ns, json ${hitNs.json} ns (json/jwt ${summary.cache_hit_in_process_ns.ratio})`,
    `minting alone (in-process, µs per token): ES256 ${summary.mint_us.ES256}, EdDSA ${summary.mint_us.EdDSA}, RS256 ${summary.mint_us.RS256}`,
  ].join('\n');
  return { summary, table };
}

finishBench('dialects', main);
