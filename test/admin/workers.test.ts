/*
 * workers > 1: the admin listener runs in the primary; /metrics is the sum
 * over workers (prom-client's AggregatorRegistry over the cluster's IPC
 * channel) and /readyz is 200 only when every worker is ready. The real
 * command line, with the scripted introspection endpoint (two workers, two
 * caches: each may introspect the token once).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call } from '../helpers/core.js';
import { ensureBuilt, freePort, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { adminCall } from './helpers.js';
import { parsePrometheus, total, value } from './prometheus.js';

describe('admin listener with workers (the real command line)', () => {
  let api: EchoUpstream;
  let as: ScriptedIntrospection;
  let scratch: ReturnType<typeof scratchDir>;
  let run: CliRun | undefined;
  before(async () => {
    ensureBuilt();
    api = await startEchoUpstream();
    as = await startScriptedIntrospection();
    scratch = scratchDir();
  });
  after(async () => {
    run?.kill();
    await api?.close();
    await as?.close();
    scratch?.cleanup();
  });

  test('scripted: /metrics sums the workers; /readyz is 200 with every worker ready; SIGTERM exits 0', async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const file = scratch.write(
      'gateway.yaml',
      `
workers: 2
listen: { host: 127.0.0.1, port: ${port} }
admin: { listen: { host: 127.0.0.1, port: ${adminPort} } }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: ${api.url}
`,
    );
    await as.activate('worker-token');
    run = startCli(['--config', file]);
    const admin = `http://127.0.0.1:${adminPort}`;
    await run.waitFor(/admin listening/, 20_000);
    let ready = await adminCall(`${admin}/readyz`);
    for (let i = 0; i < 400 && ready.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      ready = await adminCall(`${admin}/readyz`);
    }
    assert.equal(ready.status, 200, ready.text);
    assert.equal((ready.json?.checks as Record<string, unknown>).ready_workers, 2);

    const n = 12;
    for (let i = 0; i < n; i++) assert.equal((await call(`http://127.0.0.1:${port}/api/x`, 'Bearer worker-token')).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await call(`http://127.0.0.1:${port}/api/x`)).status, 401);

    const r = await adminCall(`${admin}/metrics`);
    assert.equal(r.status, 200);
    const m = parsePrometheus(r.text);
    assert.equal(value(m, 'phantom_gateway_requests_total', { door: 'proxy', route: '/api', status: '200', code: '' }), n);
    assert.equal(value(m, 'phantom_gateway_requests_total', { door: 'proxy', route: '/api', status: '401', code: 'ERR_TOKEN_MISSING' }), 3);
    const misses = value(m, 'phantom_gateway_cache_misses_total');
    assert.equal(value(m, 'phantom_gateway_cache_hits_total') + misses, n);
    assert.equal(total(m, 'phantom_gateway_introspections_total'), as.callsFor('worker-token'));
    assert.equal(misses, as.callsFor('worker-token'));
    assert.equal(total(m, 'phantom_gateway_upstream_duration_seconds_count'), n);
    // Build info is one series, not one per worker added up.
    assert.equal(total(m, 'phantom_gateway_build_info'), 1);

    run.child.kill('SIGTERM');
    const { code } = await run.exited;
    assert.equal(code, 0, run.stdout() + run.stderr());
  });
});
