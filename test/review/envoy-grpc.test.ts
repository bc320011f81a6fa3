import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import type { Decision } from '../../src/core/decide.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { checkResponse, EnvoyAuthService, type CheckRequest } from '../../src/forward-auth/envoy-grpc.js';
import { IdentityHeaders } from '../../src/forward-auth/identity.js';
import { createLogger } from '../../src/observability/logger.js';
import { ask, forwarded, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';

/*
 * Review findings on Envoy's gRPC check, in process (EnvoyAuthService.decide
 * and checkResponse, as the service calls them), beside the HTTP listener on
 * the same configuration for the "same situation, same answer" cases.
 */

const yaml = (as: ScriptedIntrospection) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
forward_auth:
  identity_headers:
    sub: X-Subject
    client_id: X-Client-Id
  grpc: { port: 0 }
  listen: { port: 0 }
routes:
  - path: /api
  - path: /public
    phantom_token: false
`;

function envoyRequest(method: string, path: string, headers: Record<string, string> = {}): CheckRequest {
  return { attributes: { source: { address: { socket_address: { address: '10.0.0.7', port_value: 5000 } } }, request: { http: { method, path, headers: { ':method': method, ':path': path, ...headers } } } } };
}

describe('review: Envoy gRPC check', { timeout: 20_000 }, () => {
  let as: ScriptedIntrospection;
  let guards: Guards;
  let service: EnvoyAuthService;
  let fa: TestForwardAuth;
  const identity = new IdentityHeaders({ preferred_username: 'X-User', client_id: 'X-Client-Id' });

  before(async () => {
    as = await startScriptedIntrospection();
    const config = parseConfig(yaml(as), { file: 'test.yaml', env: {} });
    guards = createGuards(config, { logger: createLogger('silent') });
    service = new EnvoyAuthService(config, { logger: createLogger('silent'), guards });
    fa = await startForwardAuth(yaml(as), { guards });
  });
  after(async () => {
    await fa.close();
    await service.close();
    await guards.close();
    await as.close();
  });

  test('identity headers: a claim VALUE equal to another identity header name keeps the client\'s copy of that header (headers_to_remove)', async () => {
    // The token has no client_id claim; its user name happens to be spelled like the other header.
    await as.activate('tok-sub-spelled-like-header', { preferred_username: 'x-client-id', client_id: undefined });
    const d: Decision = await service.decide(envoyRequest('GET', '/api/me', { authorization: 'Bearer tok-sub-spelled-like-header', 'x-client-id': 'admin-console' }));
    assert.equal(d.allow, true);
    const r = checkResponse(d, identity);
    const set = (r.ok_response?.headers ?? []).map((h) => h.header.key);
    assert.ok(!set.includes('x-client-id'), 'x-client-id is not set by the allow');
    assert.deepEqual(r.ok_response?.headers_to_remove, ['x-client-id'], "the client's X-Client-Id: admin-console reaches the API");
  });

  test('a lower-case method is refused by the HTTP listener (400) and by the gRPC check alike', async () => {
    const http = await ask(fa.url, forwarded('trace', '/public/x'));
    assert.equal(http.status, 400);
    const d = await service.decide(envoyRequest('trace', '/public/x'));
    assert.equal(d.allow, false, 'gRPC allows `trace` on an open route (TRACE is 405): the front doors disagree');
  });

  test('header count: the gRPC check bounds the headers it reads as the HTTP listener does (server.max_headers: 100 -> 431)', async () => {
    const many: string[] = [];
    for (let i = 0; i < 150; i++) many.push(`x-h-${i}`, 'v');
    const http = await ask(fa.url, [...forwarded('GET', '/public/x'), ...many]);
    assert.equal(http.status, 431);
    const headers: Record<string, string> = {};
    for (let i = 0; i < 10_000; i++) headers[`x-h-${i}`] = 'v';
    const d = await service.decide(envoyRequest('GET', '/public/x', headers));
    assert.equal(d.allow, false, 'a CheckRequest with 10,000 headers is decided (allowed): nothing bounds its size but grpc-js\'s 4 MiB default');
  });

  test('an open route passes one non-Bearer credential with commas (AWS SigV4, Digest) through gRPC as through the HTTP listener', async () => {
    const sigv4 = 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7';
    const http = await ask(fa.url, forwarded('GET', '/public/x', sigv4));
    assert.equal(http.status, 200);
    const d = await service.decide(envoyRequest('GET', '/public/x', { authorization: sigv4 }));
    assert.equal(d.allow, true, `gRPC: ${d.allow ? '' : d.error.code} (the one header was split on "," into three credentials)`);
  });
});
