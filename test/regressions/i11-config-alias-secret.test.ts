/*
 * Review of issue 11 (YAML errors): a value starting with `*` is a YAML alias.
 * A client_secret such as `*Hx7...` (a password-style secret) makes the loader
 * throw a raw ReferenceError, not a ConfigError, whose message is the secret
 * itself ("Unresolved alias ...: <secret>"): printed by --check, logged by a
 * reload ("reload refused: ...") and returned in POST /reload's 422 body.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { ensureBuilt, runCli, scratchDir } from '../helpers/cli.js';

const SECRET = 'Hx7-unquoted-password-value';
const YAML = `phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: gateway-client
  client_secret: *${SECRET}
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`;

describe('review i11 config: an unquoted secret starting with * (a YAML alias)', () => {
  let scratch: ReturnType<typeof scratchDir>;
  before(() => {
    scratch = scratchDir();
  });
  after(() => scratch.cleanup());

  // Defect: src/config/load.ts lets yaml's "Unresolved alias" ReferenceError through, message = the alias name = the secret.
  test('refused as a ConfigError with its line, and the problem does not echo the value', () => {
    let err: unknown;
    try {
      parseConfig(YAML, { file: 'gateway.yaml', env: {} });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}`);
    assert.match(err.problems.join('\n'), /^gateway\.yaml:4: /m, 'the line of client_secret');
    assert.ok(!err.problems.join('\n').includes(SECRET), `the secret is not echoed: ${JSON.stringify(err.problems)}`);
  });

  test('--check: exit 2, and the secret appears nowhere in the output', async () => {
    ensureBuilt();
    const file = scratch.write('gateway.yaml', YAML);
    const r = await runCli(['--config', file, '--check']);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(!`${r.stdout}${r.stderr}`.includes(SECRET), `secret printed: ${r.stderr}`);
  });
});
