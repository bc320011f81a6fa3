/*
 * The `admin` block: defaults, the token rules, token_file, and problems
 * reported with their YAML line, never with the token.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { adminToken } from '../../src/admin/token.js';
import { ensureBuilt, runCli, scratchDir } from '../helpers/cli.js';

const BASE = `
phantom_token:
  introspection_endpoint: http://127.0.0.1:9/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`;

function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, { file: 'gateway.yaml', env: {} });
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  assert.fail('expected the configuration to be refused');
}

describe('admin configuration', () => {
  let scratch: ReturnType<typeof scratchDir>;
  before(() => {
    scratch = scratchDir();
  });
  after(() => scratch.cleanup());

  test('absent: no admin listener (and so no metrics)', () => {
    assert.equal(parseConfig(BASE, { env: {} }).admin, undefined);
  });

  test('`admin:` alone: loopback, port 8082, no token', () => {
    const c = parseConfig(`${BASE}admin:\n`, { env: {} });
    assert.deepEqual(c.admin, { listen: { host: '127.0.0.1', port: 8082 } });
    assert.equal(adminToken(c.admin!), undefined);
  });

  test('a token from a variable; listen in a flow map', () => {
    const token = 'x'.repeat(12) + 'Y0-._~+/';
    const c = parseConfig(`${BASE}admin:\n  listen: { host: 0.0.0.0, port: 9901 }\n  token: \${ADMIN_TOKEN}\n`, { env: { ADMIN_TOKEN: token } });
    assert.deepEqual(c.admin, { listen: { host: '0.0.0.0', port: 9901 }, token });
  });

  test('a token too short, or with characters a Bearer header cannot carry: refused with its line, the value never repeated', () => {
    for (const bad of ['short-token', 'has a space in it 0123456789', 'quote"0123456789abcdef']) {
      const p = problems(`${BASE}admin:\n  token: '${bad}'\n`);
      assert.equal(p.length, 1, p.join('\n'));
      assert.match(p[0]!, /^gateway\.yaml:10: admin\.token: must be 16 to 1024 characters/);
      assert.ok(!p[0]!.includes(bad), 'the token is not echoed');
    }
  });

  test('token_file: read at start (one trailing newline allowed); unreadable or invalid is a problem with its line and without the content', () => {
    const good = scratch.write('token', 'abcdefghijklmnop0123456789\n');
    const c = parseConfig(`${BASE}admin:\n  token_file: ${good}\n`, { env: {} });
    assert.equal(adminToken(c.admin!), 'abcdefghijklmnop0123456789');

    const bad = scratch.write('bad-token', 'secret but short\n');
    let p = problems(`${BASE}admin:\n  token_file: ${bad}\n`);
    assert.equal(p.length, 1);
    assert.match(p[0]!, /^gateway\.yaml:10: admin\.token_file: the token in ".*bad-token" must be 16 to 1024/);
    assert.ok(!p[0]!.includes('secret but short'));

    p = problems(`${BASE}admin:\n  token_file: ${scratch.dir}/missing\n`);
    assert.match(p[0]!, /^gateway\.yaml:10: admin\.token_file: cannot read ".*missing" \(ENOENT\)$/);

    p = problems(`${BASE}admin:\n  token: abcdefghijklmnop0123\n  token_file: ${good}\n`);
    assert.deepEqual(p, ['gateway.yaml:11: admin.token_file: token and token_file are both set: keep one']);
  });

  test('unknown options get a hint; a bad port its line', () => {
    const p = problems(`${BASE}admin:\n  listen: { port: 99999 }\n  tokn: abcdefghijklmnop0123\n`);
    assert.deepEqual(p, ['gateway.yaml:10: admin.listen.port: must be at most 65535', 'gateway.yaml:11: admin.tokn: unknown option (did you mean "token"?)']);
  });

  test('--check reports admin problems with their line and exit code 2', async () => {
    ensureBuilt();
    const file = scratch.write('gateway.yaml', `${BASE}admin:\n  token: too-short\n`);
    const r = await runCli(['--config', file, '--check']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /gateway\.yaml:10: admin\.token: must be 16 to 1024 characters/);
    assert.ok(!r.stderr.includes('too-short'));
  });
});
