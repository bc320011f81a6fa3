/*
 * The admin listener's endpoints: what each answers, the 404/405 rules, and
 * the bearer check on state-changing endpoints (constant-time, no detail in
 * refusals, the token never logged).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { AdminListener, type ReloadOutcome } from '../../src/admin/server.js';
import { BearerCheck } from '../../src/admin/token.js';
import { createLogger } from '../../src/observability/logger.js';
import { GatewayMetrics } from '../../src/observability/metrics.js';
import { adminCall } from './helpers.js';

const TOKEN = 'a3f9c2d4e5b6a7980123456789abcdef';

function logSink(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  return {
    lines,
    stream: new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    }),
  };
}

async function startAdmin(opts: { token?: string; reload?: () => Promise<ReloadOutcome>; ready?: () => boolean } = {}) {
  const sink = logSink();
  const metrics = new GatewayMetrics({ processMetrics: false });
  const listener = new AdminListener(
    { listen: { host: '127.0.0.1', port: 0 }, ...(opts.token ? { token: opts.token } : {}) },
    {
      logger: createLogger('info', sink.stream),
      metrics: { contentType: metrics.registry.contentType, scrape: () => metrics.registry.metrics() },
      readiness: () => ({ ready: opts.ready?.() ?? true, checks: { listening: true } }),
      reload: opts.reload,
    },
  );
  const { port } = await listener.listen();
  return { listener, url: `http://127.0.0.1:${port}`, logs: () => sink.lines.join('') };
}

describe('admin endpoints', () => {
  let admin: Awaited<ReturnType<typeof startAdmin>>;
  let ready = true;
  let reloads = 0;
  let nextOutcome: ReloadOutcome = { ok: true };
  before(async () => {
    admin = await startAdmin({
      token: TOKEN,
      ready: () => ready,
      reload: async () => {
        reloads++;
        return nextOutcome;
      },
    });
  });
  after(() => admin.listener.close());

  test('GET /livez: 200 {"status":"ok"}, no-store; HEAD has no body', async () => {
    const r = await adminCall(`${admin.url}/livez`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'ok' });
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['cache-control'], 'no-store');
    const h = await adminCall(`${admin.url}/livez`, { method: 'HEAD' });
    assert.equal(h.status, 200);
    assert.equal(h.text, '');
  });

  test('GET /readyz: 200 ready or 503 not ready, with the checks', async () => {
    let r = await adminCall(`${admin.url}/readyz`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'ready', checks: { listening: true } });
    ready = false;
    r = await adminCall(`${admin.url}/readyz?verbose=1`);
    ready = true;
    assert.equal(r.status, 503);
    assert.equal(r.json?.status, 'not ready');
  });

  test('GET /metrics answers without a token', async () => {
    const r = await adminCall(`${admin.url}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.text, /^# HELP phantom_gateway_build_info /m);
  });

  test('unknown paths are a JSON 404; a known path with another method is a 405 with Allow', async () => {
    for (const path of ['/', '/nope', '/metrics/x', '/livez/', '/constructor', '/__proto__']) {
      const r = await adminCall(`${admin.url}${path}`);
      assert.equal(r.status, 404, path);
      assert.deepEqual(r.json, { code: 'not_found', message: 'No such admin endpoint' });
    }
    let r = await adminCall(`${admin.url}/metrics`, { method: 'POST' });
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET, HEAD');
    r = await adminCall(`${admin.url}/reload`, { method: 'GET' });
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'POST');
    assert.equal(reloads, 0);
  });

  test('POST /reload: without the token 401 with a Bearer challenge and no detail; a wrong one the same; the reload is never called', async () => {
    const refusals = [
      await adminCall(`${admin.url}/reload`, { method: 'POST' }),
      await adminCall(`${admin.url}/reload`, { method: 'POST', authorization: `Bearer ${TOKEN.slice(0, -1)}x` }),
      await adminCall(`${admin.url}/reload`, { method: 'POST', authorization: `Bearer ${TOKEN}x` }),
      await adminCall(`${admin.url}/reload`, { method: 'POST', authorization: `Basic ${TOKEN}` }),
      await adminCall(`${admin.url}/reload`, { method: 'POST', authorization: TOKEN }),
      // Twice (the right one first): refused, whatever Node keeps.
      await adminCall(`${admin.url}/reload`, { method: 'POST', authorization: [`Bearer ${TOKEN}`, 'Bearer other-token-000000000'] }),
    ];
    for (const r of refusals) {
      assert.equal(r.status, 401);
      assert.equal(r.headers['www-authenticate'], 'Bearer realm="phantom-gateway-admin"');
      assert.equal(r.text, '{"code":"unauthorized","message":"Admin token required"}');
    }
    assert.equal(reloads, 0);
    assert.ok(!admin.logs().includes(TOKEN.slice(0, 16)), 'the token is never logged');
  });

  test('POST /reload with the token: 200 when the reload succeeds, 422 with its errors when it does not', async () => {
    nextOutcome = { ok: true };
    let r = await adminCall(`${admin.url}/reload`, { method: 'POST', authorization: `Bearer ${TOKEN}` });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'reloaded' });
    nextOutcome = { ok: false, errors: ['gateway.yaml:3: routes: must have at least one route'] };
    r = await adminCall(`${admin.url}/reload`, { method: 'POST', authorization: `bearer  ${TOKEN}` });
    assert.equal(r.status, 422);
    assert.deepEqual(r.json, { status: 'rejected', errors: ['gateway.yaml:3: routes: must have at least one route'] });
    assert.equal(reloads, 2);
    assert.ok(!admin.logs().includes(TOKEN.slice(0, 16)), 'the token is never logged');
  });

  test('a request that announces a body is answered and its connection closed (the body is never read)', async () => {
    nextOutcome = { ok: true };
    const socket = connect(Number(new URL(admin.url).port), '127.0.0.1');
    socket.write(`POST /reload HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\ncontent-length: 100000\r\n\r\nabc`);
    let text = '';
    socket.setEncoding('utf8').on('data', (d: string) => (text += d));
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(text, /\r\nconnection: close\r\n/i);
  });
});

describe('admin endpoints without a token or a reload', () => {
  test('no token configured: POST /reload is 403, whatever is sent; health and metrics still answer', async () => {
    let called = false;
    const admin = await startAdmin({
      reload: async () => {
        called = true;
        return { ok: true };
      },
    });
    try {
      for (const authorization of [undefined, `Bearer ${TOKEN}`, 'Bearer ']) {
        const r = await adminCall(`${admin.url}/reload`, { method: 'POST', ...(authorization ? { authorization } : {}) });
        assert.equal(r.status, 403);
        assert.equal(r.json?.code, 'forbidden');
      }
      assert.equal(called, false);
      assert.equal((await adminCall(`${admin.url}/livez`)).status, 200);
      assert.equal((await adminCall(`${admin.url}/metrics`)).status, 200);
    } finally {
      await admin.listener.close();
    }
  });

  test('a token but no reload wired in this process: 501 after the token check', async () => {
    const admin = await startAdmin({ token: TOKEN });
    try {
      assert.equal((await adminCall(`${admin.url}/reload`, { method: 'POST' })).status, 401);
      const r = await adminCall(`${admin.url}/reload`, { method: 'POST', authorization: `Bearer ${TOKEN}` });
      assert.equal(r.status, 501);
    } finally {
      await admin.listener.close();
    }
  });
});

describe('BearerCheck', () => {
  const check = new BearerCheck(TOKEN);
  test('accepts exactly the token, as a Bearer credential (scheme in any case)', () => {
    assert.equal(check.accepts(`Bearer ${TOKEN}`), true);
    assert.equal(check.accepts(`BEARER ${TOKEN}`), true);
  });
  test('refuses anything else: absent, repeated, other schemes, prefixes, longer, shorter, empty', () => {
    for (const h of [undefined, [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`], `Basic ${TOKEN}`, TOKEN, `Bearer ${TOKEN.slice(0, 16)}`, `Bearer ${TOKEN}${TOKEN}`, 'Bearer ', '', `Bearer ${TOKEN} extra`]) {
      assert.equal(check.accepts(h as string | string[] | undefined), false, String(h));
    }
  });
});
