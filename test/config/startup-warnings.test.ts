/*
 * Start-up warnings for settings that are valid but unsafe: a plain-http
 * introspection endpoint off loopback (tokens and the client secret in clear
 * text; RFC 7662 §4 requires TLS), and trusted_proxies entries wider than any
 * private range (0.0.0.0/0 and ::/0 trust every client's X-Forwarded-*).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { startupWarnings } from '../../src/config/warnings.js';
import { startGateway } from '../helpers/gateway.js';

const config = (endpoint: string, extra = '') =>
  parseConfig(
    `
phantom_token: { introspection_endpoint: "${endpoint}", client_id: c, client_secret: s }
routes:
  - { path: /api, upstream: "http://127.0.0.1:1" }
${extra}`,
    { file: 'f.yaml', env: {} },
  );

describe('start-up warnings', () => {
  test('an open route that is an extension spelling of a protected route warns (configured routes win over spellings)', () => {
    const cfg = parseConfig(
      `
phantom_token: { introspection_endpoint: "https://as.example/i", client_id: c, client_secret: s }
routes:
  - { path: /admin/, upstream: "http://127.0.0.1:1" }
  - { path: /admin.json, upstream: "http://127.0.0.1:1", phantom_token: false }
  - { path: /, upstream: "http://127.0.0.1:1" }
  - { path: /robots.txt, upstream: "http://127.0.0.1:1", phantom_token: false }
`,
      { file: 'f.yaml', env: {} },
    );
    const w = startupWarnings(cfg);
    assert.equal(w.length, 1);
    assert.match(w[0]!.message, /open route \/admin\.json is an extension spelling of the protected route for \/admin/);
  });


  for (const endpoint of ['http://login.example.com/introspect', 'http://10.0.0.5:8443/oauth/introspect', 'http://[2001:db8::1]/i', 'http://127.example/i']) {
    test(`plain-http introspection off loopback warns: ${endpoint}`, () => {
      const w = startupWarnings(config(endpoint));
      assert.equal(w.length, 1);
      assert.match(w[0]!.message, /plain http:\/\/.*unencrypted.*RFC 7662 §4/);
    });
  }

  for (const endpoint of ['https://login.example.com/introspect', 'http://127.0.0.1:9000/i', 'http://127.8.9.10/i', 'http://localhost:9000/i', 'http://LOCALHOST/i', 'http://[::1]:9000/i']) {
    test(`no warning for ${endpoint} (TLS, or this machine only)`, () => {
      assert.deepEqual(startupWarnings(config(endpoint)), []);
    });
  }

  test('one warning per endpoint, however many routes use it; another endpoint gets its own', () => {
    const cfg = parseConfig(
      `
phantom_token: { introspection_endpoint: "http://as.example/i", client_id: c, client_secret: s }
routes:
  - { path: /a, upstream: "http://127.0.0.1:1" }
  - { path: /b, upstream: "http://127.0.0.1:1", phantom_token: { scope: x } }
  - { path: /c, upstream: "http://127.0.0.1:1", phantom_token: { introspection_endpoint: "http://other.example/i" } }
  - { path: /d, upstream: "http://127.0.0.1:1", phantom_token: false }
`,
      { file: 'f.yaml', env: {} },
    );
    assert.deepEqual(
      startupWarnings(cfg).map((w) => w.fields.endpoint),
      ['http://as.example/i', 'http://other.example/i'],
    );
  });

  test('trusted_proxies: 0.0.0.0/0 and ::/0 warn that they trust everyone; wider than a private range warns; private ranges and addresses do not', () => {
    const w = startupWarnings(
      config('https://as.example/i', 'trusted_proxies: [0.0.0.0/0, "::/0", 10.0.0.0/8, 192.168.0.0/16, 127.0.0.1, "fc00::/7", 0.0.0.0/4, "::/3"]'),
    );
    assert.deepEqual(
      w.map((x) => x.fields.entry),
      ['0.0.0.0/0', '::/0', '0.0.0.0/4', '::/3'],
    );
    assert.match(w[0]!.message, /trusts every address/);
    assert.match(w[1]!.message, /trusts every address/);
    assert.match(w[2]!.message, /wider than any private range/);
  });

  test('the gateway logs them at start, as warnings, once each, without the client secret', async () => {
    const gw = await startGateway(`
phantom_token: { introspection_endpoint: "http://as.example/introspect", client_id: c, client_secret: "very-secret-value" }
routes:
  - { path: /a, upstream: "http://127.0.0.1:1" }
  - { path: /b, upstream: "http://127.0.0.1:1" }
trusted_proxies: ["0.0.0.0/0"]
`);
    try {
      const warns = gw.logs.filter((l) => l.level === 'warn');
      assert.equal(warns.filter((l) => l.endpoint === 'http://as.example/introspect').length, 1);
      assert.equal(warns.filter((l) => l.entry === '0.0.0.0/0').length, 1);
      assert.ok(!gw.rawLogs().includes('very-secret-value'));
    } finally {
      await gw.close();
    }
  });
});
