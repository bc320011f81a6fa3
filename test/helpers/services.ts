import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * System programs the integration tests run (NGINX, Caddy, Redis), found on
 * this machine or not. A test needing one that is missing skips with the
 * reason; under `CI=true` a missing one is a failure instead, so CI never
 * passes by skipping (`.ci/run` installs them).
 */
export function findProgram(name: string, debianPackage: string): { path: string; skip: false } | { path: undefined; skip: string } {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) {
    const path = `${dir}/${name}`;
    if (existsSync(path)) return { path, skip: false };
  }
  const which = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim() !== '') return { path: which.stdout.trim(), skip: false };
  const reason = `${name} is not installed (Debian package ${debianPackage}; .ci/run installs it)`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${reason}`);
  return { path: undefined, skip: reason };
}

/** A dynamic NGINX module file of Debian's packages, or a skip reason (a failure under CI=true). */
export function findNginxModule(file: string, debianPackage: string): { path: string; skip: false } | { path: undefined; skip: string } {
  const path = `/usr/lib/nginx/modules/${file}`;
  if (existsSync(path)) return { path, skip: false };
  const reason = `NGINX module ${file} is not installed (Debian package ${debianPackage}; .ci/run installs it)`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${reason}`);
  return { path: undefined, skip: reason };
}
