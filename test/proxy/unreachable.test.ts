/*
 * An authorization server unreachable at the TCP level (a stopped process
 * with a full accept queue: connects hang): sockets to it stay within
 * `connections` while new tokens keep coming, cached tokens keep being
 * served, and a stop is bounded by shutdown_timeout_ms with connects pending.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { startEchoUpstream, signJwt } from '../helpers/servers.js';
import { startGateway } from '../helpers/gateway.js';
import { startUnreachable } from '../helpers/unreachable.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function config(asUrl: string, apiUrl: string, extra = ''): string {
  return `
phantom_token:
  introspection_endpoint: ${asUrl}/introspect
  client_id: gateway-client
  client_secret: secret
  scope: read
  connections: 4
  timeout_ms: 300
routes:
  - path: /api
    upstream: ${apiUrl}
log:
  access_log: false
${extra}`;
}

describe('authorization server that stops answering and accepting', { timeout: 20_000 }, () => {
  test('socket exhaustion: while new tokens keep arriving, sockets to it stay within connections, and cached tokens keep being served', async () => {
    const jwt = await signJwt({ scope: 'read' });
    const as = await startUnreachable({ 'dead-as-cached-token': jwt });
    const api = await startEchoUpstream();
    const gw = await startGateway(config(as.url, api.url));
    const client = new Agent({ connections: 200 });
    const call = async (token: string) => {
      const t0 = performance.now();
      const res = await request(`${gw.url}/api/x`, { dispatcher: client, headers: { authorization: `Bearer ${token}` } });
      await res.body.text();
      return { status: res.statusCode, ms: performance.now() - t0 };
    };
    try {
      assert.equal((await call('dead-as-cached-token')).status, 200);
      await as.stop();
      let most = 0;
      const flood: Promise<{ status: number }>[] = [];
      const cached: Array<{ status: number; ms: number }> = [];
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 15; i++) flood.push(call(`dead-as-new-${round}-${i}`));
        cached.push(await call('dead-as-cached-token'));
        most = Math.max(most, as.sockets());
        await sleep(40);
      }
      const statuses = new Set((await Promise.all(flood)).map((r) => r.status));
      most = Math.max(most, as.sockets());
      assert.ok(most <= 4, `${most} sockets to the authorization server with connections: 4`);
      for (const s of statuses) assert.ok([504, 429, 503].includes(s), `new tokens got ${s}: an outage is never a bad token`);
      assert.ok(cached.every((c) => c.status === 200), 'every cached-token request was served');
      const slowest = Math.max(...cached.map((c) => c.ms));
      assert.ok(slowest < 1000, `a cached-token request took ${Math.round(slowest)} ms`);
    } finally {
      await client.close();
      await gw.close();
      await api.close();
      await as.close();
    }
  });

  test('shutdown with connects pending: close() ends within shutdown_timeout_ms, and no socket to the server outlives it', async () => {
    const as = await startUnreachable();
    const api = await startEchoUpstream();
    // The connect timeout (timeout_ms) is far longer than the stop may take.
    const gw = await startGateway(config(as.url, api.url, 'server:\n  shutdown_timeout_ms: 500\n').replace('timeout_ms: 300', 'timeout_ms: 10000'));
    const client = new Agent({ connections: 20 });
    let gwClosed: Promise<void> | undefined;
    try {
      const pending = Array.from({ length: 10 }, (_, i) =>
        request(`${gw.url}/api/x`, { dispatcher: client, headers: { authorization: `Bearer shutdown-pending-${i}` } }).catch((e: unknown) => e),
      );
      const deadline = performance.now() + 3000;
      while (as.sockets() < 4 && performance.now() < deadline) await sleep(10);
      assert.equal(as.sockets(), 4, 'connects pending');
      const t0 = performance.now();
      const closing = gw.close();
      gwClosed = closing;
      await closing;
      const took = performance.now() - t0;
      assert.ok(took < 500 + 500, `close() took ${Math.round(took)} ms with shutdown_timeout_ms 500`);
      assert.equal(as.sockets(), 0, 'a pending connect outlived the stop (it would keep the process alive until its timeout)');
      await Promise.all(pending);
    } finally {
      await client.close();
      await (gwClosed ?? gw.close()).catch(() => {});
      await api.close();
      await as.close();
    }
  });
});
