// `npm start` from a fresh clone: `npm ci` no longer compiles (the build runs
// on prepack, so that `npm ci --omit=dev` works without TypeScript), so the
// demo compiles src/ into dist/ first when dist/ is missing or older than a
// source file. Costs one stat per source file when dist/ is current.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function builtAt() {
  try {
    return statSync(join(root, 'dist', 'cli.js')).mtimeMs;
  } catch {
    return 0;
  }
}

const sources = Math.max(newest(join(root, 'src')), statSync(join(root, 'tsconfig.json')).mtimeMs, statSync(join(root, 'tsconfig.build.json')).mtimeMs);
if (builtAt() <= sources) {
  let tsc;
  try {
    tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    statSync(tsc);
  } catch {
    process.stderr.write('dist/ is missing or out of date and TypeScript is not installed: run npm ci (with dev dependencies), then npm start\n');
    process.exit(1);
  }
  process.stderr.write('compiling src/ into dist/ (npm run build)...\n');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
