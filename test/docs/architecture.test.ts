/*
 * The architecture, held by a test: the engine (core, cache, introspection,
 * policy, routing, config) imports no front door, and no front door imports
 * another, so each front door only translates (DESIGN.md "one engine, many
 * front doors").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const FRONT_DOORS = ['proxy', 'forward-auth', 'middleware'];
const ENGINE = ['core', 'cache', 'introspection', 'policy', 'routing', 'config', 'net', 'observability'];

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Top-level folders of src/ that a file imports from (relative imports only). */
function importedFolders(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
    const target = relative(SRC, join(file, '..', m[1]!));
    out.push(target.split('/')[0]!);
  }
  return out;
}

test('the engine imports no front door, and no front door imports another', () => {
  const problems: string[] = [];
  for (const file of files(SRC)) {
    const folder = relative(SRC, file).split('/')[0]!;
    for (const imported of importedFolders(file)) {
      if (ENGINE.includes(folder) && FRONT_DOORS.includes(imported)) problems.push(`${relative(SRC, file)} (engine) imports ${imported}/`);
      if (FRONT_DOORS.includes(folder) && FRONT_DOORS.includes(imported) && imported !== folder) problems.push(`${relative(SRC, file)} imports another front door, ${imported}/`);
    }
  }
  assert.deepEqual(problems, []);
});
