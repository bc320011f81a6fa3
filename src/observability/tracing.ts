import { createRequire } from 'node:module';
import type * as Api from '@opentelemetry/api';
import type { Attributes, Context, Span, Tracer } from '@opentelemetry/api';
import { formatTraceparent, parseTraceparent, type TraceHeaders } from './trace-context.js';

/*
 * OpenTelemetry spans for the request (server), the introspection (client)
 * and the upstream call (client), through `@opentelemetry/api` only: spans
 * are recorded when the application registers an SDK
 * (`trace.setGlobalTracerProvider`, or the SDK's own `register()`), and the
 * gateway does nothing otherwise.
 *
 * Cost when no SDK is registered: one read of `tracing.on` per request.
 * Asking the API per request would cost a global lookup and a version check
 * each time, so the answer is kept in that field and refreshed once a
 * second (and at once by `refreshTracing()`, which every front door calls
 * when it is built) while some front door is open.
 *
 * Parent and child are passed explicitly (no context manager needed): the
 * server span is parented on the incoming `traceparent`, the client spans on
 * the server span, and the `traceparent` sent out is the client span's.
 */

/** Whether an SDK is registered: read per request. */
export const tracing = { on: false };

/**
 * The API, loaded when the first front door is built: a process that only
 * prints its usage or checks a file does not pay for loading it.
 */
let api: typeof Api | undefined;
function otel(): typeof Api {
  return (api ??= createRequire(import.meta.url)('@opentelemetry/api') as typeof Api);
}

let tracer: Tracer | undefined;
let watchers = 0;
let timer: NodeJS.Timeout | undefined;

/** Looks again whether an SDK is registered; returns `tracing.on`. */
export function refreshTracing(): boolean {
  const { trace } = otel();
  const provider = trace.getTracerProvider() as { getDelegate?: () => object };
  // The API's proxy delegates to a no-op provider until an SDK is registered
  // (compared by name: another copy of the API may have set the global).
  const on = typeof provider.getDelegate !== 'function' || provider.getDelegate().constructor.name !== 'NoopTracerProvider';
  if (on !== tracing.on || (on && tracer === undefined)) tracer = on ? trace.getTracer('phantom-gateway') : undefined;
  tracing.on = on;
  return on;
}

/**
 * Keeps `tracing.on` current (once a second, unref'd) until the returned
 * function is called. Front doors call it when built and stop it on close.
 */
export function watchTracing(): () => void {
  refreshTracing();
  if (watchers++ === 0) {
    timer = setInterval(refreshTracing, 1000);
    timer.unref();
  }
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    if (--watchers === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

/** The parent context an incoming traceparent describes (a remote span), or the root. */
function parentContext(incoming: TraceHeaders | undefined): Context {
  const { ROOT_CONTEXT, trace, createTraceState } = otel();
  if (incoming === undefined) return ROOT_CONTEXT;
  const p = parseTraceparent(incoming.traceparent);
  if (p === undefined) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: p.traceId,
    spanId: p.spanId,
    traceFlags: p.flags & 1,
    isRemote: true,
    ...(incoming.tracestate !== undefined ? { traceState: createTraceState(incoming.tracestate) } : {}),
  });
}

/**
 * The server span of one request: `{method} {route}` (the configured route
 * path, low cardinality), with the method, route, path (never the query) and
 * scheme. Call only when `tracing.on`.
 */
export function startServerSpan(method: string, route: string | undefined, path: string, scheme: string, incoming: TraceHeaders | undefined): Span {
  const attributes: Attributes = { 'http.request.method': method, 'url.path': path, 'url.scheme': scheme };
  if (route !== undefined) attributes['http.route'] = route;
  const { trace, SpanKind } = otel();
  return (tracer ?? trace.getTracer('phantom-gateway')).startSpan(route === undefined ? method : `${method} ${route}`, { kind: SpanKind.SERVER, attributes }, parentContext(incoming));
}

/**
 * A client span under `parent`: the upstream call or the introspection.
 * `url` is origin and path only (never a query: it may carry a credential).
 */
export function startClientSpan(name: string, parent: Span, method: string, url: URL | string, extra?: Attributes): Span {
  const u = typeof url === 'string' ? new URL(url) : url;
  const attributes: Attributes = {
    'http.request.method': method,
    'server.address': u.hostname,
    'server.port': u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port),
    'url.full': `${u.origin}${u.pathname}`,
    ...extra,
  };
  const { trace, SpanKind, ROOT_CONTEXT } = otel();
  return (tracer ?? trace.getTracer('phantom-gateway')).startSpan(name, { kind: SpanKind.CLIENT, attributes }, trace.setSpan(ROOT_CONTEXT, parent));
}

/** The traceparent that makes `span` the parent of what receives it; tracestate as the span carries it. */
export function outboundTrace(span: Span, incoming: TraceHeaders | undefined): TraceHeaders {
  const c = span.spanContext();
  const state = c.traceState?.serialize();
  return { traceparent: formatTraceparent(c.traceId, c.spanId, c.traceFlags), tracestate: state !== undefined && state !== '' ? state : incoming?.tracestate };
}

/** Ends an HTTP span with its status (5xx, or none at all, marks an error). */
export function endHttpSpan(span: Span, status: number | undefined, errorType?: string): void {
  if (status !== undefined && status > 0) span.setAttribute('http.response.status_code', status);
  if (status === undefined || status === 0 || status >= 500 || errorType !== undefined) {
    span.setStatus({ code: otel().SpanStatusCode.ERROR });
    span.setAttribute('error.type', errorType ?? (status !== undefined && status > 0 ? String(status) : '_OTHER'));
  }
  span.end();
}
