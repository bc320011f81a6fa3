import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { EnvoyAuthService, type CheckRequest } from '../../src/forward-auth/envoy-grpc.js';
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

describe('a method that is not an upper-case token is refused by every front door', { timeout: 20_000 }, () => {
  let as: ScriptedIntrospection;
  let guards: Guards;
  let service: EnvoyAuthService;
  let fa: TestForwardAuth;

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

  test('a lower-case method is refused by the HTTP listener (400) and by the gRPC check alike', async () => {
    const http = await ask(fa.url, forwarded('trace', '/public/x'));
    assert.equal(http.status, 400);
    const d = await service.decide(envoyRequest('trace', '/public/x'));
    assert.equal(d.allow, false, 'gRPC allows `trace` on an open route (TRACE is 405): the front doors disagree');
  });
});
