/*
 * Request IDs and W3C trace context through the real gateway (proxy and
 * forward-auth listener), between a scripted introspection endpoint that
 * records the headers it received and an echo upstream.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { gatewayConfig } from '../helpers/core.js';
import { isWellFormedRequestId } from '../../src/observability/request-id.js';
import { MAX_TRACESTATE, traceHeaders } from '../../src/observability/trace-context.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
let serial = 0;
const fresh = (label: string) => `opaque-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;

async function get(url: string, headers: Record<string, string | string[]> = {}) {
  const flat: string[] = [];
  for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) flat.push(k, x);
  const res = await request(url, { headers: flat });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

describe('request IDs and trace context through the proxy', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let open: TestGateway; // no trusted proxies
  let behind: TestGateway; // trusted_proxies: 127.0.0.1 (the test client)

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const config = (extra: Record<string, unknown>) =>
      gatewayConfig({ introspection: as.url, upstream: api.url, routes: [{ path: '/api' }, { path: '/public', phantom_token: false }], extra });
    open = await startGateway(config({}));
    behind = await startGateway(config({ trusted_proxies: ['127.0.0.1'] }));
  });
  after(async () => {
    await open.close();
    await behind.close();
    await as.close();
    await api.close();
  });
  beforeEach(() => {
    as.calls.length = 0;
    api.received.length = 0;
  });

  test('generated when none is sent: a UUID, forwarded upstream, returned to the client and logged', async () => {
    const t = fresh('gen');
    await as.activate(t);
    const res = await get(`${open.url}/api/x`, { authorization: `Bearer ${t}` });
    assert.equal(res.status, 200);
    const id = res.headers['x-request-id'] as string;
    assert.match(id, UUID);
    assert.equal(api.received[0]!.headers['x-request-id'], id);
    const line = open.logs.find((l) => l.msg === 'request' && l.request_id === id);
    assert.ok(line, 'the access-log line names the request id');
  });

  test('a client\'s own X-Request-Id from an untrusted peer is replaced: neither forwarded nor returned', async () => {
    const t = fresh('untrusted');
    await as.activate(t);
    const res = await get(`${open.url}/api/x`, { authorization: `Bearer ${t}`, 'x-request-id': 'client-chosen-id' });
    assert.equal(res.status, 200);
    assert.match(res.headers['x-request-id'] as string, UUID);
    assert.deepEqual(api.received[0]!.rawHeaders.filter((_, i, a) => i % 2 === 0 && a[i]!.toLowerCase() === 'x-request-id').length, 1, 'one X-Request-Id upstream');
    assert.equal(api.received[0]!.headers['x-request-id'], res.headers['x-request-id']);
    // Spelt with underscores (CGI-style upstreams read it as the same header): dropped too.
    await get(`${open.url}/public/x`, { x_request_id: 'sneaky' });
    assert.notEqual(api.received[1]!.headers['x-request-id'], 'sneaky');
    assert.equal(api.received[1]!.headers['x_request_id'], undefined);
  });

  test('a trusted proxy\'s well-formed X-Request-Id is kept: forwarded, returned, logged', async () => {
    const t = fresh('trusted');
    await as.activate(t);
    const res = await get(`${behind.url}/api/x`, { authorization: `Bearer ${t}`, 'x-request-id': 'lb-7f3a:42' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-request-id'], 'lb-7f3a:42');
    assert.equal(api.received[0]!.headers['x-request-id'], 'lb-7f3a:42');
    assert.ok(behind.logs.some((l) => l.msg === 'request' && l.request_id === 'lb-7f3a:42'));
  });

  test('a trusted proxy\'s malformed X-Request-Id (too long, a space, a quote) is replaced by a generated one', async () => {
    for (const bad of ['x'.repeat(129), 'has space', 'quote"d', 'a,b', '']) {
      const res = await get(`${behind.url}/public/x`, { 'x-request-id': bad });
      assert.equal(res.status, 200);
      assert.match(res.headers['x-request-id'] as string, UUID, JSON.stringify(bad));
      assert.equal(api.received.at(-1)!.headers['x-request-id'], res.headers['x-request-id']);
    }
  });

  test('refusals carry it too: 401 without a token, 404 without a route, 400 on a bad target, 502 upstream of a refusal from the AS', async () => {
    const noToken = await get(`${open.url}/api/x`);
    assert.equal(noToken.status, 401);
    assert.match(noToken.headers['x-request-id'] as string, UUID);
    const noRoute = await get(`${open.url}/nowhere`);
    assert.equal(noRoute.status, 404);
    assert.match(noRoute.headers['x-request-id'] as string, UUID);
    const badTarget = await get(`${behind.url}/api/a%2Fb`, { 'x-request-id': 'trusted-refusal-1' });
    assert.equal(badTarget.status, 400);
    assert.equal(badTarget.headers['x-request-id'], 'trusted-refusal-1', 'a trusted ID is kept on a refusal before routing');
    const t = fresh('as-fails');
    as.answers.set(t, { status: 500 });
    const failed = await get(`${open.url}/api/x`, { authorization: `Bearer ${t}` });
    assert.equal(failed.status, 502);
    const id = failed.headers['x-request-id'] as string;
    assert.match(id, UUID);
    assert.ok(open.logs.some((l) => l.msg === 'request' && l.request_id === id && l.status === 502));
    for (const r of [noToken, noRoute]) assert.ok(open.logs.some((l) => l.msg === 'request' && l.request_id === r.headers['x-request-id']));
  });

  test('a valid traceparent and tracestate reach the upstream and the introspection endpoint unchanged (no SDK registered)', async () => {
    const t = fresh('trace');
    await as.activate(t);
    const res = await get(`${open.url}/api/x`, { authorization: `Bearer ${t}`, traceparent: TP, tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7' });
    assert.equal(res.status, 200);
    assert.equal(api.received[0]!.headers.traceparent, TP);
    assert.equal(api.received[0]!.headers.tracestate, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
    assert.equal(as.calls[0]!.headers.traceparent, TP);
    assert.equal(as.calls[0]!.headers.tracestate, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
  });

  test('an invalid traceparent is dropped with its tracestate; two traceparents are none; an oversized tracestate is dropped', async () => {
    const cases: Array<[Record<string, string | string[]>, string | undefined, string | undefined]> = [
      [{ traceparent: TP.toUpperCase(), tracestate: 'a=b' }, undefined, undefined],
      [{ traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' }, undefined, undefined],
      [{ traceparent: 'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }, undefined, undefined],
      [{ traceparent: `${TP}-extra` }, undefined, undefined],
      [{ traceparent: [TP, TP] }, undefined, undefined],
      [{ traceparent: TP, tracestate: `k=${'v'.repeat(MAX_TRACESTATE)}` }, TP, undefined],
    ];
    for (const [headers, tp, ts] of cases) {
      api.received.length = 0;
      const res = await get(`${open.url}/public/x`, headers);
      assert.equal(res.status, 200);
      assert.equal(api.received[0]!.headers.traceparent, tp, JSON.stringify(headers));
      assert.equal(api.received[0]!.headers.tracestate, ts, JSON.stringify(headers));
    }
  });

  test('single-flight: the introspection carries the trace context of the request that started it', async () => {
    const t = fresh('flight');
    await as.activate(t, {}, { delayMs: 150 });
    const first = '00-11111111111111111111111111111111-1111111111111111-01';
    const second = '00-22222222222222222222222222222222-2222222222222222-01';
    const [a, b] = await Promise.all([
      get(`${open.url}/api/x`, { authorization: `Bearer ${t}`, traceparent: first }),
      new Promise((r) => setTimeout(r, 30)).then(() => get(`${open.url}/api/y`, { authorization: `Bearer ${t}`, traceparent: second })),
    ]);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.equal(as.callsFor(t), 1);
    assert.equal(as.calls.find((c) => c.token === t)!.headers.traceparent, first);
    const up = api.received.map((r) => r.headers.traceparent).sort();
    assert.deepEqual(up, [first, second], 'each request\'s own context goes upstream');
  });

  test('the rules: request IDs and trace headers', () => {
    assert.equal(isWellFormedRequestId('6f9619ff-8b86-d011-b42d-00cf4fc964ff'), true);
    assert.equal(isWellFormedRequestId('a'.repeat(128)), true);
    assert.equal(isWellFormedRequestId('a'.repeat(129)), false);
    assert.equal(isWellFormedRequestId('new\nline'), false);
    assert.equal(traceHeaders(TP, undefined)?.traceparent, TP);
    // A later version may add fields: accepted, and passed on as its version-00 part (never the client's extra text).
    assert.equal(traceHeaders('01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later', undefined)?.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    assert.equal(traceHeaders('00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01', 'a=b'), undefined);
    assert.equal(traceHeaders(TP, 'a=\u0001')?.tracestate, undefined);
  });
});

describe('request IDs through the forward-auth listener', () => {
  let as: ScriptedIntrospection;
  let open: TestForwardAuth;
  let behind: TestForwardAuth;
  const ask = (fa: TestForwardAuth, headers: Record<string, string>) => get(`${fa.url}/auth`, { 'x-original-method': 'GET', 'x-original-uri': '/api/x', ...headers });

  before(async () => {
    as = await startScriptedIntrospection();
    const config = (extra: Record<string, unknown>) =>
      gatewayConfig({ introspection: as.url, upstream: 'http://127.0.0.1:9', routes: [{ path: '/api' }], extra: { forward_auth: { listen: { host: '127.0.0.1', port: 0 } }, ...extra } });
    open = await startForwardAuth(config({}));
    behind = await startForwardAuth(config({ trusted_proxies: ['127.0.0.1'] }));
  });
  after(async () => {
    await open.close();
    await behind.close();
    await as.close();
  });

  test('an allow and a refusal return X-Request-Id (generated, or the trusted asker\'s), and the decision line logs it', async () => {
    const t = fresh('fa');
    await as.activate(t);
    const allowed = await ask(behind, { authorization: `Bearer ${t}`, 'x-request-id': 'nginx-0123abcd' });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers['x-request-id'], 'nginx-0123abcd');
    const refused = await ask(behind, { 'x-request-id': 'nginx-4567ef' });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers['x-request-id'], 'nginx-4567ef');
    const untrusted = await ask(open, { authorization: `Bearer ${t}`, 'x-request-id': 'client-chosen' });
    assert.equal(untrusted.status, 200);
    assert.match(untrusted.headers['x-request-id'] as string, UUID);
    const lines = behind.logs.filter((l) => l.msg === 'decision');
    assert.deepEqual(lines.map((l) => [l.request_id, l.status, l.cache]), [['nginx-0123abcd', 200, 'miss'], ['nginx-4567ef', 401, '-']]);
    assert.equal(lines[0]!.route, '/api');
    assert.equal(lines[0]!.client_id, 'test-client');
    assert.equal(typeof lines[0]!.introspection_ms, 'number');
  });

  test('the original request\'s traceparent goes to the introspection', async () => {
    const t = fresh('fa-trace');
    await as.activate(t);
    const res = await ask(open, { authorization: `Bearer ${t}`, traceparent: TP });
    assert.equal(res.status, 200);
    assert.equal(as.calls.find((c) => c.token === t)!.headers.traceparent, TP);
  });
});
