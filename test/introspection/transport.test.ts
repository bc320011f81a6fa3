/*
 * The introspection transport under a dead or slow authorization server:
 * sockets bounded by `connections` whatever the server does, calls answered
 * 504 while waiting never sent, and a stop that cuts connects still pending.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { GatewayError } from '../../src/core/errors.js';
import { IntrospectionClient, type IntrospectionClientOptions } from '../../src/introspection/client.js';
import { listen, type Started } from '../helpers/servers.js';
import { startUnreachable, type Unreachable } from '../helpers/unreachable.js';

function client(url: string, opts: Partial<IntrospectionClientOptions> = {}): IntrospectionClient {
  return new IntrospectionClient({
    endpoint: new URL(`${url}/introspect`),
    clientId: 'gateway-client',
    clientSecret: 'gateway-secret',
    timeoutMs: 300,
    verifySsl: true,
    maxAnswerBytes: 65536,
    connections: 4,
    ...opts,
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('authorization server unreachable at the TCP level (connects hang)', { timeout: 20_000 }, () => {
  let dead: Unreachable;
  before(async () => {
    dead = await startUnreachable();
  });
  after(() => dead.close());

  test('socket exhaustion: sockets to it never exceed `connections` while new tokens keep arriving, and every call gets its 504 on time', async () => {
    const c = client(dead.url, { connections: 4, timeoutMs: 300 });
    let most = 0;
    const outcomes: Promise<unknown>[] = [];
    try {
      // 20 new tokens every 40 ms for 1.6 s: many connect timeouts in a row.
      for (let round = 0; round < 40; round++) {
        for (let i = 0; i < 20; i++) outcomes.push(c.introspect(`dead-${round}-${i}`).catch((e: unknown) => e));
        await sleep(40);
        most = Math.max(most, dead.sockets());
      }
      const settled = await Promise.all(outcomes);
      for (const e of settled) assert.ok(e instanceof GatewayError && e.code === 'ERR_INTROSPECTION_TIMEOUT', String(e));
      most = Math.max(most, dead.sockets());
      assert.ok(most <= 4, `${most} sockets to the server with connections: 4`);
      assert.ok(most >= 1, 'the test did reach the server');
    } finally {
      const t0 = performance.now();
      await c.destroy();
      assert.ok(performance.now() - t0 < 500, 'destroy() did not wait for connect timeouts');
    }
    assert.equal(dead.sockets(), 0, 'destroy() cut the connects still pending');
  });

  test('destroy() with connects pending: every socket is gone at once (not after the connect timeout)', async () => {
    const c = client(dead.url, { connections: 3, timeoutMs: 10_000 });
    const calls = [0, 1, 2, 3, 4].map((i) => c.introspect(`pending-${i}`).catch((e: unknown) => e));
    await sleep(100);
    assert.equal(dead.sockets(), 3);
    const t0 = performance.now();
    await c.destroy();
    assert.ok(performance.now() - t0 < 500);
    assert.equal(dead.sockets(), 0);
    for (const e of await Promise.all(calls)) assert.ok(e instanceof GatewayError && e.code === 'ERR_INTROSPECTION_UNREACHABLE', String(e));
  });
});

describe('scripted slow authorization server: calls waiting for a connection', { timeout: 10_000 }, () => {
  let srv: Started;
  const seen: string[] = [];
  before(async () => {
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        seen.push(new URLSearchParams(body).get('token') ?? '');
        setTimeout(() => res.writeHead(204).end(), body.includes('slow') ? 400 : 0);
      });
    });
    srv = await listen(server);
  });
  after(() => srv.close());

  test('withdraw(): a waiting call whose requesters left is never sent; a started one cannot be withdrawn', async () => {
    const c = client(srv.url, { connections: 1, timeoutMs: 2000 });
    try {
      const a = { client: '127.0.0.9' } as { client: string; withdraw?: () => boolean };
      const b = { client: '127.0.0.9' } as { client: string; withdraw?: () => boolean };
      const first = c.introspect('slow-running', a);
      const second = c.introspect('withdrawn', b).catch((e: unknown) => e);
      assert.equal(a.withdraw, undefined, 'a call that started at once has nothing to withdraw');
      assert.equal(b.withdraw!(), true);
      assert.equal(b.withdraw!(), false);
      assert.ok((await second) instanceof GatewayError);
      await first;
      assert.deepEqual(seen, ['slow-running']);
      assert.deepEqual(c.load, { running: 0, queued: 0 });
    } finally {
      await c.destroy();
    }
  });

  test('per-client and global caps: refusals are immediate, 429 and 503 with Retry-After, never a token verdict', async () => {
    const c = client(srv.url, { connections: 1, timeoutMs: 2000, maxQueued: 3, maxQueuedPerClient: 2 });
    try {
      const running = c.introspect('slow-cap-0', { client: 'a' });
      const queued = [c.introspect('q1', { client: 'a' }), c.introspect('q2', { client: 'a' })];
      const t0 = performance.now();
      const perClient = await c.introspect('q3', { client: 'a' }).catch((e: unknown) => e);
      assert.ok(perClient instanceof GatewayError);
      assert.equal(perClient.status, 429);
      assert.equal(perClient.retryAfter, '1');
      queued.push(c.introspect('q4', { client: 'b' }));
      const global = await c.introspect('q5', { client: 'c' }).catch((e: unknown) => e);
      assert.ok(global instanceof GatewayError);
      assert.equal(global.status, 503);
      assert.equal(global.retryAfter, '1');
      assert.ok(performance.now() - t0 < 100, 'refused at once');
      await Promise.all([running, ...queued]);
    } finally {
      await c.destroy();
    }
  });
});
