/*
 * /readyz: ready once the listeners are up, discovery has succeeded and no
 * authorization server is known down; not ready while draining. A fresh
 * gateway that has made no introspection yet is ready (a load balancer
 * would otherwise never send it the request that proves it).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevAuthorizationServer, DEV_CLIENTS, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { DOWN_AFTER_OUTAGES } from '../../src/observability/metrics.js';
import { call } from '../helpers/core.js';
import { ensureBuilt, freePort, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { devToken } from '../helpers/signed-answers.js';
import { adminCall, startAdminStack, type AdminStack } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return true;
    await sleep(50);
  }
  return false;
}

describe('readiness and discovery (oidc-provider)', () => {
  let port: number;
  let as: DevAuthorizationServer | undefined;
  let api: EchoUpstream;
  let stack: AdminStack;
  before(async () => {
    port = await freePort();
    api = await startEchoUpstream();
    stack = await startAdminStack(`
admin: { listen: { host: 127.0.0.1, port: 0 } }
phantom_token:
  issuer: http://127.0.0.1:${port}
  introspection_response: json
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  scope: read
minting: { issuer: https://gateway.test }
routes:
  - path: /api
    upstream: ${api.url}
`);
  });
  after(async () => {
    await stack?.close();
    await api?.close();
    await as?.close();
  });

  test('503 while the issuer cannot be discovered (nothing listens on its port), 200 once it is up, without a restart', async () => {
    const r = await adminCall(`${stack.adminUrl}/readyz`);
    assert.equal(r.status, 503);
    assert.equal(r.json?.status, 'not ready');
    assert.equal((r.json?.checks as Record<string, unknown>).discovery, 'waiting');
    // Still alive: only not ready.
    assert.equal((await adminCall(`${stack.adminUrl}/livez`)).status, 200);

    as = await startDevAuthorizationServer({ port, publicHost: '127.0.0.1' });
    assert.ok(await until(async () => (await adminCall(`${stack.adminUrl}/readyz`)).status === 200, 20_000), 'ready after discovery');
    const ready = await adminCall(`${stack.adminUrl}/readyz`);
    assert.deepEqual(ready.json, { status: 'ready', checks: { listening: true, draining: false, discovery: 'done', authorization_servers: [{ server: `http://127.0.0.1:${port}/`, down: false, outages_in_a_row: 0 }] } });
    // And it serves.
    assert.equal((await call(`${stack.url}/api/x`, `Bearer ${await devToken(as)}`)).status, 200);
  });
});

describe('readiness and outages (scripted authorization server)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let stack: AdminStack;
  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    stack = await startAdminStack(`
admin: { listen: { host: 127.0.0.1, port: 0 } }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: ${api.url}
`);
  });
  after(async () => {
    await stack?.close();
    await api?.close();
    await as?.close();
  });

  test('scripted: a fresh gateway that has introspected nothing is ready', async () => {
    assert.equal(as.calls.length, 0);
    const r = await adminCall(`${stack.adminUrl}/readyz`);
    assert.equal(r.status, 200);
  });

  test('scripted: not ready after several outages in a row (503s), ready again at the next answer', async () => {
    as.fallback = { status: 503 };
    for (let i = 0; i < DOWN_AFTER_OUTAGES - 1; i++) assert.equal((await call(`${stack.url}/api/x`, `Bearer outage-${i}`)).status, 503);
    // One short of the rule: still ready (one failed call is no outage).
    assert.equal((await adminCall(`${stack.adminUrl}/readyz`)).status, 200);
    assert.equal((await call(`${stack.url}/api/x`, 'Bearer outage-last')).status, 503);
    const down = await adminCall(`${stack.adminUrl}/readyz`);
    assert.equal(down.status, 503);
    const servers = (down.json?.checks as { authorization_servers: Array<{ down: boolean; outages_in_a_row: number }> }).authorization_servers;
    assert.deepEqual(servers, [{ server: `${as.url}/introspect`, down: true, outages_in_a_row: DOWN_AFTER_OUTAGES }]);

    as.fallback = { status: 204 };
    assert.equal((await call(`${stack.url}/api/x`, 'Bearer after-outage')).status, 401); // an answer: the server is up
    assert.equal((await adminCall(`${stack.adminUrl}/readyz`)).status, 200);
  });
});

describe('readiness while draining (the real command line)', () => {
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

  test('SIGTERM: /readyz turns 503 while in-flight requests finish, /livez stays 200, then the process exits 0', async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const file = scratch.write(
      'gateway.yaml',
      `
listen: { host: 127.0.0.1, port: ${port} }
admin: { listen: { host: 127.0.0.1, port: ${adminPort} } }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
server: { shutdown_timeout_ms: 8000 }
routes:
  - path: /public
    upstream: ${api.url}
    phantom_token: false
`,
    );
    run = startCli(['--config', file]);
    await run.waitFor(/admin listening/, 20_000);
    const admin = `http://127.0.0.1:${adminPort}`;
    assert.equal((await adminCall(`${admin}/readyz`)).status, 200);
    const slow = call(`http://127.0.0.1:${port}/public/slow?ms=4000`);
    assert.ok(await until(async () => api.received.length === 1, 5000));
    run.child.kill('SIGTERM');
    assert.ok(await until(async () => (await adminCall(`${admin}/readyz`)).status === 503, 3500), 'not ready while draining');
    const r = await adminCall(`${admin}/readyz`);
    assert.equal((r.json?.checks as Record<string, unknown>).draining, true);
    assert.equal((await adminCall(`${admin}/livez`)).status, 200);
    assert.equal((await slow).status, 200);
    const { code } = await run.exited;
    assert.equal(code, 0);
    assert.doesNotMatch(run.stdout() + run.stderr(), /"level":50/);
  });
});
