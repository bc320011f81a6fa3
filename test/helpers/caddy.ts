/*
 * A real Caddy (Debian's `caddy` package) for the integration tests, run
 * from a Caddyfile written to a temporary directory, with HOME and XDG_*
 * pointing there so that it writes nothing anywhere else (Caddy autosaves
 * its configuration and keeps certificate storage under them).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RunningCaddy {
  /** Everything Caddy wrote to stderr (its logs). */
  stderr(): string;
  close(): Promise<void>;
}

export { freePort } from './cli.js';

/** The environment Caddy runs with: only PATH, and its home inside `dir`. */
export function caddyEnv(dir: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, XDG_CONFIG_HOME: join(dir, 'config'), XDG_DATA_HOME: join(dir, 'data') };
}

/**
 * Starts `caddy run` on `caddyfile` and resolves once Caddy says it serves
 * the configuration (rejects with its logs if it exits first or takes
 * longer than 15 s).
 */
export async function startCaddy(program: string, caddyfile: string): Promise<RunningCaddy> {
  const dir = mkdtempSync(join(tmpdir(), 'pg-caddy-'));
  const file = join(dir, 'Caddyfile');
  writeFileSync(file, caddyfile);
  const child: ChildProcess = spawn(program, ['run', '--config', file, '--adapter', 'caddyfile'], { cwd: dir, env: caddyEnv(dir), stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`caddy did not start within 15 s:\n${log}`)), 15_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('serving initial configuration')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`caddy exited (${code}) before serving:\n${log}`));
    });
  });
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await ready;
  } catch (err) {
    await close();
    throw err;
  }
  return { stderr: () => log, close };
}
