/*
 * `phantom-gateway schema`: the JSON Schema (draft 2020-12) editors check
 * gateway.yaml with, generated from the zod schema. Checked with Ajv (a
 * development dependency through fastify) against the shipped examples and
 * the README's full configurations.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { configJsonSchema, runSchema, SCHEMA_ID } from '../../src/config/json-schema.js';
import { parseConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { ensureBuilt, runCli } from '../helpers/cli.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const schema = configJsonSchema();
type Validate = ((data: unknown) => boolean) & { errors?: unknown[] | null };
const validate = new (Ajv2020 as unknown as new (o: object) => { compile(s: object): Validate })({ strict: false, allErrors: true }).compile(schema);

function valid(doc: unknown): boolean {
  return validate(doc);
}

/** Every `examples/` configuration: demo.yaml and each gateway's gateway.yaml. */
function exampleFiles(): string[] {
  const dir = join(ROOT, 'examples');
  return ['demo.yaml', ...readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => join(d.name, 'gateway.yaml'))].map((f) => join(dir, f));
}

/** The README's YAML blocks that are whole configurations (they have `routes`). */
function readmeConfigs(): string[] {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks.filter((b) => {
    try {
      const doc = parse(b) as unknown;
      return typeof doc === 'object' && doc !== null && 'routes' in doc;
    } catch {
      return false;
    }
  });
}

describe('phantom-gateway schema: the configuration as JSON Schema', () => {
  test('draft 2020-12, with $id and a title', () => {
    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
    assert.equal(schema.$id, SCHEMA_ID);
    assert.equal(schema.type, 'object');
  });

  test('generated: its top-level options are exactly the zod schema\'s (options added there appear here)', () => {
    assert.deepEqual(Object.keys(schema.properties as object).sort(), Object.keys(configSchema.shape).sort());
  });

  test('every example configuration in examples/ is valid', () => {
    const files = exampleFiles();
    assert.ok(files.length >= 6, files.join(', '));
    for (const f of files) assert.ok(valid(parse(readFileSync(f, 'utf8'))), `${f}: ${JSON.stringify(validate.errors)}`);
  });

  test("the README's full configurations are valid (and the loader agrees)", () => {
    const blocks = readmeConfigs();
    assert.ok(blocks.length >= 3, `only ${blocks.length} README blocks with routes`);
    for (const b of blocks) {
      assert.ok(valid(parse(b)), `${JSON.stringify(validate.errors)}\n${b}`);
    }
  });

  test('an unknown top-level option is refused, as the loader refuses it', () => {
    const good = { routes: [{ path: '/api', upstream: 'http://127.0.0.1:3000', phantom_token: false }] };
    assert.equal(valid({ ...good, upstreams: {} }), false);
    assert.throws(() => parseConfig('routes:\n  - path: /api\n    upstream: http://127.0.0.1:3000\n    phantom_token: false\nupstreams: {}\n', { env: {} }));
    assert.equal(valid(good), true);
  });

  test('unknown options inside blocks and wrong types are refused', () => {
    const route = { path: '/api', upstream: 'http://127.0.0.1:3000' };
    assert.equal(valid({ routes: [route], phantom_token: { introspection_url: 'https://as/i' } }), false);
    assert.equal(valid({ routes: [route], listen: { port: 'eighty' } }), false);
    assert.equal(valid({ routes: [route], phantom_token: { introspection_response: 'xml' } }), false);
    assert.equal(valid({ routes: [{ ...route, phantom_token: 'yes' }] }), false);
    assert.equal(valid({ routes: [] }), false);
  });

  test('what the loader accepts besides the parsed types: ${VAR} anywhere, "8080", "true", workers: auto, forward_auth: (empty), phantom_token: false on a route', () => {
    const route = { path: '/api', upstream: 'http://${API_HOST}:3000' };
    for (const doc of [
      { routes: [route], listen: { host: '0.0.0.0', port: '${PORT}' } },
      { routes: [route], listen: { port: '8080' }, log: { access_log: 'false' } },
      { routes: [route], phantom_token: { introspection_response: '${MODE:-jwt}', token_cache_seconds: '${TTL:-60}' } },
      { routes: [{ ...route, phantom_token: false, forward_authorization: true }], workers: 'auto' },
      { routes: [{ ...route, phantom_token: { scope: 'admin' } }], forward_auth: null },
    ]) {
      assert.ok(valid(doc), `${JSON.stringify(doc)}: ${JSON.stringify(validate.errors)}`);
    }
  });

  test('descriptions where cheap (top level, main options)', () => {
    const props = schema.properties as Record<string, { description?: string }>;
    assert.match(props.routes!.description!, /upstream/);
    const defs = schema.$defs as Record<string, { properties: Record<string, { description?: string }> }>;
    assert.match(defs.phantom_token!.properties.introspection_endpoint!.description!, /RFC 7662/);
  });

  test('runSchema prints the schema as JSON, with the version in the title; an extra argument is a usage error', async () => {
    let out = '';
    let err = '';
    const sink = (f: (s: string) => void) => new Writable({ write: (c: Buffer, _e, cb) => (f(c.toString()), cb()) });
    assert.equal(await runSchema([], sink((s) => (out += s)), sink((s) => (err += s))), 0);
    const printed = JSON.parse(out) as Record<string, unknown>;
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    assert.deepEqual(printed, configJsonSchema(version));
    assert.equal(err, '');
    out = '';
    assert.equal(await runSchema(['--config', 'x'], sink((s) => (out += s)), sink((s) => (err += s))), 2);
    assert.match(err, /unexpected argument "--config"/);
  });

  describe('the real command', () => {
    before(() => ensureBuilt());
    test('phantom-gateway schema: exit 0, the schema on stdout; --help names the editor hookup', async () => {
      const r = await runCli(['schema']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { $id: string }).$id, SCHEMA_ID);
      const help = await runCli(['schema', '--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /# yaml-language-server: \$schema=/);
    });
  });
});
