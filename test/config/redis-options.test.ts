/*
 * `cache.redis`: what starts, what stops start-up with the option and its
 * line (never the URL's password or the key secret), and what is started
 * with a warning.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { startupWarnings } from '../../src/config/warnings.js';
import { startupFields } from '../../src/observability/startup.js';
import type { GatewayConfig } from '../../src/config/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-redis-options-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const SECRET = 'k'.repeat(40);

function yaml(redis: string): string {
  return `phantom_token:
  introspection_endpoint: http://127.0.0.1:9/introspect
  client_id: gw
  client_secret: s
routes:
  - path: /api
    upstream: http://127.0.0.1:9
cache:
  max_entries: 100
  redis:
${redis
  .trim()
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
`;
}
const parse = (text: string, env: Record<string, string> = {}): GatewayConfig => parseConfig(text, { file: 'gateway.yaml', env });
function problems(text: string, env: Record<string, string> = {}): string {
  try {
    parse(text, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems.join('\n');
  }
  assert.fail('configuration was accepted');
}

describe('cache.redis options', () => {
  test('a URL and a key secret: the defaults for the rest', () => {
    const c = parse(yaml(`url: redis://127.0.0.1:6379\nkey_secret: ${SECRET}`)).cache.redis!;
    assert.deepEqual(
      { ...c, key_secret: '(hidden)' },
      { url: 'redis://127.0.0.1:6379', key_secret: '(hidden)', key_prefix: 'phantom-gateway:', connect_timeout_ms: 1000, command_timeout_ms: 250, verify_ssl: true },
    );
  });

  test('the key secret from a file (one trailing newline allowed) or from a variable', () => {
    const file = join(dir, 'secret');
    writeFileSync(file, `${SECRET}\n`);
    assert.equal(parse(yaml(`url: redis://127.0.0.1\nkey_secret_file: ${file}`)).cache.redis!.key_secret_file, file);
    assert.equal(parse(yaml('url: redis://127.0.0.1\nkey_secret: ${RK}'), { RK: SECRET }).cache.redis!.key_secret, SECRET);
  });

  test('no key secret, both, a short one, an unreadable file: refused with the line, never the secret', () => {
    assert.match(problems(yaml('url: redis://127.0.0.1')), /gateway\.yaml:11: cache\.redis\.url: key_secret or key_secret_file is required/);
    const file = join(dir, 'both');
    writeFileSync(file, SECRET);
    assert.match(problems(yaml(`url: redis://127.0.0.1\nkey_secret: ${SECRET}\nkey_secret_file: ${file}`)), /:13: cache\.redis\.key_secret_file: key_secret and key_secret_file are both set/);
    const short = problems(yaml('url: redis://127.0.0.1\nkey_secret: too-short-secret'));
    assert.match(short, /:12: cache\.redis\.key_secret: must be 32 to 1024 printable characters/);
    assert.doesNotMatch(short, /too-short-secret/);
    assert.match(problems(yaml(`url: redis://127.0.0.1\nkey_secret_file: ${join(dir, 'missing')}`)), /:12: cache\.redis\.key_secret_file: cannot read .*\(ENOENT\)/);
    const weakFile = join(dir, 'weak');
    writeFileSync(weakFile, 'weak-secret-in-a-file');
    const weak = problems(yaml(`url: redis://127.0.0.1\nkey_secret_file: ${weakFile}`));
    assert.match(weak, /must be 32 to 1024/);
    assert.doesNotMatch(weak, /weak-secret-in-a-file/);
  });

  test('a URL that is not redis:// or rediss://, has a query, or a path that is not a database: refused, the password never echoed', () => {
    for (const url of ['http://u:hunter22@127.0.0.1', 'redis://u:hunter22@127.0.0.1/x', 'redis://u:hunter22@127.0.0.1/0?tls=1', 'hunter22']) {
      const p = problems(yaml(`url: "${url}"\nkey_secret: ${SECRET}`));
      assert.match(p, /:11: cache\.redis\.url: /, url);
      assert.doesNotMatch(p, /hunter22/, url);
    }
  });

  test('TLS options only with rediss://; an unreadable CA is refused with its line', () => {
    assert.match(problems(yaml(`url: redis://127.0.0.1\nkey_secret: ${SECRET}\nverify_ssl: false`)), /cache\.redis\.verify_ssl: only applies to a rediss:\/\/ url/);
    assert.match(problems(yaml(`url: rediss://127.0.0.1\nkey_secret: ${SECRET}\nca_file: ${join(dir, 'no-ca.pem')}`)), /:13: cache\.redis\.ca_file: cannot read/);
  });

  test('unknown options are refused with a suggestion', () => {
    assert.match(problems(yaml(`url: redis://127.0.0.1\nkey_secret: ${SECRET}\nkey_prefx: a`)), /key_prefx/);
  });

  test('warnings: plain redis:// to another host, no password, verify_ssl false; none on loopback; the startup line names Redis without its password', () => {
    const remote = startupWarnings(parse(yaml(`url: redis://redis.internal:6379\nkey_secret: ${SECRET}`))).map((w) => w.message);
    assert.ok(remote.some((m) => /plain redis:\/\/ to another host/.test(m)));
    assert.ok(remote.some((m) => /has no password/.test(m)));
    const tls = parse(yaml(`url: rediss://gw:pw-in-url@redis.internal:6380/2\nkey_secret: ${SECRET}\nverify_ssl: false`));
    const w = startupWarnings(tls);
    assert.deepEqual(
      w.map((x) => x.message).filter((m) => /redis/i.test(m)),
      ["cache.redis.verify_ssl is false: Redis's TLS certificate is NOT verified; never do this in production"],
    );
    assert.doesNotMatch(JSON.stringify(w), /pw-in-url/);
    const fields = startupFields(tls, { configFile: 'gateway.yaml', listeners: [] });
    assert.equal(fields.shared_cache, 'rediss://redis.internal:6380/2');
    assert.deepEqual(startupWarnings(parse(yaml(`url: redis://localhost\nkey_secret: ${SECRET}`))).filter((x) => /redis/i.test(x.message)), []);
  });
});
