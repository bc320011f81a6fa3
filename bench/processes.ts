/*
 * What the benchmark scripts share for their subjects: a free loopback port,
 * waiting until something listens on one, NGINX configurations, load (wrk)
 * and the CPU a process spent.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function sleep(msec: number): Promise<void> {
  return new Promise((r) => setTimeout(r, msec));
}

/** A port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  // Below Linux's ephemeral range (32768-60999 by default): a port taken from
  // it can be handed to an outgoing connection (wrk's, NGINX's) before the
  // subject binds it, and a connect to such a port can even connect to itself,
  // which makes waitForPort() believe a subject started that did not.
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const s = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      await new Promise((r) => s.close(r));
      return port;
    }
  }
  throw new Error('no free port below the ephemeral range');
}

/** Resolves once 127.0.0.1:`port` accepts a connection; throws after 15 s. */
export async function waitForPort(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${what} did not start listening on ${port}`);
}

/** Clock ticks per second of /proc/<pid>/stat. */
export const HZ = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

/** CPU ticks (user + system) of a process and of its children (NGINX workers, cluster workers). */
export function cpuTicks(pid: number): number {
  const read = (p: number) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
    } catch {
      return undefined;
    }
  };
  let total = read(pid)?.ticks ?? 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = read(Number(entry));
    if (s && s.ppid === pid) total += s.ticks;
  }
  return total;
}

/**
 * An NGINX main configuration in `dir` (one worker, no daemon, temp paths and
 * logs in `dir`) around an `http {}` body; `main` goes first (`load_module`s).
 * Returns the file's path.
 */
export function nginxMainConf(dir: string, body: string, main = ''): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'nginx.conf');
  writeFileSync(
    file,
    `${main}worker_processes 1;
daemon off;
master_process on;
error_log ${dir}/error.log error;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  ${body}
}
`,
  );
  return file;
}

export interface Load {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  /** CPU of the `pids` (and their children) together, per request. */
  cpuUsPerReq: number | undefined;
}

function ms(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

/**
 * One wrk run (one thread): throughput, latency, errors (socket errors, and
 * non-2xx answers unless `expectRefusals`), and the CPU the `pids` spent per
 * request.
 */
export async function wrkLoad(url: string, opts: { connections: number; seconds: number; pids?: number[]; header?: string; script?: string; expectRefusals?: boolean }): Promise<Load> {
  const args = ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency'];
  if (opts.header) args.push('-H', opts.header);
  if (opts.script) args.push('-s', opts.script);
  args.push(url);
  const ticks = () => (opts.pids ?? []).reduce((a, p) => a + cpuTicks(p), 0);
  const before = ticks();
  const out = await new Promise<string>((resolve, reject) => {
    const p = transientChild(spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let text = '';
    p.stdout.on('data', (c: Buffer) => (text += c.toString()));
    p.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk failed: ${text}`))));
  });
  const after = ticks();
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    p50: ms(/\s50%\s+(\S+)/.exec(out)?.[1] ?? 'NaN'),
    p99: ms(/\s99%\s+(\S+)/.exec(out)?.[1] ?? 'NaN'),
    requests,
    errors: errors + (opts.expectRefusals ? 0 : non2xx),
    cpuUsPerReq: opts.pids && opts.pids.length > 0 && requests > 0 ? (((after - before) / HZ) * 1e6) / requests : undefined,
  };
}

/** Exit status by signal, as a shell reports it (128 + the signal number). */
export const SIGNAL_EXIT: Readonly<Record<'SIGINT' | 'SIGTERM' | 'SIGHUP', number>> = Object.freeze({ SIGINT: 130, SIGTERM: 143, SIGHUP: 129 });

const transient = new Set<ChildProcess>();
let signalsHandled = false;

/**
 * Ctrl+C (SIGINT), `kill` (SIGTERM) and a closed terminal (SIGHUP) end the
 * benchmark through process.exit(), so that its 'exit' handlers run and stop
 * every subject it started: a signal's default action would end the process
 * without them, leaving NGINX, gateways and their ports behind. Short-lived
 * children (wrk, sub-benchmarks) get SIGTERM on the way out; a sub-benchmark
 * then stops its own subjects the same way. Idempotent.
 */
export function exitOnSignals(): void {
  if (signalsHandled) return;
  signalsHandled = true;
  process.on('exit', () => {
    for (const c of transient) {
      try {
        c.kill('SIGTERM');
      } catch {
        // already gone
      }
    }
  });
  for (const [signal, status] of Object.entries(SIGNAL_EXIT)) process.on(signal, () => process.exit(status));
}

/** Tracks a short-lived child so that exitOnSignals() stops it if the benchmark ends first. */
export function transientChild<T extends ChildProcess>(child: T): T {
  transient.add(child);
  child.once('exit', () => transient.delete(child));
  return child;
}

/**
 * Runs another benchmark script to completion without blocking the event
 * loop (spawnSync would hold a SIGTERM until the child finished, minutes
 * later): the child is tracked, so a signal meanwhile stops it too.
 */
export function runChild(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = transientChild(spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * The processes one benchmark runs (NGINX, gateways, scripted servers), each
 * in its own process group so that stopping it stops NGINX's workers too. A
 * subject that exits during the run stops the whole run: it would otherwise
 * be measured as whatever answers its port.
 */
export class Subjects {
  readonly #children: ChildProcess[] = [];
  readonly #dirs: string[];
  readonly #cwd: string;
  #stopping = false;

  /** `dirs` are removed on stop; `cwd` is where the subjects run. */
  constructor(cwd: string, dirs: string[]) {
    this.#cwd = cwd;
    this.#dirs = dirs;
    process.on('exit', () => this.stopAll());
    exitOnSignals();
  }

  start(cmd: string, args: string[], name: string): ChildProcess {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: this.#cwd, detached: true });
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.once('exit', (code) => {
      if (this.#stopping) return;
      process.stderr.write(`${name} exited with ${code}: ${err}\n`);
      this.stopAll();
      process.exit(1);
    });
    this.#children.push(child);
    return child;
  }

  stopAll(): void {
    this.#stopping = true;
    for (const c of this.#children) {
      try {
        if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const d of this.#dirs) rmSync(d, { recursive: true, force: true });
  }
}

/**
 * The end of a sub-benchmark run alone or by `npm run bench`: its table on
 * stderr, its summary as one JSON line on stdout, and with `--save` the two
 * in `bench/results/<date>-<name>.json`; exits 0, or 1 after `cleanup` when
 * `main` failed.
 */
export function finishBench(name: string, main: () => Promise<{ summary: Record<string, unknown>; table: string }>, cleanup?: () => void): void {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  main().then(
    ({ summary, table }) => {
      log(`\n${table}\n`);
      process.stdout.write(`${JSON.stringify({ ...summary, table })}\n`);
      if (process.argv.includes('--save')) {
        const dir = fileURLToPath(new URL('results/', import.meta.url));
        mkdirSync(dir, { recursive: true });
        const out = join(dir, `${String(summary.date).replace(/[:.]/g, '-')}-${name}.json`);
        writeFileSync(out, `${JSON.stringify({ ...summary, table }, null, 2)}\n`);
        log(`results: ${out}`);
      }
      process.exit(0);
    },
    (err: unknown) => {
      log(`bench/${name}.ts failed: ${(err as Error).stack ?? String(err)}`);
      cleanup?.();
      process.exit(1);
    },
  );
}

/**
 * A gateway configuration as the benches run it: listening on `port`, the
 * scripted introspection endpoint, one route `/` to the upstream (scope
 * `read`, cached an hour), no access log; `extra` YAML appended (top-level
 * keys).
 */
export function benchGatewayYaml(o: { port: number; introPort: number; upstreamPort: number; extra?: string }): string {
  return `listen: { host: 127.0.0.1, port: ${o.port} }
phantom_token:
  introspection_endpoint: http://127.0.0.1:${o.introPort}/introspect
  client_id: bench
  client_secret: bench-secret
  scope: read
  token_cache_seconds: 3600
routes:
  - path: /
    upstream: http://127.0.0.1:${o.upstreamPort}
log: { access_log: false }
${o.extra ?? ''}`;
}
