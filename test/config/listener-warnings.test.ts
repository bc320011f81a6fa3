import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { startupWarnings } from '../../src/config/warnings.js';

/*
 * Review findings (correctness / security hardening) on which listeners a
 * configuration starts. Both are silent today: no error, no start-up warning.
 */

const base = (extra: string, route = '    upstream: http://127.0.0.1:3000\n') => `
phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: a
  client_secret: b
${extra}
routes:
  - path: /api
${route}`;

describe('listener combinations a user would not notice are warned about', () => {
  test('adding forward_auth to a proxy configuration without `listen` does not silently drop the proxy and every upstream', () => {
    // A working proxy config (default listener 0.0.0.0:8080) that gains a forward_auth block.
    const before = parseConfig(base(''), { file: 'x.yaml', env: {} });
    assert.ok(before.listen !== undefined, 'sanity: the proxy runs');
    let after;
    try {
      after = parseConfig(base('forward_auth: {}'), { file: 'x.yaml', env: {} });
    } catch {
      return; // refused with an error: fine
    }
    const said = startupWarnings(after).some((w) => /upstream|listen|proxy/i.test(w.message));
    assert.ok(after.listen !== undefined || said, 'routes[].upstream set, no proxy listener, and nothing says so');
  });

  test('a forward-auth or gRPC listener off loopback is warned about (it hands a JWT to whoever shows an opaque token; gRPC is plaintext)', () => {
    const http = parseConfig(base('forward_auth:\n  listen: { host: 0.0.0.0, port: 8081 }', ''), { file: 'x.yaml', env: {} });
    assert.ok(startupWarnings(http).length > 0, 'forward_auth.listen.host 0.0.0.0: no warning');
    const grpc = parseConfig(base('forward_auth:\n  grpc: { host: 0.0.0.0, port: 9191 }', ''), { file: 'x.yaml', env: {} });
    assert.ok(startupWarnings(grpc).length > 0, 'forward_auth.grpc.host 0.0.0.0: no warning');
  });

  test('`forward_auth:` with nothing under it (YAML null) is the HTTP decision listener on its defaults, not a type error', () => {
    const c = parseConfig(base('forward_auth:', ''), { file: 'x.yaml', env: {} });
    assert.deepEqual(c.forward_auth?.listen, { host: '127.0.0.1', port: 8081 });
  });

  test('path_prefix with only the gRPC service (no HTTP listener) is warned about: it is not used', () => {
    const c = parseConfig(base('forward_auth:\n  path_prefix: /authz\n  grpc: { port: 9191 }', ''), { file: 'x.yaml', env: {} });
    assert.ok(startupWarnings(c).some((w) => /path_prefix/.test(w.message)));
  });
});

describe('the admin listener off loopback is warned about', () => {
  test('admin on 0.0.0.0: a warning naming admin.listen.host; on loopback and on a private address: none about it', () => {
    const about = (yaml: string) => startupWarnings(parseConfig(base(yaml), { file: 'x.yaml', env: {} })).filter((w) => w.message.startsWith('admin.listen.host'));
    const open = about('admin: { listen: { host: 0.0.0.0, port: 8082 } }');
    assert.equal(open.length, 1);
    assert.match(open[0]!.message, /without a token/);
    assert.deepEqual(open[0]!.fields, { 'admin.listen.host': '0.0.0.0' });
    assert.equal(about('admin: {}').length, 0, 'the default, 127.0.0.1');
    assert.equal(about('admin: { listen: { host: 10.1.2.3, port: 8082 } }').length, 0, 'a private address is a deliberate choice');
  });
});
