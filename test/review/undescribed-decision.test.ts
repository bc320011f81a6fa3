import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ask, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';

/*
 * Review finding (security hardening): a decision request that describes no
 * original request (no X-Forwarded-*, no X-Original-*) is decided on its own
 * request line (original.ts rule 4, meant for Envoy without path_prefix). An
 * NGINX `auth_request` location written without `proxy_set_header
 * X-Original-URI` asks `GET /_auth` for EVERY client request: with an open
 * `/` route, every request, /admin included, is allowed. Fail open on a
 * one-line omission; rule 4 could be opt-in (e.g. `forward_auth.path_prefix: /`).
 */

describe('review: a decision request that does not say what it decides on', { timeout: 20_000 }, () => {
  let as: ScriptedIntrospection;
  let fa: TestForwardAuth;
  before(async () => {
    as = await startScriptedIntrospection();
    fa = await startForwardAuth(`
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
forward_auth: {}
routes:
  - path: /admin
    phantom_token: { scope: admin }
  - path: /
    phantom_token: false
`);
  });
  after(async () => {
    await fa.close();
    await as.close();
  });

  test('NGINX-style subrequest GET /_auth without X-Original-URI (client asked for /admin/x, no token) is not allowed', async () => {
    // What NGINX sends: the client's headers, the subrequest's own line.
    const a = await ask(fa.url, ['x-real-ip', '203.0.113.9'], { path: '/_auth' });
    assert.notEqual(a.status, 200, 'allowed as the open route / : the client request it stands for is never looked at');
  });
});
