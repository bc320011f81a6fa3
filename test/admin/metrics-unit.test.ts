/*
 * GatewayMetrics on its own: the health rule behind readiness, series kept
 * across a reload's new routes, histogram buckets.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DOWN_AFTER_OUTAGES, DOWN_FOR_MS, GatewayMetrics, metricsFor, PROXY } from '../../src/observability/metrics.js';
import { parseConfig } from '../../src/config/load.js';
import { createGuards } from '../../src/core/guards.js';
import { createLogger } from '../../src/observability/logger.js';
import { Gateway } from '../../src/proxy/server.js';
import { parsePrometheus, value } from './prometheus.js';

describe('GatewayMetrics', () => {
  test('off without admin: no metrics object anywhere (the hooks see undefined)', async () => {
    const config = parseConfig('routes: [{ path: /open, upstream: "http://127.0.0.1:9", phantom_token: false }]\n', { env: {} });
    assert.equal(metricsFor(config), undefined);
    const guards = createGuards(config, { logger: createLogger('silent'), metrics: metricsFor(config) });
    const gateway = new Gateway(config, { logger: createLogger('silent'), guards });
    assert.equal(guards.metrics, undefined);
    assert.equal(gateway.metrics, undefined);
    await gateway.close();
    await guards.close();
  });

  test('an authorization server is down after outages in a row, up again at an answer or after DOWN_FOR_MS without one; calls never sent do not count', () => {
    let now = 1_000_000;
    const m = new GatewayMetrics({ processMetrics: false, now: () => now });
    const r = m.introspectionServer('https://as.test/introspect');
    const down = () => m.authorizationServers()[0]!.down;
    assert.equal(down(), false);
    for (let i = 0; i < DOWN_AFTER_OUTAGES - 1; i++) r.record(i % 2 ? 'timeout' : 'unreachable', 0.1);
    r.record('overloaded', 0); // never sent: says nothing
    r.record('withdrawn', 0);
    assert.equal(down(), false);
    r.record('server_error', 0.01);
    assert.equal(down(), true);
    now += DOWN_FOR_MS - 1;
    assert.equal(down(), true);
    now += 1;
    assert.equal(down(), false, 'unasked for DOWN_FOR_MS: given the benefit of the doubt');
    r.record('unavailable', 0.01);
    assert.equal(down(), true, 'still failing: down at once');
    r.record('rejected', 0.01); // an answer (wrong credentials), not an outage
    assert.equal(down(), false);
    // The same server asked for again (another client of it) shares the record.
    assert.equal(m.introspectionServer('https://as.test/introspect'), r);
  });

  test('new routes (a reload) relabel the indexes; series counted before keep their values; no duplicate series', async () => {
    const m = new GatewayMetrics({ processMetrics: false });
    const before = m.forRoutes(['/a', '/b']);
    before.request(PROXY, 0, 200, undefined);
    before.request(PROXY, 1, 200, undefined);
    before.upstream(1, 0.003);
    const after = m.forRoutes(['/b', '/c']);
    after.request(PROXY, 0, 200, undefined); // now /b
    after.request(PROXY, 1, 200, undefined); // /c
    after.upstream(0, 0.2);
    const p = parsePrometheus(await m.registry.metrics());
    const req = (route: string) => value(p, 'phantom_gateway_requests_total', { door: 'proxy', route, status: '200', code: '' });
    assert.equal(req('/a'), 1);
    assert.equal(req('/b'), 2);
    assert.equal(req('/c'), 1);
    assert.equal(value(p, 'phantom_gateway_upstream_duration_seconds_count', { route: '/b' }), 2);
    assert.equal(value(p, 'phantom_gateway_upstream_duration_seconds_bucket', { route: '/b', le: '0.005' }), 1);
    assert.equal(value(p, 'phantom_gateway_upstream_duration_seconds_bucket', { route: '/b', le: '0.25' }), 2);
    assert.equal(value(p, 'phantom_gateway_upstream_duration_seconds_sum', { route: '/b' }), 0.203);
  });
});
