/*
 * The example configurations checked offline: every gateway.yaml loads,
 * Caddy adapts its Caddyfile, and each gateway's configuration asks the
 * listener its gateway.yaml configures, passes it what it needs, copies
 * Authorization and every identity header back, and never lets a client
 * describe the request in its place.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { loadConfigFile } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { caddyEnv } from '../helpers/caddy.js';
import { findProgram } from '../helpers/services.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const ENV = { INTROSPECTION_CLIENT_SECRET: 'test-secret' };
const GATEWAYS = ['caddy', 'traefik', 'apisix', 'envoy'];

const read = (...p: string[]) => readFileSync(join(EXAMPLES, ...p), 'utf8');
const yamlOf = (...p: string[]) => parse(read(...p)) as Record<string, any>;
const gatewayYaml = (dir: string): GatewayConfig => loadConfigFile(join(EXAMPLES, dir, 'gateway.yaml'), ENV);
/** The identity header names a gateway.yaml configures, lower-case. */
const identityHeaders = (c: GatewayConfig) => Object.values(c.forward_auth?.identity_headers ?? {}).map((h) => h.toLowerCase());
const lower = (xs: readonly string[]) => xs.map((x) => x.toLowerCase());

test('every gateway configuration in examples/ loads (the demo and each gateway.yaml)', () => {
  const files = ['demo.yaml', ...readdirSync(EXAMPLES, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => join(d.name, 'gateway.yaml'))];
  assert.deepEqual(files.filter((f) => f !== 'demo.yaml').sort(), [...GATEWAYS, 'envoy-grpc'].map((g) => join(g, 'gateway.yaml')).sort());
  for (const f of files) assert.doesNotThrow(() => loadConfigFile(join(EXAMPLES, f), ENV), f);
});

test('each gateway.yaml runs the forward-auth listener alone, on loopback, with /api, /admin and the open /public', () => {
  for (const g of GATEWAYS) {
    const c = gatewayYaml(g);
    assert.equal(c.listen, undefined, `${g}: no proxy listener`);
    assert.equal(c.forward_auth?.listen?.host, '127.0.0.1', g);
    assert.ok(identityHeaders(c).length > 0, g);
    assert.deepEqual(c.routes.map((r) => [r.path, r.phantom_token === false ? false : r.phantom_token.scope]), [['/api', 'read'], ['/admin', 'admin'], ['/public', false]], g);
  }
});

describe('Caddy (examples/caddy/Caddyfile)', () => {
  const caddy = findProgram('caddy', 'caddy');
  test('caddy adapt accepts it; forward_auth asks the listener and copies Authorization and every identity header', { skip: caddy.skip }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'pg-caddy-adapt-'));
    try {
      const r = spawnSync(caddy.path!, ['adapt', '--config', join(EXAMPLES, 'caddy', 'Caddyfile'), '--adapter', 'caddyfile'], { cwd: dir, env: caddyEnv(dir), encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const json = r.stdout;
      const c = gatewayYaml('caddy');
      const { host, port } = c.forward_auth!.listen!;
      assert.ok(json.includes(`"dial":"${host}:${port}"`), 'forward_auth dials the listener of gateway.yaml');
      for (const h of ['Authorization', ...Object.values(c.forward_auth!.identity_headers!)]) {
        assert.ok(json.includes(`"${h}":["{http.reverse_proxy.header.${h}}"]`), `copy_headers ${h}`);
      }
      // Caddy sets the request description itself (a client's copies are replaced).
      assert.ok(json.includes('"X-Forwarded-Uri":["{http.request.uri}"]'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Traefik (examples/traefik)', () => {
  test('forwardAuth asks the listener, trusts no X-Forwarded-* from clients and copies Authorization and every identity header', () => {
    const c = gatewayYaml('traefik');
    const stat = yamlOf('traefik', 'traefik.yml');
    assert.ok(existsSync(join(EXAMPLES, 'traefik', stat.providers.file.filename)));
    const dyn = yamlOf('traefik', 'dynamic.yml');
    const router = dyn.http.routers.api;
    const fa = dyn.http.middlewares[router.middlewares[0]].forwardAuth;
    const { host, port } = c.forward_auth!.listen!;
    assert.equal(new URL(fa.address).host, `${host}:${port}`);
    assert.equal(fa.trustForwardHeader, false);
    assert.deepEqual(lower(fa.authResponseHeaders).sort(), ['authorization', ...identityHeaders(c)].sort());
    assert.ok(lower(fa.authRequestHeaders).includes('authorization'));
    assert.ok(dyn.http.services[router.service].loadBalancer.servers.length > 0);
  });
});

describe('APISIX (examples/apisix)', () => {
  test('forward-auth asks the listener with the token, copies Authorization and every identity header, passes a refusal\'s headers, and waits longer than an introspection', () => {
    const c = gatewayYaml('apisix');
    assert.equal(yamlOf('apisix', 'config.yaml').deployment.role_data_plane.config_provider, 'yaml');
    const text = read('apisix', 'apisix.yaml');
    assert.match(text, /^#END$/m, 'standalone apisix.yaml ends with #END');
    const fa = (parse(text) as Record<string, any>).routes[0].plugins['forward-auth'];
    const { host, port } = c.forward_auth!.listen!;
    assert.equal(new URL(fa.uri).host, `${host}:${port}`);
    assert.ok(lower(fa.request_headers).includes('authorization'), 'without it the listener never sees the token');
    assert.deepEqual(lower(fa.upstream_headers).sort(), ['authorization', ...identityHeaders(c)].sort());
    for (const h of ['www-authenticate', 'retry-after', 'content-type']) assert.ok(lower(fa.client_headers).includes(h), h);
    assert.ok(fa.timeout > longestIntrospection(c), 'APISIX waits longer than the listener bounds an introspection');
    assert.equal(fa.allow_degradation, false);
  });
});

describe('Envoy (examples/envoy/envoy.yaml)', () => {
  const envoy = yamlOf('envoy', 'envoy.yaml');
  const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const filters: Record<string, any>[] = hcm.http_filters;
  const authz = filters.find((f) => f.name === 'envoy.filters.http.ext_authz')!.typed_config;
  const c = gatewayYaml('envoy');

  test('ext_authz asks the listener\'s cluster with its path_prefix, and waits longer than an introspection', () => {
    const cluster = envoy.static_resources.clusters.find((k: Record<string, any>) => k.name === authz.http_service.server_uri.cluster);
    const address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    assert.deepEqual([address.address, address.port_value], [c.forward_auth!.listen!.host, c.forward_auth!.listen!.port]);
    assert.equal(authz.http_service.path_prefix, c.forward_auth!.path_prefix, 'the same prefix on both sides');
    assert.ok(Number.parseFloat(authz.http_service.server_uri.timeout) * 1000 > longestIntrospection(c));
    assert.equal(authz.failure_mode_allow, false);
    assert.ok(filters.findIndex((f) => f.name === 'envoy.filters.http.ext_authz') < filters.findIndex((f) => f.name === 'envoy.filters.http.router'));
  });

  test('only exact, named headers go to the listener: never a client\'s X-Forwarded-Uri or X-Original-URI', () => {
    const patterns: Record<string, string>[] = authz.http_service.authorization_request.allowed_headers.patterns;
    for (const p of patterns) assert.deepEqual(Object.keys(p), ['exact'], JSON.stringify(p));
    const names = patterns.map((p) => p.exact!.toLowerCase());
    for (const n of names) assert.doesNotMatch(n, /^x-(forwarded-(uri|method)|original-)/);
    for (const n of ['origin', 'access-control-request-method']) assert.ok(names.includes(n), n);
  });

  test('Authorization and every identity header are set (not appended) on the upstream request; client copies of identity headers go before ext_authz', () => {
    const res = authz.http_service.authorization_response;
    assert.equal(res.allowed_upstream_headers_to_append, undefined);
    const set = (res.allowed_upstream_headers.patterns as Record<string, string>[]).map((p) => p.exact);
    assert.deepEqual([...set].sort(), ['authorization', ...identityHeaders(c)].sort());
    const mutation = filters.findIndex((f) => f.name === 'envoy.filters.http.header_mutation');
    assert.ok(mutation !== -1 && mutation < filters.findIndex((f) => f.name === 'envoy.filters.http.ext_authz'));
    const removed = (filters[mutation]!.typed_config.mutations.request_mutations as { remove: string }[]).map((m) => m.remove);
    assert.deepEqual(removed.sort(), identityHeaders(c).sort());
  });
});

/** The longest an introspection may take on any protected route of `c`. */
function longestIntrospection(c: GatewayConfig): number {
  return Math.max(...c.routes.map((r) => (r.phantom_token === false ? 0 : r.phantom_token.timeout_ms)));
}
