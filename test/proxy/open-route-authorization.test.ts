/*
 * Open routes (phantom_token: false) and the client's Authorization: the
 * reverse proxy drops it unless the route says forward_authorization: true,
 * so the opaque token never leaves the gateway.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { suiteStack } from '../helpers/gateway.js';

const yaml = (as: string, api: string) => `
phantom_token:
  introspection_endpoint: ${as}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
routes:
  - path: /api
    upstream: ${api}
  - path: /public
    upstream: ${api}
    phantom_token: false
  - path: /legacy
    upstream: ${api}
    phantom_token: false
    forward_authorization: true
`;

const authorizations = (raw: readonly string[]) => raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'authorization');

describe('reverse proxy: the client\'s Authorization on open routes', { timeout: 10_000 }, () => {
  const stack = suiteStack((as, api) => yaml(as.url, api.url));

  test('an open route: the upstream receives no Authorization (Bearer opaque token or Basic), and nothing is introspected', async () => {
    for (const credential of ['Bearer opaque-token-abc', 'Basic dTpw']) {
      stack.api.received.length = 0;
      const res = await request(`${stack.gw.url}/public/x`, { headers: { authorization: credential } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal(stack.api.received.length, 1);
      assert.deepEqual(authorizations(stack.api.received[0]!.rawHeaders), [], credential);
    }
    assert.equal(stack.as.calls.length, 0);
  });

  test('forward_authorization: true: the client\'s Authorization reaches the upstream unchanged', async () => {
    const res = await request(`${stack.gw.url}/legacy/x`, { headers: { authorization: 'Basic dTpw' } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.deepEqual(authorizations(stack.api.received[0]!.rawHeaders), ['Basic dTpw']);
    assert.equal(stack.as.calls.length, 0);
  });

  test('two Authorization fields on an open route are still refused (400), with or without the option', async () => {
    for (const path of ['/public/x', '/legacy/x']) {
      const res = await request(`${stack.gw.url}${path}`, { headers: ['authorization', 'Basic a', 'authorization', 'Basic b'] });
      assert.equal(res.statusCode, 400, path);
      await res.body.dump();
    }
    assert.equal(stack.api.received.length, 0);
  });

  test('a protected route still replaces the opaque token with the JWT (unchanged)', async () => {
    const jwt = await stack.as.activate('tok-open-route-suite', { scope: 'read' });
    const res = await request(`${stack.gw.url}/api/x`, { headers: { authorization: 'Bearer tok-open-route-suite' } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.deepEqual(authorizations(stack.api.received[0]!.rawHeaders), [`Bearer ${jwt}`]);
  });
});

describe('config: forward_authorization', () => {
  const text = (route: string) => `phantom_token:
  introspection_endpoint: https://as.example/i
  client_id: c
  client_secret: s
routes:
  - path: /api
    upstream: http://127.0.0.1:3000
${route}`;

  test('on a protected route: a config error with its line', () => {
    const t = text('    forward_authorization: true\n');
    assert.throws(
      () => parseConfig(t, { file: 'gateway.yaml', env: {} }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.problems.length === 1 &&
        e.problems[0] === "gateway.yaml:8: routes[0].forward_authorization: is only for open routes (phantom_token: false): on a protected route the JWT always replaces the client's Authorization",
    );
  });

  test('default false on every route; true only where an open route says so', () => {
    const cfg = parseConfig(text('  - path: /a\n    upstream: http://127.0.0.1:3000\n    phantom_token: false\n  - path: /b\n    upstream: http://127.0.0.1:3000\n    phantom_token: false\n    forward_authorization: "true"\n'), { env: {} });
    assert.deepEqual(cfg.routes.map((r) => r.forward_authorization), [false, false, true]);
  });

  test('not a boolean: refused with its line', () => {
    assert.throws(
      () => parseConfig(text('  - path: /a\n    upstream: http://127.0.0.1:3000\n    phantom_token: false\n    forward_authorization: yes\n'), { file: 'gateway.yaml', env: {} }),
      (e: unknown) => e instanceof ConfigError && e.problems[0] === 'gateway.yaml:11: routes[1].forward_authorization: must be true or false',
    );
  });
});
