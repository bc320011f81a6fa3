import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, startCli, type CliRun } from './cli.js';
import { findProgram } from './services.js';
import { parsePrometheus, type Family } from '../admin/prometheus.js';

/**
 * A real `redis-server` (Debian package redis-server) for the shared-cache
 * tests: on a free loopback port, no persistence, no protected mode games.
 * `skip` is the reason to skip when it is not installed (a failure under
 * CI=true, see findProgram).
 */
export const redisServer = findProgram('redis-server', 'redis-server');
export const redisCli = findProgram('redis-cli', 'redis-tools');
export const skip = redisServer.skip || redisCli.skip;

export interface RedisInstance {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGTERM, no save); `start()` brings it back on the same port, empty. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** `redis-cli` against it; its stdout. */
  cli(...args: string[]): string;
  /** Every key (`redis-cli --scan`). */
  keys(): string[];
  close(): Promise<void>;
}

/** TLS for the server (`rediss://`): its certificate and key, and the CA redis-cli trusts. */
export interface RedisTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

/** Starts a redis-server on a free loopback port, ready to answer PING; with `tls`, that port speaks TLS only. */
export async function startRedis(opts: { tls?: RedisTls } = {}): Promise<RedisInstance> {
  if (redisServer.path === undefined || redisCli.path === undefined) throw new Error(String(skip));
  const server = redisServer.path;
  const cliPath = redisCli.path;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'phantom-redis-'));
  let child: ChildProcess | undefined;
  const tls = opts.tls;
  const cliTls = tls === undefined ? [] : ['--tls', '--cacert', tls.caFile];
  const portArgs = tls === undefined ? ['--port', String(port)] : ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', 'no'];
  const cli = (...args: string[]): string => {
    const r = spawnSync(cliPath, ['-h', '127.0.0.1', '-p', String(port), ...cliTls, ...args], { encoding: 'utf8', timeout: 5000 });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${r.stderr || r.stdout}`);
    return r.stdout;
  };
  const start = async (): Promise<void> => {
    const c = spawn(server, [...portArgs, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    let err = '';
    c.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`redis-server exited (${c.exitCode}): ${err}`);
      const r = spawnSync(cliPath, ['-h', '127.0.0.1', '-p', String(port), ...cliTls, 'ping'], { encoding: 'utf8', timeout: 2000 });
      if (r.stdout.trim() === 'PONG') return;
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on ${port}: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const closed = once(c, 'exit');
    c.kill('SIGKILL');
    await closed;
  };
  await start();
  return {
    port,
    url: `${tls === undefined ? 'redis' : 'rediss'}://127.0.0.1:${port}`,
    stop,
    start,
    cli,
    keys: () => cli('--scan').split('\n').filter((l) => l !== ''),
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A key secret for tests (never a real one). */
export const TEST_KEY_SECRET = 'test-key-secret-0123456789abcdef0123456789abcdef';

/** Resolves once `shared` is up (connected, answered a PING), or fails after `ms`. */
export async function sharedUp(shared: { readonly state: 'up' | 'down' }, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (shared.state !== 'up') {
    if (Date.now() > deadline) throw new Error('the shared cache did not come up');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/*
 * Gateway instances sharing one Redis, as users run them: the real command
 * line (`phantom-gateway --config file`), one process each (or a cluster
 * with `workers`), each with its own proxy and admin listener on free ports.
 */

/** The admin token of every instance (POST /cache/purge). */
export const TEST_ADMIN_TOKEN = 'itest-admin-token-0123456789abcdef';

export interface GatewayYamlOptions {
  port: number;
  adminPort: number;
  /** Base URL of the introspection peer (`/introspect` is appended). */
  introspection: string;
  upstream: string;
  redisUrl: string;
  keySecret?: string;
  workers?: number;
  /** More phantom_token options (timeout_ms, negative_cache_seconds, ...). */
  phantom?: Record<string, unknown>;
  /** More cache.redis options (key_prefix, lock_wait_ms, ...). */
  redis?: Record<string, unknown>;
  /** More cache options (max_entries, ...). */
  cache?: Record<string, unknown>;
  /** Routes after `/api` (each a route mapping as in the configuration). */
  routes?: Array<Record<string, unknown>>;
}

/** A gateway configuration with a `cache.redis` block (JSON, which is YAML): one protected route `/api`. */
export function gatewayYaml(o: GatewayYamlOptions): string {
  return JSON.stringify(
    {
      ...(o.workers === undefined ? {} : { workers: o.workers }),
      listen: { host: '127.0.0.1', port: o.port },
      admin: { listen: { host: '127.0.0.1', port: o.adminPort }, token: TEST_ADMIN_TOKEN },
      phantom_token: {
        introspection_endpoint: `${o.introspection}/introspect`,
        client_id: 'gateway-client',
        client_secret: 'gateway-secret',
        ...o.phantom,
      },
      cache: {
        ...o.cache,
        redis: { url: o.redisUrl, key_secret: o.keySecret ?? TEST_KEY_SECRET, ...o.redis },
      },
      routes: [{ path: '/api', upstream: o.upstream }, ...(o.routes ?? [])],
    },
    null,
    2,
  );
}

export interface GatewayReply {
  status: number;
  /** The JWT the upstream received (the echo upstream's answer), undefined when the request did not reach it. */
  jwt: string | undefined;
  body: string;
}

export interface AdminReply {
  status: number;
  json: Record<string, unknown> | undefined;
  text: string;
}

export interface GatewayInstance {
  readonly name: string;
  /** The proxy listener. */
  readonly url: string;
  readonly adminUrl: string;
  readonly run: CliRun;
  /** `GET /api/x` with `Authorization: Bearer <token>`, over a new connection. */
  get(token: string): Promise<GatewayReply>;
  /** `GET <path>` with `Authorization: Bearer <token>`, over a new connection: status and body. */
  call(path: string, token: string): Promise<{ status: number; body: string }>;
  readyz(): Promise<AdminReply>;
  /**
   * `checks.shared_cache` of `/readyz`: the process's, or with `workers`
   * every worker's (undefined when some worker does not say).
   */
  sharedCache(): Promise<string | undefined>;
  /** Waits until `sharedCache()` is `state`; throws with the last /readyz body after `timeoutMs`. */
  waitSharedCache(state: 'up' | 'down', timeoutMs?: number): Promise<void>;
  /** `/metrics`, parsed (a cluster's primary sums its workers). */
  scrape(): Promise<Map<string, Family>>;
  /** `POST /cache/purge` with a JSON body and the admin token. */
  purge(what: Record<string, string>): Promise<AdminReply>;
  /** Everything the process logged (stdout and stderr). */
  logs(): string;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  stop(): Promise<void>;
}

async function adminRequest(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<AdminReply> {
  const r = await request(url, { method: (init.method ?? 'GET') as 'GET', headers: init.headers, body: init.body, reset: true });
  const text = await r.body.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    json = undefined;
  }
  return { status: r.statusCode, json, text };
}

/**
 * Starts `phantom-gateway --config <file>` with `gatewayYaml(opts)` on free
 * ports and waits until it serves (every worker with `workers`). Does not
 * wait for Redis: see `waitSharedCache`.
 */
export async function startInstance(
  name: string,
  scratch: { write(name: string, text: string): string },
  opts: Omit<GatewayYamlOptions, 'port' | 'adminPort'>,
): Promise<GatewayInstance> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = scratch.write(`${name}.yaml`, gatewayYaml({ ...opts, port, adminPort }));
  const run = startCli(['--config', file]);
  const workers = opts.workers ?? 1;
  // Generous: ten processes starting at once on two busy cores.
  await run.waitFor(new RegExp(Array(workers).fill('"msg":"phantom-gateway started"').join('[\\s\\S]*')), 60_000);
  const url = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const readyz = () => adminRequest(`${adminUrl}/readyz`);
  const sharedCache = async (): Promise<string | undefined> => {
    const checks = (await readyz()).json?.checks as Record<string, unknown> | undefined;
    if (checks === undefined) return undefined;
    if (!Array.isArray(checks.each)) return checks.shared_cache as string | undefined;
    const states = new Set((checks.each as Array<{ checks?: Record<string, unknown> }>).map((w) => w.checks?.shared_cache));
    return states.size === 1 && (checks.each as unknown[]).length === workers ? ([...states][0] as string | undefined) : undefined;
  };
  return {
    name,
    url,
    adminUrl,
    run,
    get: async (token) => {
      // A new connection each time: with `workers`, the cluster hands connections to workers in turn.
      const r = await request(`${url}/api/x`, { headers: { authorization: `Bearer ${token}` }, reset: true });
      const body = await r.body.text();
      let jwt: string | undefined;
      if (r.statusCode === 200 && r.headers['x-upstream'] === 'echo') {
        const auth = (JSON.parse(body) as { headers: Record<string, string> }).headers.authorization;
        jwt = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined;
      }
      return { status: r.statusCode, jwt, body };
    },
    call: async (path, token) => {
      const r = await request(`${url}${path}`, { headers: { authorization: `Bearer ${token}` }, reset: true });
      return { status: r.statusCode, body: await r.body.text() };
    },
    readyz,
    sharedCache,
    waitSharedCache: async (state, timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if ((await sharedCache()) === state) return;
        if (Date.now() > deadline) throw new Error(`${name}: /readyz never showed shared_cache "${state}": ${(await readyz()).text}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    scrape: async () => {
      const r = await adminRequest(`${adminUrl}/metrics`);
      if (r.status !== 200) throw new Error(`${name}: /metrics answered ${r.status}`);
      return parsePrometheus(r.text);
    },
    purge: (what) =>
      adminRequest(`${adminUrl}/cache/purge`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(what),
      }),
    logs: () => run.stdout() + run.stderr(),
    stop: async () => {
      if (run.child.exitCode !== null || run.child.signalCode !== null) return;
      const timer = setTimeout(() => run.kill(), 5000);
      run.child.kill('SIGTERM');
      await run.exited;
      clearTimeout(timer);
    },
  };
}

/** How many lines of `text` match `pattern`. */
export function countLines(text: string, pattern: RegExp): number {
  return text.split('\n').filter((l) => pattern.test(l)).length;
}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Calls `probe` every `everyMs` until it returns true; false if `timeoutMs` passed first. */
export async function eventually(probe: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}
