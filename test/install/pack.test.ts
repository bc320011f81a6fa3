/*
 * The package as users get it: `npm pack`, then a global install of the
 * tarball into an empty prefix with --omit=dev (so oidc-provider, koa,
 * TypeScript and tsx are absent), then the installed `phantom-gateway`
 * command run for real: --version, --check, and a gateway serving one request
 * between a scripted introspection endpoint and an echo upstream.
 *
 * The registry is reachable; --prefer-offline takes the packages from npm's
 * cache when `npm ci` already fetched them (CI does).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { ROOT, ensureBuilt, freePort } from '../helpers/cli.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  scripts: Record<string, string>;
  devDependencies: Record<string, string>;
  dependencies: Record<string, string>;
};
/** node first on PATH: the installed bin is `#!/usr/bin/env node`. */
const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ''}`;
const npmEnv = { ...process.env, PATH, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

describe('install: npm pack, then npm install -g --omit=dev of the tarball into an empty prefix', () => {
  let work: string;
  let prefix: string;
  let installed: string;
  let bin: string;
  let packed: { path: string }[];
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  const children: ReturnType<typeof spawn>[] = [];

  before(async () => {
    ensureBuilt();
    work = mkdtempSync(join(tmpdir(), 'phantom-gateway-pack-'));
    prefix = join(work, 'prefix');
    // --ignore-scripts: prepack would compile again; ensureBuilt() just did
    // (the test below checks that prepack is the build).
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, env: npmEnv, maxBuffer: 16 * 1024 * 1024 });
    const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    packed = info!.files;
    const tgz = join(work, info!.filename);
    await run('npm', ['install', '-g', '--prefix', prefix, '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund', tgz], {
      cwd: work,
      env: npmEnv,
      timeout: 120_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    installed = join(prefix, 'lib', 'node_modules', pkg.name);
    bin = join(prefix, 'bin', 'phantom-gateway');
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await as?.close();
    await api?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the build runs on prepack, not prepare (npm ci --omit=dev has no TypeScript to run it)', () => {
    assert.equal(pkg.scripts.prepare, undefined);
    assert.match(pkg.scripts.prepack ?? '', /npm run build/);
    assert.ok('oidc-provider' in pkg.devDependencies && !('oidc-provider' in pkg.dependencies), 'oidc-provider is a dev dependency');
  });

  test('the tarball ships bin, dist, proto and LICENSE, without dist/dev, sources or tests', () => {
    const paths = packed.map((f) => f.path);
    for (const p of ['bin/phantom-gateway.js', 'dist/cli.js', 'dist/index.js', 'dist/index.d.ts', 'proto/envoy/service/auth/v3/external_auth.proto', 'LICENSE', 'README.md', 'package.json']) {
      assert.ok(paths.includes(p), `${p} is in the tarball`);
    }
    assert.deepEqual(paths.filter((p) => /^(dist\/dev\/|src\/|test\/|bench\/|node_modules\/)/.test(p)), []);
  });

  test('the install holds no dev dependency: oidc-provider, koa, typescript and tsx are absent', () => {
    assert.ok(existsSync(join(installed, 'dist', 'cli.js')));
    for (const dep of ['oidc-provider', 'koa', 'typescript', 'tsx', 'fast-check']) {
      assert.ok(!existsSync(join(installed, 'node_modules', dep)) && !existsSync(join(prefix, 'lib', 'node_modules', dep)), `${dep} is not installed`);
    }
    for (const dep of Object.keys(pkg.dependencies)) assert.ok(existsSync(join(installed, 'node_modules', dep)), `${dep} is installed`);
  });

  test('phantom-gateway --version prints the package version', async () => {
    const { stdout } = await run(bin, ['--version'], { cwd: work, env: { PATH } });
    assert.equal(stdout, `${pkg.version}\n`);
  });

  test('phantom-gateway --check validates a configuration', async () => {
    const file = join(work, 'check.yaml');
    writeFileSync(file, config(8080));
    const { stdout, stderr } = await run(bin, ['--config', file, '--check'], { cwd: work, env: { PATH } });
    assert.equal(stdout, `${file}: configuration is valid (1 route(s))\n`);
    assert.equal(stderr, '');
  });

  test('the installed gateway serves a request (200, the upstream gets the JWT, one introspection) and stops on SIGTERM', async () => {
    const port = await freePort();
    const file = join(work, 'gateway.yaml');
    writeFileSync(file, config(port));
    const child = spawn(bin, ['--config', file], { cwd: work, env: { PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once('close', (code, signal) => r({ code, signal })));
    const deadline = Date.now() + 15_000;
    while (!/phantom-gateway listening/.test(out)) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `the gateway did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const jwt = await as.activate('opaque-pack-token');
    const res = await request(`http://127.0.0.1:${port}/api/items`, { headers: { authorization: 'Bearer opaque-pack-token' } });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    assert.equal(api.received.length, 1);
    assert.equal(api.received[0]!.headers.authorization, `Bearer ${jwt}`);
    assert.equal(as.callsFor('opaque-pack-token'), 1);
    child.kill('SIGTERM');
    const { code } = await exited;
    assert.equal(code, 0, out);
    assert.doesNotMatch(out, /opaque-pack-token/, 'the token is never logged');
  });

  test('import and require of the package root, and import of phantom-gateway/envoy, from a project that depends on it', async () => {
    const project = join(work, 'project');
    mkdirSync(join(project, 'node_modules'), { recursive: true });
    symlinkSync(installed, join(project, 'node_modules', pkg.name), 'dir');
    writeFileSync(join(project, 'package.json'), '{ "name": "uses-phantom-gateway", "private": true, "type": "module" }\n');
    writeFileSync(
      join(project, 'check.mjs'),
      `import { createRequire } from 'node:module';
const esm = await import('phantom-gateway');
const cjs = createRequire(import.meta.url)('phantom-gateway');
const envoy = await import('phantom-gateway/envoy');
console.log(JSON.stringify({ esm: typeof esm.Gateway, cjs: typeof cjs.createGuards, parse: typeof esm.parseConfig, envoy: Object.keys(envoy).length > 0 }));
`,
    );
    const { stdout, stderr } = await run(process.execPath, ['check.mjs'], { cwd: project, env: { PATH } });
    assert.deepEqual(JSON.parse(stdout), { esm: 'function', cjs: 'function', parse: 'function', envoy: true });
    assert.doesNotMatch(stderr, /Error/);
  });

  function config(port: number): string {
    return `listen: { host: 127.0.0.1, port: ${port} }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: pack-test-secret
routes:
  - path: /api
    upstream: ${api.url}
`;
  }
});
