/*
 * The Dockerfile, checked without Docker (this machine cannot pull base
 * images): parsed, then held against the repository and the package: every
 * COPY source exists and is in the build context (.dockerignore), the image
 * runs the package's bin as a non-root user on Node 20, and the healthcheck
 * asks the admin listener's /livez (its script is run here against a real
 * listener).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, ensureBuilt } from '../helpers/cli.js';
import * as schema from '../../src/config/schema.js';

const run = promisify(execFile);

interface Instruction {
  op: string;
  args: string;
  line: number;
}

/** Dockerfile instructions: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending: { text: string; line: number } | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd();
    if (pending === undefined && (line.trim() === '' || line.trimStart().startsWith('#'))) return;
    if (pending !== undefined && line.trimStart().startsWith('#')) return;
    const continued = line.endsWith('\\');
    const body = continued ? line.slice(0, -1) : line;
    pending = pending === undefined ? { text: body, line: i + 1 } : { text: `${pending.text} ${body.trim()}`, line: pending.line };
    if (!continued) {
      const m = /^\s*(\S+)\s*(.*)$/.exec(pending.text)!;
      out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: pending.line });
      pending = undefined;
    }
  });
  return out;
}

/** Whether .dockerignore lets `path` into the build context (last matching pattern wins). */
function inContext(patterns: string[], path: string): boolean {
  let included = true;
  for (const p of patterns) {
    const negated = p.startsWith('!');
    const pattern = (negated ? p.slice(1) : p).replace(/\/$/, '');
    const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
    if (re.test(path)) included = negated;
  }
  return included;
}

const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const instructions = parseDockerfile(text);
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; engines: { node: string } };
const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));

/** Stages by name: their instructions. */
function stages(): Map<string, Instruction[]> {
  const args = new Map<string, string>();
  const result = new Map<string, Instruction[]>();
  let current: Instruction[] | undefined;
  for (const ins of instructions) {
    if (ins.op === 'ARG' && current === undefined) {
      const [k, v] = ins.args.split('=');
      args.set(k!, v ?? '');
    }
    if (ins.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)!;
      const image = m[1]!.replace(/\$\{(\w+)\}/g, (_, k: string) => args.get(k) ?? '');
      current = [{ ...ins, args: image }];
      result.set(m[2] ?? `#${result.size}`, current);
    } else current?.push(ins);
  }
  return result;
}

const all = stages();
const names = [...all.keys()];
const runtime = all.get(names[names.length - 1]!)!;
const exec = (ins: Instruction | undefined) => JSON.parse(ins!.args) as string[];
const last = (list: Instruction[], op: string) => list.filter((i) => i.op === op).at(-1);

describe('Dockerfile (parsed; not built: this machine cannot pull base images)', () => {
  test('multi-stage: a build stage compiling with dev dependencies, a runtime stage with production ones only', () => {
    assert.ok(names.length >= 2, 'at least two stages');
    const build = all.get('build');
    assert.ok(build, 'a stage named build (docker-compose.yml targets it)');
    const buildRuns = build.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
    assert.match(buildRuns, /npm ci(?! --omit)/);
    assert.match(buildRuns, /npm run build/);
    const runtimeRuns = runtime.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
    assert.match(runtimeRuns, /npm ci --omit=dev/);
    assert.doesNotMatch(runtimeRuns, /npm run build|tsc/);
    assert.equal(last(runtime, 'ENV')?.args, 'NODE_ENV=production');
  });

  test('every stage is based on Node 20, the release engines allows', () => {
    assert.match(pkg.engines.node, /^>=20\./);
    for (const [name, list] of all) assert.match(list[0]!.args, /^node:20(?:[.-]|$)/, `stage ${name}`);
    assert.match(runtime[0]!.args, /-slim$/, 'a slim runtime image');
  });

  test('every COPY source exists in the repository and is in the build context; --from sources are made by that stage', () => {
    ensureBuilt();
    let copies = 0;
    for (const [name, list] of all) {
      for (const ins of list.filter((i) => i.op === 'COPY')) {
        copies++;
        const from = /--from=(\S+)/.exec(ins.args)?.[1];
        const parts = ins.args.replace(/--\S+/g, '').trim().split(/\s+/);
        const sources = parts.slice(0, -1);
        assert.ok(sources.length > 0, `line ${ins.line}`);
        for (const src of sources) {
          if (from !== undefined) {
            const producer = all.get(from);
            assert.ok(producer, `line ${ins.line}: stage ${from} exists`);
            const made = producer!.filter((i) => i.op === 'RUN' || i.op === 'COPY').map((i) => i.args).join('\n');
            assert.ok(made.includes(src), `line ${ins.line}: stage ${from} makes ${src}`);
            // /out/dist is dist/ as npm run build makes it here.
            assert.ok(existsSync(join(ROOT, src.replace(/^\/out\//, ''))), `line ${ins.line}: ${src} is built output`);
          } else {
            assert.ok(existsSync(join(ROOT, src)), `stage ${name}, line ${ins.line}: ${src} exists`);
            assert.ok(inContext(ignore, src), `line ${ins.line}: ${src} is not excluded by .dockerignore`);
          }
        }
      }
    }
    assert.ok(copies >= 6);
    assert.ok(!inContext(ignore, 'node_modules') && !inContext(ignore, 'dist') && !inContext(ignore, '.git') && !inContext(ignore, 'test'), '.dockerignore keeps the rest out');
  });

  test('the image runs the package bin with --config /etc/phantom-gateway/gateway.yaml as a non-root user', () => {
    const [binName, binPath] = Object.entries(pkg.bin)[0]!;
    assert.deepEqual(exec(last(runtime, 'ENTRYPOINT')), [binName]);
    assert.deepEqual(exec(last(runtime, 'CMD')), ['--config', '/etc/phantom-gateway/gateway.yaml']);
    const link = runtime.find((i) => i.op === 'RUN' && i.args.includes(`/usr/local/bin/${binName}`));
    assert.ok(link?.args.includes(`/app/${binPath}`), 'the bin on PATH is the package bin');
    assert.ok(existsSync(join(ROOT, binPath)));
    const user = last(runtime, 'USER')?.args;
    assert.ok(user !== undefined && !/^(root|0)(:|$)/.test(user), `USER ${user}`);
    // USER must come after every RUN that needs root (npm ci, ln -s).
    assert.ok(runtime.indexOf(last(runtime, 'USER')!) > runtime.indexOf(last(runtime, 'RUN')!));
  });

  describe('HEALTHCHECK: the admin listener /livez, with node fetch (no curl in slim)', () => {
    const hc = last(runtime, 'HEALTHCHECK')!;
    const cmd = JSON.parse(hc.args.slice(hc.args.indexOf('CMD') + 3).trim()) as string[];
    const servers: ReturnType<typeof createServer>[] = [];
    after(() => {
      for (const s of servers) s.close();
    });

    test('names /livez on the admin port', () => {
      assert.equal(cmd[0], 'node');
      assert.equal(cmd[1], '-e');
      assert.match(cmd[2]!, /http:\/\/127\.0\.0\.1:(\d+)\/livez/);
      assert.match(hc.args, /--timeout=\d+s/);
      const defaults = (schema as Record<string, unknown>).ADMIN_DEFAULTS as { port: number } | undefined;
      // Once the admin listener is in the schema, the default port must agree.
      if (defaults) assert.equal(Number(/127\.0\.0\.1:(\d+)\/livez/.exec(cmd[2]!)![1]), defaults.port);
    });

    test('its script exits 0 on 200 and 1 on 503 or on nothing listening', async () => {
      let status = 200;
      const seen: string[] = [];
      const server = createServer((req, res) => {
        seen.push(`${req.method} ${req.url}`);
        res.writeHead(status).end();
      });
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/livez`;
      const check = () =>
        run(process.execPath, cmd.slice(1), { env: { HEALTHCHECK_URL: url }, timeout: 10_000 }).then(
          () => 0,
          (e: { code: number }) => e.code,
        );
      assert.equal(await check(), 0);
      status = 503;
      assert.equal(await check(), 1);
      assert.deepEqual(seen, ['GET /livez', 'GET /livez']);
      await new Promise<void>((r) => server.close(() => r()));
      assert.equal(await check(), 1);
    });
  });
});
