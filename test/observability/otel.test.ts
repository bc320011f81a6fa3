/*
 * OpenTelemetry spans through the real gateway with a real SDK
 * (`BasicTracerProvider`, `InMemorySpanExporter`), registered as an
 * application would: the request (server), the introspection and the
 * upstream call (clients), their parent/child relation, their attributes,
 * and the traceparents the upstream and the (scripted, header-recording)
 * introspection endpoint received.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { SpanKind, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { gatewayConfig } from '../helpers/core.js';
import { refreshTracing, tracing } from '../../src/observability/tracing.js';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const PARENT = 'b7ad6b7169203331';
const TP = `00-${TRACE_ID}-${PARENT}-01`;
let serial = 0;
const fresh = (label: string) => `opaque-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

describe('OpenTelemetry spans with a registered SDK', () => {
  const exporter = new InMemorySpanExporter();
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  let fa: TestForwardAuth;

  before(async () => {
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    gw = await startGateway(gatewayConfig({ introspection: as.url, upstream: api.url, routes: [{ path: '/api' }] }));
    fa = await startForwardAuth(gatewayConfig({ introspection: as.url, upstream: api.url, routes: [{ path: '/api' }], extra: { forward_auth: { listen: { host: '127.0.0.1', port: 0 } } } }));
  });
  after(async () => {
    await fa.close();
    await gw.close();
    await as.close();
    await api.close();
    trace.disable();
  });
  beforeEach(() => {
    exporter.reset();
    as.calls.length = 0;
    api.received.length = 0;
  });

  test('a miss: server span parented on the incoming traceparent, introspection and upstream spans its children, each peer got its span\'s traceparent', async () => {
    assert.equal(tracing.on, true, 'the gateway saw the SDK when it was built');
    const t = fresh('miss');
    await as.activate(t);
    const res = await get(`${gw.url}/api/items?secret=q1`, { authorization: `Bearer ${t}`, traceparent: TP, tracestate: 'vendor=x' });
    assert.equal(res.status, 200);
    const spans = exporter.getFinishedSpans();
    const server = spans.filter((s) => s.kind === SpanKind.SERVER);
    const clients = spans.filter((s) => s.kind === SpanKind.CLIENT);
    assert.equal(server.length, 1);
    assert.equal(clients.length, 2);
    const srv = server[0]!;
    assert.equal(srv.spanContext().traceId, TRACE_ID);
    assert.equal(parentOf(srv), PARENT);
    assert.equal(srv.name, 'GET /api');
    assert.equal(srv.attributes['http.request.method'], 'GET');
    assert.equal(srv.attributes['http.route'], '/api');
    assert.equal(srv.attributes['url.path'], '/api/items');
    assert.equal(srv.attributes['http.response.status_code'], 200);
    const introspection = clients.find((s) => s.attributes['phantom_gateway.operation'] === 'introspection')!;
    const upstream = clients.find((s) => s !== introspection)!;
    for (const c of [introspection, upstream]) {
      assert.equal(c.spanContext().traceId, TRACE_ID);
      assert.equal(parentOf(c), srv.spanContext().spanId);
    }
    assert.equal(introspection.attributes['http.request.method'], 'POST');
    assert.equal(introspection.attributes['url.full'], `${as.url}/introspect`);
    assert.equal(introspection.attributes['http.response.status_code'], 200);
    assert.equal(upstream.attributes['url.full'], `${api.url}/api/items`, 'no query in the URL');
    assert.equal(upstream.attributes['http.response.status_code'], 200);
    assert.equal(as.calls[0]!.headers.traceparent, `00-${TRACE_ID}-${introspection.spanContext().spanId}-01`);
    assert.equal(api.received[0]!.headers.traceparent, `00-${TRACE_ID}-${upstream.spanContext().spanId}-01`);
    assert.equal(api.received[0]!.headers.tracestate, 'vendor=x');
    const dump = JSON.stringify(spans.map((s) => [s.name, s.attributes]));
    assert.ok(!dump.includes(t) && !dump.includes('secret=q1'), 'no token and no query in any span');
  });

  test('a hit: a server span and an upstream span only; a request without traceparent starts a new trace', async () => {
    const t = fresh('hit');
    await as.activate(t);
    assert.equal((await get(`${gw.url}/api/x`, { authorization: `Bearer ${t}` })).status, 200);
    exporter.reset();
    api.received.length = 0;
    assert.equal((await get(`${gw.url}/api/x`, { authorization: `Bearer ${t}` })).status, 200);
    const spans = exporter.getFinishedSpans();
    assert.deepEqual(spans.map((s) => s.kind).sort(), [SpanKind.SERVER, SpanKind.CLIENT].sort());
    const srv = spans.find((s) => s.kind === SpanKind.SERVER)!;
    assert.equal(parentOf(srv), undefined);
    assert.match(api.received[0]!.headers.traceparent as string, new RegExp(`^00-${srv.spanContext().traceId}-[0-9a-f]{16}-01$`));
  });

  test('a refusal ends the server span with its status; no upstream span', async () => {
    const res = await get(`${gw.url}/api/x`, { traceparent: TP });
    assert.equal(res.status, 401);
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 1);
    assert.equal(spans[0]!.kind, SpanKind.SERVER);
    assert.equal(spans[0]!.attributes['http.response.status_code'], 401);
  });

  test('forward-auth: the decision\'s server span is parented on the original traceparent, the introspection span is its child', async () => {
    const t = fresh('fa');
    await as.activate(t);
    const res = await get(`${fa.url}/auth`, { 'x-original-method': 'GET', 'x-original-uri': '/api/items?q=1', authorization: `Bearer ${t}`, traceparent: TP });
    assert.equal(res.status, 200);
    const spans = exporter.getFinishedSpans();
    const srv = spans.find((s) => s.kind === SpanKind.SERVER)!;
    const introspection = spans.find((s) => s.kind === SpanKind.CLIENT)!;
    assert.equal(spans.length, 2);
    assert.equal(parentOf(srv), PARENT);
    assert.equal(srv.attributes['http.route'], '/api');
    assert.equal(srv.attributes['url.path'], '/api/items');
    assert.equal(srv.attributes['http.response.status_code'], 200);
    assert.equal(parentOf(introspection), srv.spanContext().spanId);
    assert.equal(as.calls.find((c) => c.token === t)!.headers.traceparent, `00-${TRACE_ID}-${introspection.spanContext().spanId}-01`);
  });

  test('once the SDK is gone (trace.disable), no spans, and the incoming traceparent passes unchanged', async () => {
    trace.disable();
    assert.equal(refreshTracing(), false);
    const t = fresh('off');
    await as.activate(t);
    assert.equal((await get(`${gw.url}/api/x`, { authorization: `Bearer ${t}`, traceparent: TP })).status, 200);
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.equal(api.received[0]!.headers.traceparent, TP);
    assert.equal(as.calls[0]!.headers.traceparent, TP);
  });
});
