/*
 * /metrics after traffic, parsed as Prometheus text (strictly, by
 * ./prometheus.ts), with counts matching the traffic: against the real
 * development authorization server (oidc-provider) for the normal flow;
 * scripted peers where a fault or a delay has to be injected.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startDevAuthorizationServer, DEV_CLIENTS, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { call, closedPort } from '../helpers/core.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { devToken } from '../helpers/signed-answers.js';
import { adminCall, startAdminStack, type AdminStack } from './helpers.js';
import { total, value } from './prometheus.js';

const version = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('metrics after traffic (oidc-provider)', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  let stack: AdminStack;

  before(async () => {
    as = await startDevAuthorizationServer({ port: 0, publicHost: '127.0.0.1' });
    api = await startEchoUpstream();
    stack = await startAdminStack(`
admin:
  listen: { host: 127.0.0.1, port: 0 }
phantom_token:
  introspection_endpoint: ${as.introspectionEndpoint}
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  scope: read
routes:
  - path: /api
    upstream: ${api.url}
  - path: /write
    upstream: ${api.url}
    phantom_token: { scope: write }
  - path: /public
    upstream: ${api.url}
    phantom_token: false
`);
  });
  after(async () => {
    await stack?.close();
    await api?.close();
    await as?.close();
  });

  test('requests by route, status and code; hits, misses, one introspection; upstream histogram counts forwarded requests', async () => {
    const token = await devToken(as);
    const bearer = `Bearer ${token}`;
    const before = as.stats.introspections;
    assert.equal((await call(`${stack.url}/api/items`, bearer)).status, 200); // miss: one introspection
    for (let i = 0; i < 4; i++) assert.equal((await call(`${stack.url}/api/items/${i}`, bearer)).status, 200); // hits
    for (let i = 0; i < 2; i++) assert.equal((await call(`${stack.url}/write/x`, bearer)).status, 403); // hits, refused by scope
    for (let i = 0; i < 3; i++) assert.equal((await call(`${stack.url}/api/items`)).status, 401); // no token: neither hit nor miss
    assert.equal((await call(`${stack.url}/nowhere/${'x'.repeat(8)}`)).status, 404);
    for (let i = 0; i < 2; i++) assert.equal((await call(`${stack.url}/public/p`)).status, 200);
    assert.equal(as.stats.introspections - before, 1);
    assert.equal(api.received.length, 7);

    const m = await stack.scrape();
    const req = (labels: Record<string, string>) => value(m, 'phantom_gateway_requests_total', { door: 'proxy', ...labels });
    assert.equal(req({ route: '/api', status: '200', code: '' }), 5);
    assert.equal(req({ route: '/write', status: '403', code: 'ERR_INSUFFICIENT_SCOPE' }), 2);
    assert.equal(req({ route: '/api', status: '401', code: 'ERR_TOKEN_MISSING' }), 3);
    // An unmatched path is counted without a route: the request path never becomes a label.
    assert.equal(req({ route: '', status: '404', code: 'ERR_NO_ROUTE' }), 1);
    assert.equal(req({ route: '/public', status: '200', code: '' }), 2);
    assert.equal(total(m, 'phantom_gateway_requests_total'), 13);
    assert.ok(!JSON.stringify([...m.values()]).includes('/nowhere'));

    assert.equal(value(m, 'phantom_gateway_cache_hits_total'), 6);
    assert.equal(value(m, 'phantom_gateway_cache_misses_total'), 1);
    assert.equal(value(m, 'phantom_gateway_single_flight_joins_total'), 0);
    assert.equal(value(m, 'phantom_gateway_cache_entries', { kind: 'active' }), 1);
    assert.equal(value(m, 'phantom_gateway_cache_entries', { kind: 'inactive' }), 0);
    assert.equal(total(m, 'phantom_gateway_cache_evictions_total'), 0);

    const server = as.introspectionEndpoint;
    assert.equal(value(m, 'phantom_gateway_introspections_total', { server, outcome: 'active' }), 1);
    assert.equal(total(m, 'phantom_gateway_introspections_total'), 1);
    assert.equal(value(m, 'phantom_gateway_introspection_duration_seconds_count', { server }), 1);
    assert.equal(value(m, 'phantom_gateway_introspection_duration_seconds_bucket', { server, le: '+Inf' }), 1);

    assert.equal(total(m, 'phantom_gateway_upstream_duration_seconds_count'), 7);
    assert.equal(value(m, 'phantom_gateway_upstream_duration_seconds_count', { route: '/api' }), 5);
    assert.equal(value(m, 'phantom_gateway_upstream_duration_seconds_count', { route: '/public' }), 2);
    // Buckets are cumulative and end at the count.
    const buckets = m.get('phantom_gateway_upstream_duration_seconds')!.samples.filter((s) => s.name.endsWith('_bucket') && s.labels.route === '/api');
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value);
    assert.equal(buckets.at(-1)!.labels.le, '+Inf');
    assert.equal(buckets.at(-1)!.value, 5);
    assert.equal(total(m, 'phantom_gateway_upstream_errors_total'), 0);

    assert.equal(value(m, 'phantom_gateway_build_info', { version, node_version: process.version }), 1);
    assert.ok(m.has('phantom_gateway_process_cpu_user_seconds_total'), 'default process metrics, prefixed');
    assert.equal(m.get('phantom_gateway_requests_total')!.type, 'counter');
    assert.equal(m.get('phantom_gateway_requests_in_flight')!.type, 'gauge');
    assert.equal(m.get('phantom_gateway_introspection_duration_seconds')!.type, 'histogram');
  });

  test('in flight: a request waiting on the upstream counts until it is answered', async () => {
    const received = api.received.length;
    const slow = call(`${stack.url}/public/slow?ms=2000`);
    // The upstream has it and holds it 2 s: the gateway has it in flight.
    for (let i = 0; i < 250 && api.received.length === received; i++) await sleep(20);
    assert.equal(value(await stack.scrape(), 'phantom_gateway_requests_in_flight', { door: 'proxy' }), 1);
    assert.equal((await slow).status, 200);
    let after = 1;
    for (let i = 0; i < 250 && after !== 0; i++) {
      after = value(await stack.scrape(), 'phantom_gateway_requests_in_flight', { door: 'proxy' });
      if (after !== 0) await sleep(10);
    }
    assert.equal(after, 0);
  });

  test('the content type is the registry\'s (text format 0.0.4)', async () => {
    const r = await adminCall(`${stack.adminUrl}/metrics`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  });
});

describe('metrics of faults (scripted authorization server and upstream)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let stack: AdminStack;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const dead = await closedPort();
    stack = await startAdminStack(`
admin: { listen: { host: 127.0.0.1, port: 0 } }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
cache: { max_entries: 2 }
upstream: { connect_timeout_ms: 1000 }
routes:
  - path: /api
    upstream: ${api.url}
  - path: /dead
    upstream: http://127.0.0.1:${dead}
`);
  });
  after(async () => {
    await stack?.close();
    await api?.close();
    await as?.close();
  });

  test('scripted: a burst of one new token is one introspection, one miss and the rest single-flight joins', async () => {
    await as.activate('burst-token', {}, { delayMs: 300 });
    const replies = await Promise.all(Array.from({ length: 8 }, () => call(`${stack.url}/api/x`, 'Bearer burst-token')));
    assert.deepEqual(replies.map((r) => r.status), Array(8).fill(200));
    assert.equal(as.callsFor('burst-token'), 1);
    const m = await stack.scrape();
    assert.equal(value(m, 'phantom_gateway_cache_misses_total'), 1);
    assert.equal(value(m, 'phantom_gateway_single_flight_joins_total'), 7);
    assert.equal(value(m, 'phantom_gateway_cache_hits_total'), 0);
  });

  test('scripted: evictions by the bound are counted; outcomes of failed introspections by kind', async () => {
    const before = await stack.scrape();
    for (const t of ['e1', 'e2', 'e3', 'e4']) {
      await as.activate(t);
      assert.equal((await call(`${stack.url}/api/x`, `Bearer ${t}`)).status, 200);
    }
    as.answers.set('down-503', { status: 503 });
    as.answers.set('down-500', { status: 500 });
    as.answers.set('creds', { status: 401 });
    as.answers.set('garbage', { status: 200, body: 'not a jwt', headers: { 'content-type': 'application/jwt' } });
    assert.equal((await call(`${stack.url}/api/x`, 'Bearer down-503')).status, 503);
    assert.equal((await call(`${stack.url}/api/x`, 'Bearer down-500')).status, 502);
    assert.equal((await call(`${stack.url}/api/x`, 'Bearer creds')).status, 502);
    assert.equal((await call(`${stack.url}/api/x`, 'Bearer garbage')).status, 502);
    assert.equal((await call(`${stack.url}/api/x`, 'Bearer unknown-token')).status, 401); // 204: inactive
    const m = await stack.scrape();
    const server = `${as.url}/introspect`;
    const outcome = (o: string) => value(m, 'phantom_gateway_introspections_total', { server, outcome: o }) - value(before, 'phantom_gateway_introspections_total', { server, outcome: o });
    assert.equal(outcome('active'), 4);
    assert.equal(outcome('unavailable'), 1);
    assert.equal(outcome('server_error'), 1);
    assert.equal(outcome('rejected'), 1);
    assert.equal(outcome('invalid_answer'), 1);
    assert.equal(outcome('inactive'), 1);
    // max_entries 2: the burst token and e1..e4 made 5 active entries; 3 were pushed out.
    assert.equal(value(m, 'phantom_gateway_cache_evictions_total', { kind: 'active' }), 3);
    assert.equal(value(m, 'phantom_gateway_cache_entries', { kind: 'active' }), 2);
    assert.equal(value(m, 'phantom_gateway_cache_entries', { kind: 'inactive' }), 1);
    const req = (status: string, code: string) => value(m, 'phantom_gateway_requests_total', { door: 'proxy', route: '/api', status, code });
    assert.equal(req('503', 'ERR_INTROSPECTION_UNAVAILABLE'), 1);
    assert.equal(req('502', 'ERR_INTROSPECTION_REJECTED'), 2);
    assert.equal(req('502', 'ERR_INTROSPECTION_INVALID_ANSWER'), 1);
    assert.equal(req('401', 'ERR_TOKEN_INACTIVE'), 1);
  });

  test('scripted: an unreachable upstream is an upstream error of its route', async () => {
    await as.activate('to-dead');
    assert.equal((await call(`${stack.url}/dead/x`, 'Bearer to-dead')).status, 502);
    const m = await stack.scrape();
    assert.equal(value(m, 'phantom_gateway_upstream_errors_total', { route: '/dead', kind: 'unreachable' }), 1);
    assert.equal(value(m, 'phantom_gateway_requests_total', { door: 'proxy', route: '/dead', status: '502', code: 'ERR_UPSTREAM_UNREACHABLE' }), 1);
  });
});
