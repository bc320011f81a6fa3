/*
 * What the package loads at run time, read from the compiled dist/ (where
 * type-only imports are gone): from the bin and every `exports` entry, every
 * module reached through static imports and `import('...')`. None may be a
 * development-only file (dist/dev: the demo, the dev authorization server on
 * oidc-provider), and every package named must be a dependency (or a declared
 * peer), since `npm ci --omit=dev` and a global install leave the others out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { builtinModules } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT, ensureBuilt } from '../helpers/cli.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  bin: Record<string, string>;
  exports: Record<string, { default: string }>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies?: Record<string, string>;
};

/** Statements at the start of a line (doc comments start with ` * `), and dynamic imports. */
const IMPORT = /^\s*(?:import|export)\b(?:[^;'"]*?\bfrom)?\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;

/** The package name of a bare specifier (`@scope/name/sub` -> `@scope/name`). */
function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

function reach(entries: string[]): { files: Set<string>; packages: Map<string, string> } {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = (m[1] ?? m[2])!;
      if (spec.startsWith('.')) queue.push(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:') && !builtinModules.includes(packageOf(spec))) packages.set(packageOf(spec), relative(ROOT, file));
    }
  }
  return { files, packages };
}

test('runtime: the bin and every exported entry reach no dist/dev module and only packages that are dependencies or peers', () => {
  ensureBuilt();
  const binScript = readFileSync(join(ROOT, pkg.bin['phantom-gateway']!), 'utf8');
  const binTarget = /from '(\.\.\/dist\/[^']+)'/.exec(binScript)?.[1];
  assert.ok(binTarget, 'the bin imports the compiled CLI');
  const entries = [resolve(ROOT, 'bin', binTarget!), ...Object.values(pkg.exports).map((e) => resolve(ROOT, e.default))];
  const { files, packages } = reach(entries);
  assert.ok(files.size > 20, `the walk follows imports (${files.size} files)`);
  assert.ok(files.has(resolve(ROOT, 'dist/proxy/server.js')) && files.has(resolve(ROOT, 'dist/forward-auth/envoy-grpc.js')));
  const devFiles = [...files].filter((f) => relative(ROOT, f).startsWith('dist/dev/'));
  assert.deepEqual(devFiles, [], 'no development-only module is loaded');
  const allowed = new Set([...Object.keys(pkg.dependencies), ...Object.keys(pkg.peerDependencies ?? {})]);
  const strays = [...packages].filter(([name]) => !allowed.has(name)).map(([name, from]) => `${name} (from ${from})`);
  assert.deepEqual(strays, [], 'every package loaded at run time is a dependency');
  assert.ok(!packages.has('oidc-provider') && !packages.has('koa'));
  assert.ok(packages.has('undici') && packages.has('@grpc/grpc-js'), 'the walk sees bare imports');
});

test('runtime: oidc-provider, the demo and the dev authorization server are development dependencies and files only', () => {
  assert.ok('oidc-provider' in pkg.devDependencies);
  assert.ok(!('oidc-provider' in pkg.dependencies));
  const shipped = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).files as string[];
  assert.ok(shipped.includes('!dist/dev'), 'dist/dev is left out of the package');
});
