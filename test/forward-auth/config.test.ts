import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/observability/logger.js';
import { Gateway } from '../../src/proxy/server.js';

const FILE = 'gateway.yaml';

function lineOf(text: string, needle: string): number {
  const i = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `fixture has no line containing ${needle}`);
  return i + 1;
}

const parse = (text: string): GatewayConfig => parseConfig(text, { file: FILE, env: {} });

function problems(text: string): readonly string[] {
  try {
    parse(text);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('configuration was accepted');
}

const PT = `phantom_token:
  introspection_endpoint: https://login.example.com/introspect
  client_id: gateway
  client_secret: s3cret
`;

describe('config: forward_auth', () => {
  test('forward-auth alone: no listen means no proxy listener, and routes need no upstream', () => {
    const cfg = parse(`${PT}forward_auth: {}\nroutes:\n  - path: /api\n  - path: /public\n    phantom_token: false\n`);
    assert.equal(cfg.listen, undefined);
    assert.deepEqual(cfg.forward_auth, { listen: { host: '127.0.0.1', port: 8081 }, keep_alive_timeout_ms: 75_000 });
    assert.equal(cfg.routes[0]!.upstream, undefined);
    assert.equal('upstream' in cfg.routes[0]!, false);
  });

  test('without forward_auth, an absent listen keeps meaning 0.0.0.0:8080, and forward_auth stays absent', () => {
    const cfg = parse(`${PT}routes:\n  - path: /api\n    upstream: http://127.0.0.1:3000\n`);
    assert.deepEqual(cfg.listen, { host: '0.0.0.0', port: 8080 });
    assert.equal('forward_auth' in cfg, false);
  });

  test('both listeners: every option given is kept', () => {
    const cfg = parse(
      `${PT}listen:\n  port: 9000\nforward_auth:\n  listen:\n    host: 10.0.0.5\n    port: 9191\n  path_prefix: /ext/authz\n  keep_alive_timeout_ms: 120000\n` +
        `  identity_headers:\n    sub: X-User\n    https://example.com/tenant: X-Tenant\nroutes:\n  - path: /api\n    upstream: http://127.0.0.1:3000\n`,
    );
    assert.deepEqual(cfg.listen, { host: '0.0.0.0', port: 9000 });
    assert.deepEqual(cfg.forward_auth, {
      listen: { host: '10.0.0.5', port: 9191 },
      path_prefix: '/ext/authz',
      keep_alive_timeout_ms: 120_000,
      identity_headers: { sub: 'X-User', 'https://example.com/tenant': 'X-Tenant' },
    });
  });

  test('a route without upstream beside the proxy listener is refused with its line, explicit listen or default', () => {
    const explicit = `${PT}listen:\n  port: 9000\nforward_auth: {}\nroutes:\n  - path: /ok\n    upstream: http://127.0.0.1:3000\n  - path: /api\n    phantom_token: false\n`;
    assert.deepEqual(problems(explicit), [
      `${FILE}:${lineOf(explicit, '- path: /api')}: routes[1].upstream: is required for the proxy listener ("/api"): give the route an upstream, or remove listen to run the forward-auth listener alone`,
    ]);
    const implicit = `${PT}routes:\n  - path: /api\n`;
    assert.match(problems(implicit)[0]!, new RegExp(`^${FILE}:${lineOf(implicit, '- path: /api')}: routes\\[0\\]\\.upstream: is required for the proxy listener`));
  });

  test('bad forward_auth values are reported with their lines', () => {
    const text =
      `${PT}forward_auth:\n  listen:\n    port: 70000\n    hots: x\n  path_prefix: /authz/\n  keep_alive_timeout_ms: 5\n` +
      `  identity_headers:\n    sub: X User\n    client_id: Authorization\n    scope: X-Accel-Redirect\n    email: x-user\n    name: Content-Type\n  timeout: 1\nroutes:\n  - path: /api\n`;
    assert.deepEqual(problems(text), [
      `${FILE}:${lineOf(text, 'port: 70000')}: forward_auth.listen.port: must be at most 65535`,
      `${FILE}:${lineOf(text, 'hots:')}: forward_auth.listen.hots: unknown option (did you mean "host"?)`,
      `${FILE}:${lineOf(text, 'path_prefix')}: forward_auth.path_prefix: must be / or start with / and contain only path characters, without a trailing / (no query, fragment, percent-encoding or empty segments)`,
      `${FILE}:${lineOf(text, 'keep_alive_timeout_ms')}: forward_auth.keep_alive_timeout_ms: must be at least 100`,
      `${FILE}:${lineOf(text, 'X User')}: forward_auth.identity_headers.sub: must be a header name (1 to 64 letters, digits and !#$%&'*+.^_\`|~-)`,
      `${FILE}:${lineOf(text, 'Authorization')}: forward_auth.identity_headers.client_id: must not be a header the decision itself sets, a hop-by-hop, caching, Content-*, CORS or forwarding header`,
      `${FILE}:${lineOf(text, 'X-Accel-Redirect')}: forward_auth.identity_headers.scope: must not be a header the decision itself sets, a hop-by-hop, caching, Content-*, CORS or forwarding header`,
      `${FILE}:${lineOf(text, 'Content-Type')}: forward_auth.identity_headers.name: must not be a header the decision itself sets, a hop-by-hop, caching, Content-*, CORS or forwarding header`,
      `${FILE}:${lineOf(text, 'timeout: 1')}: forward_auth.timeout: unknown option`,
    ]);
  });

  test('two claims sent as one header are refused with the line of the second', () => {
    const text = `${PT}forward_auth:\n  identity_headers:\n    sub: X-User\n    email: x-user\nroutes:\n  - path: /api\n`;
    assert.deepEqual(problems(text), [`${FILE}:${lineOf(text, 'x-user')}: forward_auth.identity_headers.email: header "x-user" is already given to claim "sub"`]);
  });

  test('path_prefix: dot segments and encoded characters are refused', () => {
    for (const bad of ['/a/../b', '/a/.', 'authz', '/a%2fb', '/a//b', '//']) {
      const text = `${PT}forward_auth:\n  path_prefix: "${bad}"\nroutes:\n  - path: /api\n`;
      assert.match(problems(text)[0]!, new RegExp(`^${FILE}:${lineOf(text, 'path_prefix')}: forward_auth\\.path_prefix: must`), bad);
    }
  });

  test('the proxy refuses a forward-auth-only configuration handed to it directly, naming the route', () => {
    const cfg = parse(`${PT}forward_auth: {}\nroutes:\n  - path: /api\n`);
    assert.throws(() => new Gateway(cfg, { logger: createLogger('silent') }), { name: 'TypeError', message: 'routes[0] ("/api") has no upstream: the proxy needs one for every route' });
  });
});
