/*
 * i13 regression: without `dpop.public_base_url`, a DPoP proof's htu is
 * checked against a URL built from the client's own `Host` header, so the
 * htu check binds nothing, and nothing says so at start-up.
 *
 * RFC 9449 §4.3 (check 9) and §11.1: htu exists so that a proof made for
 * one resource server cannot be used at another. A token is commonly
 * accepted by several APIs (same authorization server, same audience or
 * none checked). An API that received a request with the token and its
 * proof (a malicious or compromised API, or its logs) can replay both at
 * this gateway within max_age_seconds: it sends `Host: <the other API's
 * host>` and the gateway rebuilds exactly the htu of the captured proof.
 * The jti was never seen here, so the replay check does not help. The
 * reviewer checked it through the proxy: a proof made for
 * http://other-api.example/api/x, sent with `Host: other-api.example`, got 200.
 *
 * The design makes the request's Host the default, so this test asks for
 * the least a user needs: a start-up warning for a DPoP route (scheme DPoP
 * or any) without dpop.public_base_url, naming the option. (A stronger fix:
 * require public_base_url, or a list of accepted host names, for DPoP
 * routes whose requests do not come through trusted_proxies.)
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { startupWarnings } from '../../src/config/warnings.js';

const config = (asUrl: string, apiUrl: string) => `
phantom_token:
  introspection_endpoint: ${asUrl}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
routes:
  - path: /api
    upstream: ${apiUrl}
`;

describe('i13: htu rebuilt from the client Host', () => {
  test('a DPoP route without dpop.public_base_url and without trusted_proxies gets a start-up warning naming public_base_url', () => {
    const warnings = startupWarnings(parseConfig(config('https://as.example.com', 'http://127.0.0.1:9'), { file: 'test.yaml', env: {} }));
    assert.ok(
      warnings.some((w) => /public_base_url/.test(w.message)),
      `no warning that htu is checked against the client's Host: ${JSON.stringify(warnings.map((w) => w.message))}`,
    );
  });
});
