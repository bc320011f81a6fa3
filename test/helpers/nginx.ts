/*
 * A real NGINX (Debian's) around a generated `http {}` file: its own prefix
 * in a temporary directory, the main context with the `load_module`s the
 * generated file asks for, one worker, `daemon off`, stopped after the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { GatewayConfig } from '../../src/config/schema.js';
import { NGINX_MODULES, nginxConf, type NginxConfOptions } from '../../src/forward-auth/nginx-conf.js';
import { freePort } from './cli.js';
import { findNginxModule, findProgram } from './services.js';

/** Debian's NGINX, and the set-misc module (with NDK) the generated file loads. */
export const nginx = findProgram('nginx', 'nginx');
const setMisc = findNginxModule('ngx_http_set_misc_module.so', 'libnginx-mod-http-set-misc');
const ndk = findNginxModule('ndk_http_module.so', 'libnginx-mod-http-ndk');
/** Why the NGINX tests cannot run here (a failure under CI=true instead), or false. */
export const skip = nginx.skip || setMisc.skip || ndk.skip;
/** The generated file's modules, as Debian installs them. */
export const MODULES = NGINX_MODULES.map((m) => `/usr/lib/nginx/${m}`);

export interface NginxInstance {
  dir: string;
  /** The decision cache directory inside `dir`. */
  cacheDir: string;
  process: ChildProcess;
  stop(): Promise<void>;
  errorLog(): string;
}

/**
 * Writes `<dir>/nginx.conf` (main context + `include` of the generated file,
 * which `generate` makes given the cache directory to use) in a new
 * temporary directory; `remove()` deletes it.
 */
export function nginxPrefix(generate: (cacheDir: string) => string, modules: readonly string[]): { dir: string; conf: string; cacheDir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'phantom-nginx-'));
  // NGINX's worker runs as another user when started as root: it must reach the cache directory in here.
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'logs'));
  const cacheDir = join(dir, 'cache');
  writeFileSync(join(dir, 'phantom-gateway.conf'), generate(cacheDir));
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `${modules.map((m) => `load_module ${m};`).join('\n')}
worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  include ${dir}/phantom-gateway.conf;
}
`,
  );
  return { dir, conf, cacheDir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `nginx -t` of a prefix: status and output. */
export function nginxTest(nginx: string, dir: string): { status: number | null; output: string } {
  const r = spawnSync(nginx, ['-t', '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

async function waitForPort(port: number, child: ChildProcess, err: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${err()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 30));
  }
  throw new Error(`nginx did not listen on ${port}: ${err()}`);
}

/** Starts NGINX on a prefix written by `nginxPrefix`, waiting until it accepts on `port`. */
export async function startNginx(nginx: string, prefix: { dir: string; conf: string; cacheDir: string }, port: number): Promise<NginxInstance> {
  // Its own process group, so that stopping it stops its worker too.
  const child = spawn(nginx, ['-p', prefix.dir, '-c', prefix.conf, '-e', join(prefix.dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const errorLog = () => {
    try {
      return spawnSync('cat', [join(prefix.dir, 'error.log')], { encoding: 'utf8' }).stdout + stderr;
    } catch {
      return stderr;
    }
  };
  await waitForPort(port, child, errorLog);
  return {
    dir: prefix.dir,
    cacheDir: prefix.cacheDir,
    process: child,
    errorLog,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        // SIGTERM to the group: the master and its worker stop at once.
        try {
          process.kill(-child.pid!, 'SIGTERM');
        } catch {
          // already gone
        }
        await exited;
      }
      rmSync(prefix.dir, { recursive: true, force: true });
    },
  };
}

/** Every file below `dir` (the decision cache's files), or none when it does not exist. */
export function filesUnder(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

/**
 * The configuration `nginx-conf` generates for `config`, in a real NGINX on a
 * free port: `nginx -t` must pass first; if NGINX does not start, its prefix
 * is removed and the error thrown. `httpExtra` is added to the `http {}`
 * context (an operator's own setting).
 */
export async function startGeneratedNginx(config: GatewayConfig, opts: NginxConfOptions = {}, httpExtra?: string): Promise<{ instance: NginxInstance; port: number }> {
  const port = await freePort();
  const prefix = nginxPrefix((cachePath) => nginxConf(config, { listen: { host: '127.0.0.1', port }, cachePath, ...opts }), MODULES);
  if (httpExtra !== undefined) writeFileSync(prefix.conf, readFileSync(prefix.conf, 'utf8').replace('http {\n', `http {\n  ${httpExtra}\n`));
  try {
    const t = nginxTest(nginx.path!, prefix.dir);
    assert.equal(t.status, 0, t.output);
    return { instance: await startNginx(nginx.path!, prefix, port), port };
  } catch (err) {
    prefix.remove();
    throw err;
  }
}
