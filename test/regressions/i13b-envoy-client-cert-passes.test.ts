/*
 * i13b regression: behind Envoy (gRPC ext_authz, and the HTTP ext_authz
 * filter asking the forward-auth listener), a client's own RFC 9440
 * `Client-Cert` / `Client-Cert-Chain` reach the API on every allow.
 *
 * The design (issue 13) says a client's DPoP, X-DPoP-Verified and
 * Client-Cert/Client-Cert-Chain never reach the upstream unverified, at
 * every front door; the README says an API checking a certificate-bound
 * token itself needs the certificate and reads it from RFC 9440
 * `Client-Cert`. The proxy strips a client's copy, the generated NGINX
 * configuration clears it, but Envoy's allows (`headers_to_remove` of the
 * gRPC CheckResponse, `X-Envoy-Auth-Headers-To-Remove` of the listener)
 * list only authorization/dpop/x-dpop-verified. Envoy itself sanitizes only
 * its own XFCC header, so an API behind Envoy that checks `cnf["x5t#S256"]`
 * against `Client-Cert` (as behind the proxy with forward_client_cert) is
 * shown a certificate the client chose (certificates are public).
 *
 * Fix: add `client-cert` and `client-cert-chain` to every allow's removal
 * list (gRPC NO_PROOF/OPEN/PREFLIGHT sets; the listener's NO_PROOF,
 * OPEN_DROPPED and the DPoP allow's header).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/load.js';
import { decide } from '../../src/core/decide.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { checkResponse } from '../../src/forward-auth/envoy-grpc.js';
import { createLogger } from '../../src/observability/logger.js';
import { ask, forwarded, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';

const yaml = (as: string) => `
phantom_token:
  introspection_endpoint: ${as}/introspect
  client_id: gateway-client
  client_secret: s3cret
trusted_proxies: [127.0.0.1]
routes:
  - path: /api
    upstream: http://127.0.0.1:9
forward_auth:
  listen: { host: 127.0.0.1, port: 0 }
log: { level: silent }
`;
const FORGED = ':MIIBforgedcertificate:';

describe('i13b: a client Client-Cert behind Envoy (scripted introspection)', () => {
  let as: ScriptedIntrospection;
  let fa: TestForwardAuth;
  let guards: Guards;
  before(async () => {
    as = await startScriptedIntrospection();
    fa = await startForwardAuth(yaml(as.url));
    const config = parseConfig(yaml(as.url), { file: 'test.yaml', env: {} });
    guards = createGuards(config, { logger: createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() })) });
    await as.activate('tok-cc', { scope: 'read' });
  });
  after(async () => {
    await guards.close();
    await fa.close();
    await as.close();
  });

  test('Envoy gRPC: an allow removes the client Client-Cert and Client-Cert-Chain', async () => {
    const d = await decide(guards, { method: 'GET', target: '/api/x', authorization: ['Bearer tok-cc'], preflight: false, clientAddress: '127.0.0.1' });
    assert.equal(d.allow, true);
    const r = checkResponse(d);
    const removed = r.ok_response?.headers_to_remove ?? [];
    assert.ok(removed.includes('client-cert'), `headers_to_remove: ${removed.join(', ')}`);
    assert.ok(removed.includes('client-cert-chain'), `headers_to_remove: ${removed.join(', ')}`);
  });

  test('forward-auth listener (Envoy HTTP ext_authz): an allow tells Envoy to remove the client Client-Cert and Client-Cert-Chain', async () => {
    const a = await ask(fa.url, [...forwarded('GET', '/api/x', 'Bearer tok-cc'), 'client-cert', FORGED, 'client-cert-chain', FORGED]);
    assert.equal(a.status, 200);
    const removed = String(a.headers['x-envoy-auth-headers-to-remove'] ?? '').split(/\s*,\s*/);
    assert.ok(removed.includes('client-cert'), `x-envoy-auth-headers-to-remove: ${removed.join(', ')}`);
    assert.ok(removed.includes('client-cert-chain'), `x-envoy-auth-headers-to-remove: ${removed.join(', ')}`);
  });
});
