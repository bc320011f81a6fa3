import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { ensureBuilt, freePort, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

/*
 * The command line runs the forward-auth listener alone, or beside the proxy
 * over one cache (a scripted introspection endpoint counts the calls).
 */

const PT = `phantom_token:
  introspection_endpoint: \${AS_URL}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
server:
  shutdown_timeout_ms: 3000
workers: \${WORKERS:-1}
`;

describe('cli: the forward-auth listener', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let files: ReturnType<typeof scratchDir>;
  let client: Agent;
  const children: CliRun[] = [];

  before(async () => {
    ensureBuilt();
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    files = scratchDir();
    client = new Agent();
  });
  after(async () => {
    for (const c of children) c.kill();
    await client.close();
    await as.close();
    await api.close();
    files.cleanup();
  });

  const ask = async (url: string, uri: string, token: string) => {
    const res = await request(`${url}/`, { dispatcher: client, headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': uri, authorization: `Bearer ${token}` } });
    await res.body.dump();
    return res;
  };

  for (const workers of ['1', '2']) {
    test(`forward-auth alone (no listen, routes without upstream) starts, answers, and stops on SIGTERM (workers: ${workers})`, async () => {
      const port = await freePort();
      const file = files.write(`alone-${workers}.yaml`, `${PT}forward_auth:\n  listen:\n    port: ${port}\nroutes:\n  - path: /api\n  - path: /admin\n    phantom_token:\n      scope: admin\n`);
      const run = startCli(['--config', file], { AS_URL: as.url, WORKERS: workers });
      children.push(run);
      await run.waitFor(/"msg":"forward-auth listening"/);
      if (workers === '2') await run.waitFor(/"msg":"forward-auth listening"[^\n]*\n(?:.*\n)*.*"msg":"forward-auth listening"/);
      assert.doesNotMatch(run.stdout(), /phantom-gateway listening/, 'no proxy listener');
      const token = `alone-${workers}-token`;
      const jwt = await as.activate(token);
      const url = `http://127.0.0.1:${port}`;
      const ok = await ask(url, '/api/items', token);
      assert.equal(ok.statusCode, 200);
      assert.equal(ok.headers.authorization, `Bearer ${jwt}`);
      assert.equal((await ask(url, '/admin', token)).statusCode, 403);
      run.child.kill('SIGTERM');
      assert.deepEqual(await run.exited, { code: 0, signal: null });
      assert.ok(!run.stdout().includes(token) && !run.stdout().includes(jwt), 'no token or JWT in the logs');
    });
  }

  test('proxy and forward-auth in one process share one cache: a token introspected through the proxy is a hit through forward-auth', async () => {
    const proxyPort = await freePort();
    const faPort = await freePort();
    const file = files.write(
      'both.yaml',
      `${PT}listen:\n  host: 127.0.0.1\n  port: ${proxyPort}\nforward_auth:\n  listen:\n    port: ${faPort}\nroutes:\n  - path: /api\n    upstream: ${api.url}\n`,
    );
    const run = startCli(['--config', file], { AS_URL: as.url });
    children.push(run);
    await run.waitFor(/"msg":"forward-auth listening"/);
    assert.match(run.stdout(), /"msg":"phantom-gateway listening"/);
    const token = 'shared-cache-token';
    const jwt = await as.activate(token);
    const proxied = await request(`http://127.0.0.1:${proxyPort}/api/x`, { dispatcher: client, headers: { authorization: `Bearer ${token}` } });
    await proxied.body.dump();
    assert.equal(proxied.statusCode, 200);
    assert.equal(api.received.at(-1)!.headers.authorization, `Bearer ${jwt}`);
    assert.equal(as.callsFor(token), 1);
    const decided = await ask(`http://127.0.0.1:${faPort}`, '/api/y', token);
    assert.equal(decided.statusCode, 200);
    assert.equal(decided.headers.authorization, `Bearer ${jwt}`);
    assert.equal(as.callsFor(token), 1, 'no second introspection');
    await run.waitFor(/"msg":"decision"/);
    assert.match(run.stdout(), /"path":"\/api\/y","status":200,"ms":[\d.]+,"cache":"hit",[^\n]*"msg":"decision"/);
    run.child.kill('SIGTERM');
    assert.deepEqual(await run.exited, { code: 0, signal: null });
  });

  for (const workers of ['1', '2']) {
    test(`a forward-auth port already in use stops start-up with exit 1 and names the option, even after the proxy listener started (workers: ${workers})`, async () => {
      const busy = await startEchoUpstream();
      try {
        const proxyPort = await freePort();
        const file = files.write(
          `busy-${workers}.yaml`,
          `${PT}listen:\n  host: 127.0.0.1\n  port: ${proxyPort}\nforward_auth:\n  listen:\n    port: ${busy.port}\nroutes:\n  - path: /api\n    upstream: ${api.url}\n`,
        );
        const run = startCli(['--config', file], { AS_URL: as.url, WORKERS: workers });
        children.push(run);
        const { code } = await run.exited;
        assert.equal(code, 1);
        assert.match(run.stderr(), new RegExp(`127\\.0\\.0\\.1:${busy.port} is already in use: stop what is using it or change forward_auth\\.listen\\.port`));
        // A worker that could not open every listener is not one to replace: the gateway stops.
        if (workers === '2') assert.match(run.stdout(), /a worker exited before it was listening: stopping/);
      } finally {
        await busy.close();
      }
    });
  }
});
