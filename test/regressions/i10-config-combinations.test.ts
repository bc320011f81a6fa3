/*
 * Review of issue 10's foundation: option combinations that are accepted but
 * cannot work, or refused but should work (src/config/load.ts
 * optionProblems and the per-route merge `{...defaults, ...top, ...route}`).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-review-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function outcome(text: string): { config?: GatewayConfig; problems?: readonly string[] } {
  try {
    return { config: parseConfig(text, { file: 'gateway.yaml', env: {} }) };
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return { problems: err.problems };
  }
}

describe('review i10 config: a route that names another issuer than the top-level block inherits its introspection_endpoint', () => {
  test('top-level issuer A, route issuer B, endpoint inherited from A: refused (B\'s tokens would go to A), naming the option', () => {
    const { problems } = outcome(`
phantom_token:
  introspection_endpoint: https://as-a.example/introspect
  issuer: https://as-a.example
  client_id: gateway
  client_secret: s
routes:
  - path: /a
    upstream: http://127.0.0.1:9
  - path: /b
    upstream: http://127.0.0.1:9
    phantom_token:
      issuer: https://as-b.example
`);
    assert.ok(problems?.some((p) => /routes\[1\]\.phantom_token\.issuer: names another issuer than the top-level block/.test(p)), JSON.stringify(problems));
  });

  test('decided: without a top-level issuer, a route\'s issuer is the check of the inherited server\'s answers (tokens of another server are refused, with one warning naming both issuers)', () => {
    const { config, problems } = outcome(`
phantom_token:
  introspection_endpoint: https://as-a.example/introspect
  client_id: gateway
  client_secret: s
routes:
  - path: /b
    upstream: http://127.0.0.1:9
    phantom_token:
      issuer: https://as-a.example/realm
`);
    assert.equal(problems, undefined);
    const pt = config!.routes[0]!.phantom_token;
    assert.ok(pt !== false);
    assert.equal(pt.introspection_endpoint, 'https://as-a.example/introspect');
    assert.equal(pt.issuer, 'https://as-a.example/realm');
  });
});

describe('review i10 config: a route cannot take its secret from a file when the top-level block has client_secret', () => {
  test('a route override of the secret\'s source is accepted', () => {
    const file = join(dir, 'secret-b');
    writeFileSync(file, 'secret-b\n');
    const { problems } = outcome(`
phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: gateway
  client_secret: secret-a
routes:
  - path: /a
    upstream: http://127.0.0.1:9
  - path: /b
    upstream: http://127.0.0.1:9
    phantom_token:
      client_id: gateway-b
      client_secret_file: ${file}
`);
    assert.equal(problems, undefined, `refused, and there is no way to unset the inherited client_secret: ${JSON.stringify(problems)}`);
  });
});

describe('review i10 config: client_cert_file with client_secret_basic is accepted and never used', () => {
  test('refused (or the certificate would have to be presented, which the transport never does for this method)', () => {
    const cert = join(dir, 'client.crt');
    const key = join(dir, 'client.key');
    writeFileSync(cert, '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n');
    writeFileSync(key, '-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n');
    const { problems } = outcome(`
phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: gateway
  client_secret: s
  client_cert_file: ${cert}
  client_key_file: ${key}
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`);
    assert.ok(
      problems?.some((p) => /client_cert_file/.test(p)),
      'accepted: the operator believes the gateway presents a client certificate (mTLS) and it does not (client-auth.ts: only tlsClientAuth sets clientCertificate)',
    );
  });
});

describe('review i10 config: an empty client_secret_file is accepted (an empty secret), where client_secret: "" is refused', () => {
  test('refused with the option and its line', () => {
    const file = join(dir, 'empty-secret');
    writeFileSync(file, '\n'); // a Kubernetes secret mounted before it was filled
    const { problems } = outcome(`
phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: gateway
  client_secret_file: ${file}
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`);
    assert.ok(problems?.some((p) => /client_secret_file/.test(p) && /empty/.test(p)), 'an empty secret file was accepted: the gateway starts and every introspection is 401 from the server');
  });
});
