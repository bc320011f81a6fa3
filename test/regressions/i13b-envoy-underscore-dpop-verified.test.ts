/*
 * i13b regression: behind Envoy gRPC ext_authz, a client's
 * `X_DPoP_Verified` (underscores) reaches the API, where CGI, WSGI, PHP and
 * Rack servers read it as `X-DPoP-Verified` (HTTP_X_DPOP_VERIFIED): a
 * proof verification the gateway never made (the class of Puma's
 * CVE-2024-45614).
 *
 * The proxy drops `_` spellings of every header the gateway sets
 * (GATEWAY_SET in proxy/headers.ts), the generated NGINX config sets
 * `underscores_in_headers off`, but Envoy passes underscore names by default
 * (`headers_with_underscores_action: ALLOW`), and the gRPC CheckResponse
 * removes only `dpop` and `x-dpop-verified`. The check request carries every
 * header of the client, so the service knows the spelling it should remove.
 * Here a Bearer request (no proof verified) with `x_dpop_verified: <jkt>`
 * is allowed and nothing removes it.
 *
 * Fix: in the gRPC door, add to headers_to_remove each request header whose
 * name, with `_` read as `-`, is one the gateway sets (dpop,
 * x-dpop-verified, client-cert, the identity headers); or refuse such
 * requests; and tell Envoy users (README) to set
 * `headers_with_underscores_action: REJECT_REQUEST`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { EnvoyAuthService, EXTERNAL_AUTH_PROTO, PROTO_LOADER_OPTIONS } from '../../src/forward-auth/envoy-grpc.js';
import { createLogger } from '../../src/observability/logger.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';

const pkg = protoLoader.loadSync(EXTERNAL_AUTH_PROTO, { ...PROTO_LOADER_OPTIONS, defaults: true });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const AuthorizationClient = (grpc.loadPackageDefinition(pkg) as any).envoy.service.auth.v3.Authorization as grpc.ServiceClientConstructor;

interface Response {
  status: { code: number };
  ok_response?: { headers: { header: { key: string; value: string } }[]; headers_to_remove: string[] } | null;
}

describe('i13b: an underscore spelling of X-DPoP-Verified behind Envoy gRPC (scripted introspection)', () => {
  let as: ScriptedIntrospection;
  let guards: Guards;
  let service: EnvoyAuthService;
  let client: grpc.Client;
  before(async () => {
    as = await startScriptedIntrospection();
    const config = parseConfig(
      `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: http://127.0.0.1:9
forward_auth:
  grpc: { port: 0 }
log: { level: silent }
`,
      { file: 'test.yaml', env: {} },
    );
    const logger = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
    guards = createGuards(config, { logger });
    service = new EnvoyAuthService(config, { logger, guards });
    const { port } = await service.listen(0, '127.0.0.1');
    client = new AuthorizationClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    await as.activate('tok-us', { scope: 'read' });
  });
  after(async () => {
    client.close();
    await service.close();
    await guards.close();
    await as.close();
  });

  test('a Bearer allow removes the client x_dpop_verified', async () => {
    const headers = { ':authority': 'api.example.com', ':method': 'GET', ':path': '/api/x', ':scheme': 'https', authorization: 'Bearer tok-us', x_dpop_verified: 'forged-jkt' };
    const req = { attributes: { source: { address: { socket_address: { address: '10.0.0.7', port_value: 5000 } } }, request: { http: { method: 'GET', path: '/api/x', host: 'api.example.com', scheme: 'https', headers } } } };
    const r = await new Promise<Response>((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      (client as any).Check(req, { deadline: Date.now() + 5000 }, (err: Error | null, res: Response) => (err ? reject(err) : resolve(res)));
    });
    assert.equal(r.status.code, 0, 'allowed');
    const removed = r.ok_response?.headers_to_remove ?? [];
    assert.ok(removed.includes('x-dpop-verified'), 'the dash spelling is removed (as today)');
    assert.ok(removed.includes('x_dpop_verified'), `the client's underscore spelling reaches the API: headers_to_remove = ${removed.join(', ')}`);
  });
});
