/*
 * Token scanning and miss floods (RFC 7662 §4): one client's burst of unknown
 * tokens must not make everyone else's new tokens wait, must be bounded per
 * client and in total with fast refusals, and what its clients gave up on
 * must not be introspected. Clients are told apart by their loopback source
 * address (127.0.0.2, 127.0.0.3, ...), or behind a trusted proxy by
 * X-Forwarded-For.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Pool, request } from 'undici';
import { suiteStack } from '../helpers/gateway.js';

/** A client of the gateway at `port`, from its own loopback address. */
function clientAt(port: number, address: string, connections = 16): Pool {
  return new Pool(`http://127.0.0.1:${port}`, { connections, localAddress: address });
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  ms: number;
}

async function get(pool: Pool, port: number, token: string, headers: Record<string, string> = {}): Promise<Answer> {
  const t0 = performance.now();
  const res = await request(`http://127.0.0.1:${port}/api/x`, { dispatcher: pool, headers: { authorization: `Bearer ${token}`, ...headers } });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text(), ms: performance.now() - t0 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('miss flood from one client, scripted introspection answering after 50 ms', { timeout: 30_000 }, () => {
  const s = suiteStack(
    (as, api) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: secret
  scope: read
  connections: 4
  timeout_ms: 1500
  max_queued: 2000
  max_queued_per_client: 1000
routes:
  - path: /api
    upstream: ${api.url}
log:
  access_log: false
`,
  );

  test('miss-flood fairness: a second client\'s new valid token is answered while 300 garbage tokens of the first wait (FIFO made it wait into a 504)', async () => {
    s.as.fallback = { status: 204, delayMs: 50 };
    await s.as.activate('flood-legit-token', { scope: 'read' }, { delayMs: 50 });
    const flooder = clientAt(s.gw.port, '127.0.0.2', 300);
    const legit = clientAt(s.gw.port, '127.0.0.3', 1);
    try {
      const burst = Array.from({ length: 300 }, (_, i) => get(flooder, s.gw.port, `flood-garbage-${i}`).catch((e: Error) => e));
      await until(() => s.as.calls.length >= 4, 'the burst to reach the authorization server');
      const answer = await get(legit, s.gw.port, 'flood-legit-token');
      assert.equal(answer.status, 200, answer.body);
      assert.ok(answer.ms < 1400, `the legitimate token took ${Math.round(answer.ms)} ms`);
      // In arrival order it would come after all 300; its turn comes after at most one per waiting client.
      const position = s.as.calls.findIndex((c) => c.token === 'flood-legit-token');
      assert.ok(position < 100, `introspected after ${position} garbage tokens`);
      const settled = await Promise.all(burst);
      for (const r of settled) assert.ok(!(r instanceof Error) && (r.status === 401 || r.status === 504), String(r instanceof Error ? r : r.status));
    } finally {
      await flooder.close();
      await legit.close();
      s.as.fallback = { status: 204 };
    }
  });
});

describe('miss-flood caps: connections 1, 2 waiting per client, 3 in all, scripted introspection answering after 300 ms', { timeout: 15_000 }, () => {
  const s = suiteStack(
    (as, api) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: secret
  connections: 1
  max_queued: 3
  max_queued_per_client: 2
routes:
  - path: /api
    upstream: ${api.url}
`,
  );

  test('past the per-client cap: 429 with Retry-After at once (never 401); past the global cap: 503 with Retry-After; joining a waiting token is never refused', async () => {
    s.as.fallback = { status: 204, delayMs: 300 };
    const a = clientAt(s.gw.port, '127.0.0.2');
    const b = clientAt(s.gw.port, '127.0.0.3');
    try {
      const running = get(a, s.gw.port, 'cap-running');
      await until(() => s.as.calls.length === 1, 'the first introspection');
      const queued = [get(a, s.gw.port, 'cap-q1'), get(a, s.gw.port, 'cap-q2')];
      await until(() => s.gw.gateway.introspectionLoad().queued === 2, 'two waiting');
      const tooMany = await get(a, s.gw.port, 'cap-q3');
      assert.equal(tooMany.status, 429);
      assert.equal(tooMany.headers['retry-after'], '1');
      assert.deepEqual(JSON.parse(tooMany.body), { code: 'too_many_requests', message: 'Too many new access tokens at once' });
      // The same token as one already waiting joins it: no cap applies.
      const joined = get(a, s.gw.port, 'cap-q1');
      queued.push(get(b, s.gw.port, 'cap-b1'));
      await until(() => s.gw.gateway.introspectionLoad().queued === 3, 'three waiting');
      const overloaded = await get(b, s.gw.port, 'cap-b2');
      assert.equal(overloaded.status, 503);
      assert.equal(overloaded.headers['retry-after'], '1');
      assert.deepEqual(JSON.parse(overloaded.body), { code: 'server_error', message: 'Token validation is temporarily unavailable' });
      for (const r of [tooMany, overloaded]) assert.ok(r.ms < 250, `refused after ${Math.round(r.ms)} ms: it must not wait for the authorization server`);
      for (const r of await Promise.all([running, ...queued, joined])) assert.equal(r.status, 401);
      assert.deepEqual(s.as.calls.map((c) => c.token).sort(), ['cap-b1', 'cap-q1', 'cap-q2', 'cap-running']);
      const codes = s.gw.logs.filter((l) => l.msg === 'request').map((l) => l.code);
      assert.ok(codes.includes('ERR_TOO_MANY_INTROSPECTIONS') && codes.includes('ERR_INTROSPECTION_OVERLOADED'));
    } finally {
      await a.close();
      await b.close();
      s.as.fallback = { status: 204 };
    }
  });

  test('miss-flood withdrawal: a client that leaves while its token waits is logged 499, and its token is never introspected', async () => {
    s.as.fallback = { status: 204, delayMs: 300 };
    const a = clientAt(s.gw.port, '127.0.0.2');
    try {
      const running = get(a, s.gw.port, 'leave-running');
      await until(() => s.as.calls.length === 1, 'the first introspection');
      const ac = new AbortController();
      const leaving = request(`http://127.0.0.1:${s.gw.port}/api/leaving`, { dispatcher: a, signal: ac.signal, headers: { authorization: 'Bearer leave-waiting' } }).catch((e: unknown) => e);
      await until(() => s.gw.gateway.introspectionLoad().queued === 1, 'the token to wait');
      ac.abort();
      await leaving;
      await until(() => s.gw.gateway.introspectionLoad().queued === 0, 'the token to be withdrawn');
      assert.equal((await running).status, 401);
      await sleep(50);
      assert.equal(s.as.callsFor('leave-waiting'), 0, 'introspected for nobody');
      const line = s.gw.logs.find((l) => l.msg === 'request' && l.path === '/api/leaving');
      assert.equal(line?.status, 499);
      assert.equal(line?.code, 'client_closed');
      // Asked again, the token is introspected afresh (the withdrawn call left nothing behind).
      assert.equal((await get(a, s.gw.port, 'leave-waiting')).status, 401);
      assert.equal(s.as.callsFor('leave-waiting'), 1);
    } finally {
      await a.close();
      s.as.fallback = { status: 204 };
    }
  });
});

describe('client address behind trusted proxies', { timeout: 15_000 }, () => {
  const s = suiteStack(
    (as, api) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: secret
  connections: 1
  max_queued_per_client: 1
trusted_proxies: [127.0.0.1, 10.9.0.0/16]
routes:
  - path: /api
    upstream: ${api.url}
`,
  );

  test('the queue is chosen by the right-most X-Forwarded-For entry that is not a trusted proxy: spoofed entries left of it change nothing', async () => {
    s.as.fallback = { status: 204, delayMs: 300 };
    const peer = clientAt(s.gw.port, '127.0.0.1');
    try {
      const running = get(peer, s.gw.port, 'xff-running', { 'x-forwarded-for': '203.0.113.1' });
      await until(() => s.as.calls.length === 1, 'the first introspection');
      const first = get(peer, s.gw.port, 'xff-a1', { 'x-forwarded-for': '198.51.100.7, 203.0.113.2' });
      await until(() => s.gw.gateway.introspectionLoad().queued === 1, 'one waiting');
      // Same client (203.0.113.2) whatever it claims before it, and behind another trusted hop: its one place is taken.
      for (const [i, xff] of ['192.0.2.99, 203.0.113.2', '203.0.113.2, 10.9.1.1', '203.0.113.2,10.9.200.3, 127.0.0.1'].entries()) {
        assert.equal((await get(peer, s.gw.port, `xff-spoof-${i}`, { 'x-forwarded-for': xff })).status, 429, xff);
      }
      // Other clients, including one that claims to be the first in a left-hand entry, have their own place.
      const others = [get(peer, s.gw.port, 'xff-b1', { 'x-forwarded-for': '203.0.113.2, 203.0.113.3' }), get(peer, s.gw.port, 'xff-c1', { 'x-forwarded-for': '203.0.113.4' })];
      for (const r of await Promise.all([running, first, ...others])) assert.equal(r.status, 401);
    } finally {
      await peer.close();
      s.as.fallback = { status: 204 };
    }
  });

  test('clientAddress(): the right-most untrusted entry, else the left-most; a peer that is not trusted is the client whatever it sends', () => {
    const trusted = fc.constantFrom('127.0.0.1', '10.9.0.1', '10.9.255.254', '::ffff:10.9.3.4');
    const untrusted = fc.constantFrom('203.0.113.5', '198.51.100.1', '10.10.0.1', '2001:db8::1', 'garbage', '::ffff:192.0.2.1');
    const strip = (a: string) => (a.startsWith('::ffff:') ? a.slice(7) : a);
    fc.assert(
      fc.property(fc.array(fc.record({ ok: fc.boolean(), t: trusted, u: untrusted }), { minLength: 1, maxLength: 6 }), (hops) => {
        const list = hops.map((h) => (h.ok ? h.t : h.u));
        let expected = list[0]!;
        for (let i = hops.length - 1; i >= 0; i--) {
          if (!hops[i]!.ok) {
            expected = list[i]!;
            break;
          }
        }
        assert.equal(s.gw.gateway.clientAddress('127.0.0.1', list.join(', ')), strip(expected));
        assert.equal(s.gw.gateway.clientAddress('::ffff:127.0.0.1', undefined), '127.0.0.1');
      }),
    );
  });
});
