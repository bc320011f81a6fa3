import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './cli.js';
import { findProgram } from './services.js';

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

/** Starts a redis-server on a free loopback port, ready to answer PING. */
export async function startRedis(): Promise<RedisInstance> {
  if (redisServer.path === undefined || redisCli.path === undefined) throw new Error(String(skip));
  const server = redisServer.path;
  const cliPath = redisCli.path;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'phantom-redis-'));
  let child: ChildProcess | undefined;
  const cli = (...args: string[]): string => {
    const r = spawnSync(cliPath, ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8', timeout: 5000 });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${r.stderr || r.stdout}`);
    return r.stdout;
  };
  const start = async (): Promise<void> => {
    const c = spawn(server, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    let err = '';
    c.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`redis-server exited (${c.exitCode}): ${err}`);
      const r = spawnSync(cliPath, ['-h', '127.0.0.1', '-p', String(port), 'ping'], { encoding: 'utf8', timeout: 2000 });
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
    url: `redis://127.0.0.1:${port}`,
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
