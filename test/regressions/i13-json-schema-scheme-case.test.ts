/*
 * i13 regression: `phantom-gateway schema` marks a valid `scheme` as an
 * error.
 *
 * The config takes `scheme` in any case ("any case in the config (Curity
 * writes DPoP)": `dpop`, `DPOP`, `bearer`, ` Any `, through the zod
 * preprocess in schema.ts), but the JSON Schema generated for editors
 * only has the enum ["Bearer", "DPoP", "any"]. A user moving a Curity-style
 * or hand-written `scheme: dpop` over gets a red squiggle in VS Code (and a
 * failing CI check when the schema is used to lint configs) for a file the
 * gateway accepts.
 *
 * Fix: give the JSON Schema a case-insensitive pattern for scheme (e.g.
 * `^\s*([Bb][Ee][Aa][Rr][Ee][Rr]|[Dd][Pp][Oo][Pp]|[Aa][Nn][Yy])\s*$`), as
 * other preprocessed options (integers given as strings) already have.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Ajv2020 from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { configJsonSchema } from '../../src/config/json-schema.js';
import { parseConfig } from '../../src/config/load.js';

type Validate = ((data: unknown) => boolean) & { errors?: unknown[] | null };
const validate = new (Ajv2020 as unknown as new (o: object) => { compile(s: object): Validate })({ strict: false, allErrors: true }).compile(configJsonSchema());

describe('i13: scheme in any case, in the JSON Schema', () => {
  for (const scheme of ['dpop', 'DPOP', 'bearer', 'ANY']) {
    test(`scheme: ${scheme} is accepted by the gateway and by its JSON Schema`, () => {
      const yaml = `
phantom_token:
  introspection_endpoint: https://as.example.com/introspect
  client_id: gateway
  client_secret: s
  scheme: ${scheme}
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`;
      const config = parseConfig(yaml, { file: 'test.yaml', env: {} });
      const pt = config.routes[0]!.phantom_token;
      assert.ok(pt !== false && pt.scheme.toLowerCase() === scheme.toLowerCase(), 'the gateway takes it');
      assert.equal(validate(parse(yaml)), true, `the JSON Schema refuses scheme: ${scheme}: ${JSON.stringify(validate.errors)}`);
    });
  }
});
