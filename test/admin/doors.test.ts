/*
 * Requests are counted by front door: the forward-auth listener and Envoy's
 * gRPC check, over one set of guards (one cache: a token introspected
 * through one door is a hit through the other). Scripted introspection
 * endpoint (the doors' own suites run the real flows).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { EnvoyAuthService, EXTERNAL_AUTH_PROTO, PROTO_LOADER_OPTIONS } from '../../src/forward-auth/envoy-grpc.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { createLogger } from '../../src/observability/logger.js';
import { metricsFor, type GatewayMetrics } from '../../src/observability/metrics.js';
import { ask, forwarded } from '../helpers/forward-auth.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { parsePrometheus, value } from './prometheus.js';

const pkg = protoLoader.loadSync(EXTERNAL_AUTH_PROTO, { ...PROTO_LOADER_OPTIONS, defaults: true });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const Client = (grpc.loadPackageDefinition(pkg) as any).envoy.service.auth.v3.Authorization as grpc.ServiceClientConstructor;

describe('requests by front door (scripted)', () => {
  let as: ScriptedIntrospection;
  let guards: Guards;
  let metrics: GatewayMetrics;
  let fa: ForwardAuthListener;
  let envoy: EnvoyAuthService;
  let faUrl: string;
  let client: grpc.Client;

  before(async () => {
    as = await startScriptedIntrospection();
    const config = parseConfig(
      `
admin: {}
forward_auth: {}
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
`,
      { env: {} },
    );
    const logger = createLogger('silent');
    metrics = metricsFor(config)!;
    guards = createGuards(config, { logger, metrics });
    fa = new ForwardAuthListener(config, { logger, guards });
    envoy = new EnvoyAuthService(config, { logger, guards });
    faUrl = `http://127.0.0.1:${(await fa.listen(0, '127.0.0.1')).port}`;
    const { port } = await envoy.listen(0, '127.0.0.1');
    client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await fa?.close();
    await envoy?.close();
    await guards?.close();
    await as?.close();
  });

  test('forward_auth and envoy doors, by route, status and code; one cache', async () => {
    await as.activate('door-token');
    assert.equal((await ask(faUrl, forwarded('GET', '/api/a', 'Bearer door-token'))).status, 200);
    assert.equal((await ask(faUrl, forwarded('GET', '/api/b', 'Bearer door-token'))).status, 200);
    assert.equal((await ask(faUrl, forwarded('GET', '/api/c'))).status, 401);
    const check = {
      attributes: { request: { http: { method: 'GET', path: '/api/d', host: 'api.example.com', headers: { authorization: 'Bearer door-token' } } } },
    };
    const code = await new Promise<number>((resolve, reject) =>
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      (client as any).Check(check, { deadline: Date.now() + 10_000 }, (err: Error | null, res: { status: { code: number } }) => (err ? reject(err) : resolve(res.status.code))),
    );
    assert.equal(code, 0);
    assert.equal(as.callsFor('door-token'), 1);

    const m = parsePrometheus(await metrics.registry.metrics());
    assert.equal(value(m, 'phantom_gateway_requests_total', { door: 'forward_auth', route: '/api', status: '200', code: '' }), 2);
    assert.equal(value(m, 'phantom_gateway_requests_total', { door: 'forward_auth', route: '/api', status: '401', code: 'ERR_TOKEN_MISSING' }), 1);
    assert.equal(value(m, 'phantom_gateway_requests_total', { door: 'envoy', route: '/api', status: '200', code: '' }), 1);
    assert.equal(value(m, 'phantom_gateway_cache_hits_total'), 2);
    assert.equal(value(m, 'phantom_gateway_cache_misses_total'), 1);
    assert.equal(value(m, 'phantom_gateway_requests_in_flight', { door: 'forward_auth' }), 0);
  });
});
