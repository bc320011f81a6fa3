import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';

const root = new URL('../../', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  exports: Record<string, { types: string; default: string }>;
  dependencies: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};

/** Import statements that load a module at run time (type-only imports are erased by verbatimModuleSyntax). */
function runtimeImportsOf(source: string, module: string): string[] {
  const re = new RegExp(`^\\s*(?:import|export)\\b(?!\\s+type\\b)[^;]*?from\\s+['"]${module}['"]|\\bimport\\(\\s*['"]${module}['"]|\\brequire\\(\\s*['"]${module}['"]`, 'gm');
  return source.match(re) ?? [];
}

test('the package exports phantom-gateway/express and phantom-gateway/fastify, built from src/middleware', () => {
  for (const name of ['express', 'fastify']) {
    const e = pkg.exports[`./${name}`];
    assert.deepEqual(e, { types: `./dist/middleware/${name}.d.ts`, default: `./dist/middleware/${name}.js` });
    assert.ok(existsSync(new URL(`src/middleware/${name}.ts`, root)), name);
  }
});

test('express and fastify are optional peer dependencies, never runtime dependencies, and the middleware never loads them', () => {
  for (const name of ['express', 'fastify']) {
    assert.equal(pkg.dependencies[name], undefined, name);
    assert.ok(pkg.peerDependencies?.[name], name);
    assert.equal(pkg.peerDependenciesMeta?.[name]?.optional, true, name);
    for (const file of ['common', 'express', 'fastify']) {
      const src = readFileSync(new URL(`src/middleware/${file}.ts`, root), 'utf8');
      assert.deepEqual(runtimeImportsOf(src, name), [], `src/middleware/${file}.ts imports ${name} at run time`);
      const built = new URL(`dist/middleware/${file}.js`, root);
      if (existsSync(built)) assert.deepEqual(runtimeImportsOf(readFileSync(built, 'utf8'), name), [], `dist/middleware/${file}.js`);
    }
  }
  // The checker itself sees a runtime import.
  assert.equal(runtimeImportsOf("import Fastify from 'fastify';\nimport type { X } from 'fastify';", 'fastify').length, 1);
});

test('the built subpaths load by the package name (after npm run build)', async (t) => {
  if (!existsSync(new URL('dist/middleware/express.js', root))) return t.skip('dist/ not built (npm test builds it first)');
  const ex = (await import('phantom-gateway/express' as string)) as { phantomToken: unknown };
  const fa = (await import('phantom-gateway/fastify' as string)) as { phantomToken: Record<symbol, unknown> };
  assert.equal(typeof ex.phantomToken, 'function');
  assert.equal(typeof fa.phantomToken, 'function');
  assert.equal(fa.phantomToken[Symbol.for('skip-override')], true);
  assert.equal(fa.phantomToken[Symbol.for('fastify.display-name')], 'phantom-gateway');
});
