import { createServer as createHttpsServer } from 'node:https';
import { createServer, STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { Server as NetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Duplex, Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { Span } from '@opentelemetry/api';
import type { ActiveToken } from '../cache/entry.js';
import type { Clock } from '../cache/memory.js';
import { LISTEN_DEFAULTS, upstreamPath, type GatewayConfig } from '../config/schema.js';
import { checkCredentials, PREFLIGHT } from '../core/credentials.js';
import { errorBody, GatewayError, TOKEN_MALFORMED, TOKEN_MISSING, refusal } from '../core/errors.js';
import type { Requester, Seen, Verdict } from '../core/exchange.js';
import { createGuards, REFUSED, type Guard, type Guards } from '../core/guards.js';
import { renderRefusal } from '../core/render.js';
import type { Logger } from '../observability/logger.js';
import { requestId } from '../observability/request-id.js';
import { traceHeaders, type TraceHeaders } from '../observability/trace-context.js';
import { endHttpSpan, outboundTrace, startClientSpan, startServerSpan, tracing, watchTracing } from '../observability/tracing.js';
import { WarnChannel } from '../observability/warn-limiter.js';
import { answerJwks, JWKS_PATH } from '../minting/publish.js';
import { BODY_ABORTED, framingRefusal, MeteredBody, readBody, type BodyRead, type BufferedBody, type StreamLimits } from './body.js';
import { responseHeaders, scanRequestHeaders, type RequestHeaderScan } from './headers.js';
import { listen } from '../net/listen.js';
import { TrustedProxies, unmapped } from '../net/addresses.js';
import { settlesWithin } from '../net/wait.js';
import { TrackedConnector } from '../net/sockets.js';
import { listenerTlsOptions, upstreamTlsOptions, type UpstreamTls } from '../net/tls.js';
import { certThumbprint, clientCertFromHeader } from '../net/client-cert.js';
import type { Presentation } from '../core/sender.js';
import type { TLSSocket } from 'node:tls';
import { isUndiciTimeout } from '../net/timeouts.js';
import { checkTarget, isValidHost, requestUrl } from '../routing/request-target.js';
import { rewritePath } from '../routing/router.js';
import { PROXY } from '../observability/doors.js';
import type { GatewayMetrics, RouteMetrics } from '../observability/metrics.js';

export interface GatewayDeps {
  logger: Logger;
  /** Clock for cache lifetimes (tests move it). */
  now?: Clock;
  /**
   * The engine to use, shared with other front doors (the forward-auth
   * listener); its owner closes it. Without it the gateway builds its own
   * from `config` and closes it on `close()`.
   */
  guards?: Guards;
  /** Prometheus metrics, when `guards` is not given (else the guards' are used); undefined: off. */
  metrics?: GatewayMetrics | undefined;
  /**
   * A reload: the gateway whose listening server this one takes over (same
   * socket, same connections). Nothing changes until `activate()`, which
   * moves the server's handlers to this gateway in one step; requests under
   * way finish on the old one (see `retire()`).
   */
  adopt?: Gateway;
}

interface CompiledRoute {
  /** Position in `config.routes` (metrics). */
  readonly index: number;
  readonly prefix: string;
  /** Path of the upstream URL that replaces the prefix, or '' to keep the path. */
  readonly base: string;
  readonly pool: Pool;
  readonly guard: Guard | undefined;
  /** Pass the client's Authorization to the upstream: an open route with `forward_authorization: true` only. */
  readonly keepAuthorization: boolean;
  /** Read request bodies completely before dispatch (else stream them). */
  readonly buffering: boolean;
  readonly body: StreamLimits;
  /** The upstream's origin (access log, spans, warnings). */
  readonly origin: string;
  /** Rate-limited warnings about this route's upstream. */
  readonly upstreamWarn: WarnChannel;
}

/** What the access log and the request's span say about one request, however far it got. */
interface RequestFacts {
  readonly req: IncomingMessage;
  /** Sent upstream and back to the client as `X-Request-Id`. */
  readonly requestId: string;
  /** `hit`, `miss`, or `-` (no token was looked up). */
  readonly cache: string;
  readonly route: CompiledRoute | undefined;
  /** How long this request waited for its token's introspection (ms); -1 on a hit or without one. */
  readonly introspectionMs: number;
  /** The accepted token, once the request passed the token check. */
  readonly token: ActiveToken | undefined;
  /** X-Forwarded-For from a trusted peer. */
  readonly xff: string | undefined;
  /** The request's server span, when spans are recorded. */
  readonly span: Span | undefined;
}

const BAD_TARGET = refusal('ERR_BAD_REQUEST_TARGET');
const DUPLICATE_HEADER = refusal('ERR_DUPLICATE_HEADER');
const BAD_HOST = refusal('ERR_BAD_HOST');
const TOO_MANY_HEADERS = refusal('ERR_TOO_MANY_HEADERS');
const NO_ROUTE = refusal('ERR_NO_ROUTE');
const HEADERS_TOO_LARGE = refusal('ERR_HEADERS_TOO_LARGE');
const MALFORMED_REQUEST = refusal('ERR_MALFORMED_REQUEST');
const REQUEST_TIMEOUT = refusal('ERR_REQUEST_TIMEOUT');
const INTERNAL = refusal('ERR_INTERNAL');
const UPSTREAM_UNREACHABLE = refusal('ERR_UPSTREAM_UNREACHABLE');
const UPSTREAM_TIMEOUT = refusal('ERR_UPSTREAM_TIMEOUT');
const METHOD_NOT_ALLOWED = refusal('ERR_METHOD_NOT_ALLOWED');
const HOST_MISSING = refusal('ERR_HOST_MISSING');
const EXPECTATION_FAILED = refusal('ERR_EXPECTATION_FAILED');
const netServerClose = NetServer.prototype.close;
const CLIENT_GONE = new Error('client closed the connection');
const QUEUE_TIMEOUT = new Error('no upstream connection became free within response_timeout_ms');
const DEADLINE = new Error('no upstream response headers within response_timeout_ms');

/**
 * The reverse-proxy adapter: a `node:http` server that runs each request
 * through request hygiene, routing and the token exchange, then streams it to
 * the upstream over a keep-alive undici pool with `Authorization: Bearer <jwt>`.
 */
export class Gateway {
  readonly server: Server;
  readonly config: GatewayConfig;
  readonly logger: Logger;
  readonly guards: Guards;
  /** The guards' metrics; undefined when off (one field check per request). */
  readonly metrics: GatewayMetrics | undefined;
  /** This configuration's per-route series (see `Guards.routeMetrics`). */
  readonly routeMetrics: RouteMetrics | undefined;
  /** Built here, so closed here. */
  readonly #ownsGuards: boolean;
  /** By route index (`GuardedRoute.index`). */
  readonly #routes: readonly CompiledRoute[];
  readonly #pools: Pool[] = [];
  /** Every socket to an upstream, so that the end of a stop can cut connects still pending. */
  readonly #upstreamSockets: TrackedConnector;
  readonly #trusted: TrustedProxies | undefined;
  readonly #maxRawHeaders: number;
  readonly #accessLog: boolean;
  /** `log.access_log_sub`: the token's sub in the access log. */
  readonly #accessSub: boolean;
  /** Stops refreshing `tracing.on` (see tracing.ts) once the gateway is closed. */
  readonly #stopTracing: () => void;
  /** Some route mints: `GET /.well-known/jwks.json` is answered with the keys, before routing. */
  readonly #publishesJwks: boolean;
  /** Connections told `Connection: close`: nothing more is answered on them (shared across reloads: they are the server's). */
  readonly #closing: WeakSet<Duplex>;
  /** Requests with a body, by response: a parse error in a body is answered by its request (shared across reloads). */
  readonly #withBody: WeakMap<ServerResponse, ProxyRequest>;
  /** The server's handlers, as attached (so that a reload can detach exactly these). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly #handlers: Array<[string, (...args: any[]) => void]>;
  /** Until `activate()`: the gateway whose server this one takes over. */
  #adopted: Gateway | undefined;
  /** Requests that use (or will use) this gateway's pools: forwarded, or waiting on an introspection. */
  #inflight = 0;
  #onIdle: (() => void) | undefined;
  #draining = false;
  /** `X-Forwarded-Proto` when no trusted proxy said otherwise: how clients reach this listener. */
  readonly proto: 'http' | 'https';

  constructor(config: GatewayConfig, deps: GatewayDeps) {
    this.config = config;
    this.logger = deps.logger;
    this.proto = config.listen?.tls !== undefined ? 'https' : 'http';
    this.#accessLog = config.log.access_log && this.logger.isLevelEnabled('info');
    this.#accessSub = config.log.access_log_sub === true;
    this.#maxRawHeaders = config.server.max_headers * 2;

    // The loader refuses this whenever `listen` is set; a configuration built by hand might not.
    const bare = config.routes.findIndex((r) => r.upstream === undefined);
    if (bare !== -1) throw new TypeError(`routes[${bare}] ("${config.routes[bare]!.path}") has no upstream: the proxy needs one for every route`);
    this.#ownsGuards = deps.guards === undefined;
    this.guards = deps.guards ?? createGuards(config, deps);
    this.metrics = this.guards.metrics;
    this.routeMetrics = this.guards.routeMetrics;
    const pools = new Map<string, Pool>();
    const u = config.upstream;
    const b = config.server;
    const tempDir = b.body_temp_dir ?? tmpdir();
    this.#upstreamSockets = new TrackedConnector({ timeout: u.connect_timeout_ms });
    // Routes with their own upstream TLS options get a connector of their own (same tracking).
    const connectors = new Map<string, TrackedConnector>();
    const connectorFor = (tls: UpstreamTls | undefined): TrackedConnector => {
      if (tls === undefined) return this.#upstreamSockets;
      const key = JSON.stringify(tls);
      let c = connectors.get(key);
      if (c === undefined) {
        if (!tls.verify_ssl) {
          const origins = [...new Set(config.routes.filter((r) => r.upstream_tls !== undefined && JSON.stringify(r.upstream_tls) === key).map((r) => new URL(r.upstream!).origin))];
          this.logger.warn({ upstreams: origins }, "upstream verify_ssl is false: the upstream's TLS certificate is NOT verified; never do this in production");
        }
        c = this.#upstreamSockets.sibling(upstreamTlsOptions(tls));
        connectors.set(key, c);
      }
      return c;
    };

    this.#routes = this.guards.routes.map(({ index, config: r, guard }): CompiledRoute => {
      const url = new URL(r.upstream!);
      // Only https upstreams use TLS options; one origin with two sets of them is two pools.
      const tls = url.protocol === 'https:' ? r.upstream_tls : undefined;
      const poolKey = tls === undefined ? url.origin : `${url.origin} ${JSON.stringify(tls)}`;
      let pool = pools.get(poolKey);
      if (pool === undefined) {
        pool = new Pool(url.origin, {
          connections: u.connections,
          pipelining: 1,
          connect: connectorFor(tls).connect,
          headersTimeout: u.response_timeout_ms,
          bodyTimeout: u.idle_timeout_ms,
          keepAliveTimeout: 4000,
        });
        pools.set(poolKey, pool);
        this.#pools.push(pool);
      }
      const body: StreamLimits = {
        maxBytes: r.max_body_bytes ?? b.max_body_bytes,
        memoryBytes: b.body_buffer_bytes,
        tempDir,
        minRate: b.min_body_rate_bytes,
        windowMs: b.min_body_rate_window_ms,
        idleMs: r.body_idle_timeout_ms,
      };
      const upstreamWarn = new WarnChannel(this.logger, { upstream: url.origin, route: r.path }, 'upstream');
      return {
        index,
        prefix: r.path,
        base: upstreamPath(r.upstream!),
        pool,
        guard,
        keepAuthorization: guard === undefined && r.forward_authorization,
        buffering: r.request_buffering,
        body,
        origin: url.origin,
        upstreamWarn,
      };
    });

    this.#trusted = TrustedProxies.from(config.trusted_proxies);
    this.#publishesJwks = this.guards.jwks() !== undefined;
    if (this.#publishesJwks) {
      const shadowed = this.guards.forRoute(JWKS_PATH);
      if (shadowed !== undefined && shadowed !== REFUSED) {
        this.logger.warn(
          { path: JWKS_PATH, route: shadowed.config.path },
          `${JWKS_PATH} is answered by the gateway itself (the keys its minted tokens verify with): route "${shadowed.config.path}" never receives it`,
        );
      }
    }

    const s = config.server;
    this.#stopTracing = watchTracing();
    this.#handlers = [
      ['request', (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res, false)],
      ['checkContinue', (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res, true)],
      ['clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#clientError(err, socket)],
      // Any Expect other than 100-continue (Node would answer a bare 417).
      [
        'checkExpectation',
        (req: IncomingMessage, res: ServerResponse) =>
          this.#closing.has(req.socket) ? this.drop(req, res) : this.refuse(req, res, EXPECTATION_FAILED, performance.now(), '-', true),
      ],
      // CONNECT would open a tunnel past every check: refused, in the same JSON shape.
      ['connect', (_req: IncomingMessage, socket: Duplex) => this.#rawRefusal(socket, METHOD_NOT_ALLOWED, 'CONNECT')],
    ];
    const adopt = deps.adopt;
    if (adopt !== undefined) {
      // A reload: the socket and its connections stay; their per-connection state with them.
      this.server = adopt.server;
      this.#closing = adopt.#closing;
      this.#withBody = adopt.#withBody;
      this.#adopted = adopt;
      return;
    }
    this.#closing = new WeakSet<Duplex>();
    this.#withBody = new WeakMap<ServerResponse, ProxyRequest>();
    const serverOptions = {
      maxHeaderSize: s.max_header_bytes,
      headersTimeout: s.headers_timeout_ms,
      requestTimeout: s.request_timeout_ms,
      keepAliveTimeout: s.keep_alive_timeout_ms,
      // headersTimeout and requestTimeout are only enforced when this check runs.
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(s.headers_timeout_ms / 4))),
      // Checked in #handle, so that the refusal is JSON like the others.
      requireHostHeader: false,
      noDelay: true,
    };
    const tls = config.listen?.tls;
    // https.Server has every http.Server member the gateway uses. A TLS
    // handshake is bounded like the request head it comes before.
    this.server = tls === undefined ? createServer(serverOptions) : (createHttpsServer({
            ...serverOptions,
            ...listenerTlsOptions(tls),
            handshakeTimeout: s.headers_timeout_ms,
            // A certificate-bound token names its certificate by thumbprint (RFC 8705 §3): asked for, never checked against a CA here.
            ...(tls.request_client_certificates === true ? { requestCert: true, rejectUnauthorized: false } : {}),
          }) as unknown as Server);
    // One more than the bound, so that reaching it is visible instead of Node
    // silently dropping the rest.
    this.server.maxHeadersCount = s.max_headers + 1;
    for (const [event, handler] of this.#handlers) this.server.on(event, handler);
  }

  /**
   * A reload's switch: the adopted gateway's handlers leave the server and
   * this one's take their place, in one step (no request can fall between).
   * Options a live server can take are applied; a new certificate too (a bad
   * one is logged and the old one kept).
   */
  activate(): void {
    const old = this.#adopted;
    if (old === undefined) return;
    this.#adopted = undefined;
    const s = this.config.server;
    this.server.maxHeadersCount = s.max_headers + 1;
    this.server.keepAliveTimeout = s.keep_alive_timeout_ms;
    const tls = this.config.listen?.tls;
    if (tls !== undefined && 'setSecureContext' in this.server) {
      try {
        (this.server as unknown as { setSecureContext(o: object): void }).setSecureContext(listenerTlsOptions(tls));
      } catch (err) {
        this.logger.error({ err: { message: (err as Error).message }, cert_file: tls.cert_file }, 'listen.tls: the new certificate or key cannot be used: the old one is kept');
      }
    }
    for (const [event, handler] of old.#handlers) this.server.off(event, handler);
    for (const [event, handler] of this.#handlers) this.server.on(event, handler);
  }

  /**
   * After a reload took the server over: waits for the requests this gateway
   * still serves (bounded by `deadline`, a `performance.now()` time), then
   * closes its upstream pools (cut at the deadline). The server and the
   * guards are not this gateway's to close any more.
   */
  async retire(deadline: number): Promise<void> {
    this.#stopTracing();
    if (this.#inflight > 0) {
      const idle = new Promise<void>((resolve) => {
        this.#onIdle = resolve;
      });
      await settlesWithin(idle, deadline - performance.now());
    }
    const outbound = Promise.all(this.#pools.map((p) => p.close()));
    if (!(await settlesWithin(outbound, deadline - performance.now()))) {
      this.logger.warn('reload: requests of the previous configuration still running after shutdown_timeout_ms: cut');
      const destroyed = Promise.all(this.#pools.map((p) => p.destroy()));
      this.#upstreamSockets.destroyAll();
      await destroyed;
    }
  }

  /** A request counted in `#inflight` is over. */
  settled(): void {
    if (--this.#inflight === 0 && this.#onIdle !== undefined) this.#onIdle();
  }

  /** A request that will use the pools starts (see `retire`). */
  using(): void {
    this.#inflight++;
  }

  #handle(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    // A request pipelined behind one still being answered waits for its
    // turn (Node hands its response the connection once the earlier one is
    // finished), so that an earlier answer that closes the connection stops
    // it before it runs upstream. Node never hands it over after such an
    // answer: the request is then dropped without a word.
    if (res.socket === null) {
      res.once('socket', () => this.#handle(req, res, expectContinue));
      return;
    }
    // RFC 9112 §9.6: after an answer that said `Connection: close`, nothing
    // more received on the connection is processed (a pipelined POST would
    // run upstream with its answer thrown away). One WeakSet lookup (~4 ns).
    if (this.#closing.has(req.socket)) return this.drop(req, res);
    if (this.metrics !== undefined) this.metrics.started(PROXY, res);
    const start = this.#accessLog ? performance.now() : 0;
    try {
      const raw = req.rawHeaders;
      if (raw.length > this.#maxRawHeaders) return this.refuse(req, res, TOO_MANY_HEADERS, start, '-', true);
      // An upstream that answers TRACE echoes the request back, with the JWT
      // the gateway put in it (RFC 9110 §9.3.8); NGINX refuses it too. (IIS's
      // TRACK never gets here: Node's parser refuses unknown methods.)
      if (req.method === 'TRACE') return this.refuse(req, res, METHOD_NOT_ALLOWED, start, '-', true);
      const target = checkTarget(req.url);
      if (target === undefined) return this.refuse(req, res, BAD_TARGET, start, '-', true);
      // Only when some route mints: one comparison, before routing (it shadows a route of the same path).
      if (this.#publishesJwks && target.path === JWKS_PATH) return this.#jwks(req, res, start);
      const match = this.guards.forRoute(target.path);
      if (match === REFUSED) return this.refuse(req, res, BAD_TARGET, start, '-', true);
      if (match === undefined) {
        // Not the hot path: req.headers may be built here.
        if (req.httpVersionMinor === 1 && req.headers.host === undefined) return this.refuse(req, res, HOST_MISSING, start, target.path, true);
        return this.refuse(req, res, NO_ROUTE, start, target.path, false);
      }
      const route = this.#routes[match.index]!;
      const trusted = this.#trusted !== undefined && this.#trusted.has(req.socket.remoteAddress);
      const scan = scanRequestHeaders(raw, trusted, route.keepAuthorization, this.config.server.underscores_in_headers);
      // A trusted proxy's well-formed X-Request-Id, else a new one; the trace context when valid.
      const trace = scan.traceparent === undefined ? undefined : traceHeaders(scan.traceparent, scan.tracestate);
      const span = tracing.on ? startServerSpan(req.method!, route.prefix, target.path, scan.xfProto ?? 'http', trace) : undefined;
      const upstreamPath = rewritePath(target.path, route.prefix, route.base) + target.query;
      const pr = new ProxyRequest(this, req, res, route, scan, upstreamPath, target.path, start, expectContinue, requestId(scan.requestId), trace, span);
      if (scan.duplicateHost) return this.refuse(req, res, DUPLICATE_HEADER, start, target.path, true, pr);
      // RFC 9112 §3.2 (HTTP/1.0 may omit it).
      if (scan.host === undefined && req.httpVersionMinor === 1) return this.refuse(req, res, HOST_MISSING, start, target.path, true, pr);
      // RFC 9112 §3.2: an invalid Host is a 400; a trusted proxy's X-Forwarded-Host replaces it, so it is held to the same rule.
      if ((scan.host !== undefined && !isValidHost(scan.host)) || (scan.xfHost !== undefined && !isValidHost(scan.xfHost))) {
        return this.refuse(req, res, BAD_HOST, start, target.path, true, pr);
      }
      if (scan.methodOverride) return this.refuse(req, res, METHOD_NOT_ALLOWED, start, target.path, true, pr);
      const guard = route.guard;
      let credentials: GatewayError | typeof PREFLIGHT | undefined;
      if (guard !== undefined) {
        credentials = checkCredentials(req.method!, target.query, scan.duplicateAuthorization ? 2 : 1, scan.preflight, scan.hasBody);
        if (credentials instanceof GatewayError) return this.refuse(req, res, credentials, start, target.path, true, pr);
      } else if (scan.duplicateAuthorization) {
        // An open route would forward both credentials: a bad request.
        return this.refuse(req, res, DUPLICATE_HEADER, start, target.path, true, pr);
      }

      if (scan.hasBody) {
        const refusal = framingRefusal(req, route.body.maxBytes);
        if (refusal !== undefined) return this.refuse(req, res, refusal, start, target.path, true, pr);
      }

      if (scan.hasBody) this.#withBody.set(res, pr);
      if (guard === undefined || credentials === PREFLIGHT) {
        pr.forward(undefined);
        return;
      }
      const verdict = guard.authorize(scan.authorization, pr, pr, pr);
      if (verdict instanceof Promise) {
        pr.cache = 'miss';
        // Counted while it waits: a reload must not close the pools it will be forwarded over.
        this.#inflight++;
        const asked = this.#accessLog ? performance.now() : 0;
        // A client that leaves while its token waits withdraws it: an
        // introspection nobody waits for any more is never sent.
        const gone = () => {
          guard.withdraw(verdict);
          this.access(req.method, target.path, 499, start, 'miss', 'client_closed', pr);
        };
        res.once('close', gone);
        verdict.then(
          (v) => {
            try {
              res.off('close', gone);
              if (this.#accessLog) pr.introspectionMs = Math.round((performance.now() - asked) * 100) / 100;
              // An earlier request's answer closed the connection meanwhile.
              if (this.#closing.has(req.socket)) return this.drop(req, res);
              if (pr.hit === true) pr.cache = 'hit';
              pr.decide(v);
            } finally {
              this.settled();
            }
          },
          (err: unknown) => {
            try {
              res.off('close', gone);
              this.logger.error({ err }, 'internal error');
              pr.decide(INTERNAL);
            } finally {
              this.settled();
            }
          },
        ).catch((err: unknown) => {
          // A bug on the asynchronous path must not become an unhandled rejection that ends the process.
          this.logger.error({ err }, 'internal error');
          if (!res.headersSent) this.refuse(req, res, INTERNAL, start, '-', true, pr);
          else res.destroy();
        });
      } else {
        // Decided from the cache (allowed, 403, or remembered inactive) unless
        // the header never got as far as a token.
        pr.cache = verdict === TOKEN_MISSING || verdict === TOKEN_MALFORMED ? '-' : 'hit';
        pr.decide(verdict);
      }
    } catch (err) {
      this.logger.error({ err }, 'internal error');
      if (!res.headersSent) this.refuse(req, res, INTERNAL, start, '-', true);
      else res.destroy();
    }
  }

  /**
   * Requests Node's parser refused before the gateway saw them (smuggling
   * shapes, oversized heads, slow clients) get the same JSON refusals as the
   * rest, instead of Node's bare default answer.
   */
  #clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    // One request, one response: on a connection already told it closes,
    // whatever the parser finds later is not answered.
    if (err.code === 'ECONNRESET' || !socket.writable || this.#closing.has(socket)) {
      socket.destroy();
      return;
    }
    const refusal =
      err.code === 'HPE_HEADER_OVERFLOW' ? HEADERS_TOO_LARGE : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? REQUEST_TIMEOUT : MALFORMED_REQUEST;
    const inFlight = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (inFlight != null) {
      // The fault is in the body of the request being answered: that
      // request answers it once if it has sent nothing yet.
      const pr = inFlight.req.complete ? undefined : this.#withBody.get(inFlight);
      if (pr !== undefined && !inFlight.headersSent) {
        pr.bodyFailed(refusal);
        return;
      }
      // Otherwise a response is still owed or under way on this connection
      // (an earlier pipelined request being served, or this one's): a
      // refusal written now would be read as that answer, so the connection
      // is cut instead.
      if (!inFlight.writableEnded || !inFlight.req.complete) {
        socket.destroy();
        return;
      }
    }
    this.#rawRefusal(socket, refusal, err.code);
  }

  /**
   * The public keys minted tokens verify with: no token needed, GET and HEAD
   * only (405 with `Allow` otherwise). A request with a body is answered at
   * once and its connection closed, as any refusal's.
   */
  #jwks(req: IncomingMessage, res: ServerResponse, start: number): void {
    const a = answerJwks(req.method, this.guards.jwks()!);
    const f = this.#facts(req);
    const headers: OutgoingHttpHeaders = { ...a.headers, 'x-request-id': f.requestId };
    if (this.#draining || (req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding'] !== undefined) {
      headers.connection = 'close';
      this.#closing.add(req.socket);
    }
    res.writeHead(a.status, headers);
    res.end(a.body);
    this.access(req.method, JWKS_PATH, a.status, start, '-', a.code, f);
  }

  /** After this, nothing more is processed or answered on the connection (see #handle, #clientError). */
  closing(socket: Duplex): void {
    this.#closing.add(socket);
  }

  /**
   * A request received after an answer that closes its connection: neither
   * forwarded nor answered. The connection ends once what is owed on it is
   * written (Node itself ends it after that answer; this covers the case
   * where nothing is owed any more).
   */
  drop(req: IncomingMessage, res: ServerResponse): void {
    if (res.headersSent) return; // this request's own answer is the closing one
    const socket = req.socket;
    const owed = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (owed == null || owed === res) socket.end(() => socket.destroy());
  }

  /** A refusal written straight to the socket, which is then closed (requests Node's server does not hand over). */
  #rawRefusal(socket: Duplex, refusal: GatewayError, cause: string | undefined): void {
    const body = errorBody(refusal);
    const id = requestId(undefined);
    socket.end(
      `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `cache-control: no-store\r\nx-request-id: ${id}\r\nconnection: close\r\n\r\n${body}`,
    );
    this.logger.info({ status: refusal.status, code: refusal.code, parser: cause, request_id: id }, 'request refused before routing');
    if (this.routeMetrics !== undefined) this.routeMetrics.request(PROXY, -1, refusal.status, refusal.code);
  }

  /** The address a request's introspections are queued under (see `TrustedProxies.clientAddress`). */
  clientAddress(peer: string | undefined, xff: string | undefined): string {
    return this.#trusted === undefined ? unmapped(peer ?? '') : this.#trusted.clientAddress(peer, xff);
  }

  /**
   * What is known of a request refused before its headers were scanned: its
   * ID (a trusted peer's, or a new one) and its client's address.
   */
  #facts(req: IncomingMessage): RequestFacts {
    const trusted = this.#trusted !== undefined && this.#trusted.has(req.socket.remoteAddress);
    const offered = trusted ? req.headers['x-request-id'] : undefined;
    const xff = trusted ? req.headers['x-forwarded-for'] : undefined;
    return {
      req,
      requestId: requestId(typeof offered === 'string' ? offered : undefined),
      cache: '-',
      route: undefined,
      introspectionMs: -1,
      token: undefined,
      xff: typeof xff === 'string' ? xff : undefined,
      span: undefined,
    };
  }

  /** Sends a refusal in the JSON shape of Curity's plugin; `f`: what is known of the request (its ID, cache outcome, span). */
  refuse(req: IncomingMessage, res: ServerResponse, err: GatewayError, start: number, path: string, close: boolean, f: RequestFacts = this.#facts(req)): void {
    if (res.headersSent || res.destroyed) return;
    const r = renderRefusal(err);
    const headers: OutgoingHttpHeaders = { ...r.headers, 'x-request-id': f.requestId };
    // A refused request's body is never read: closing is cheaper than draining it.
    if (close || this.#draining || (req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding'] !== undefined) {
      headers.connection = 'close';
      this.#closing.add(req.socket);
    }
    res.writeHead(r.status, headers);
    res.end(req.method === 'HEAD' ? undefined : r.body);
    this.access(req.method, path, err.status, start, f.cache, err.code, f);
  }

  /**
   * The end of a request: its span ends, and its access-log line is
   * written (one object; nothing at all when the access log is off).
   * Fields left undefined are not written.
   */
  access(method: string | undefined, path: string, status: number, start: number, cache: string, code?: string, f?: RequestFacts): void {
    if (f?.span !== undefined) endHttpSpan(f.span, status, status >= 500 ? code : undefined);
    // The route when the request got as far (no second lookup); a refusal before routing looks it up.
    if (this.routeMetrics !== undefined) this.routeMetrics.request(PROXY, f?.route !== undefined ? f.route.index : this.guards.routeIndex(path), status, code);
    if (!this.#accessLog) return;
    const ms = Math.round((performance.now() - start) * 100) / 100;
    const token = f?.token;
    this.logger.info(
      {
        method,
        path,
        status,
        ms,
        cache,
        code,
        request_id: f?.requestId,
        client_address: f === undefined ? undefined : this.clientAddress(f.req.socket.remoteAddress, f.xff),
        route: f?.route?.prefix,
        upstream: f?.route?.origin,
        introspection_ms: f === undefined || f.introspectionMs < 0 ? undefined : f.introspectionMs,
        client_id: token?.clientId?.slice(0, 256),
        sub: this.#accessSub ? token?.sub?.slice(0, 256) : undefined,
      },
      'request',
    );
  }

  /**
   * A worker replaced by a reload: stops accepting, but closes no idle
   * keep-alive connection itself (a client may be sending on it at that very
   * moment, and would see a reset). Each connection ends after its next
   * answer (sent with `Connection: close`) or when its keep-alive timeout
   * passes: undici and browsers close an idle connection before the timeout
   * the server announces, so nothing is cut while in use. Bounded by
   * `deadline`; `close()` then does the rest as usual.
   */
  async #gentleDrain(deadline: number): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      // net.Server's close: stop listening only (http.Server's also closes idle connections).
      netServerClose.call(this.server, () => resolve());
    });
    await settlesWithin(closed, deadline - performance.now());
  }

  /** Introspections running and waiting for a connection, over every introspection client (tests, metrics). */
  introspectionLoad(): { running: number; queued: number } {
    return this.guards.introspectionLoad();
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Starts listening; resolves with the bound address. */
  listen(port = (this.config.listen ?? LISTEN_DEFAULTS).port, host = (this.config.listen ?? LISTEN_DEFAULTS).host): Promise<AddressInfo> {
    return listen(this.server, port, host);
  }

  /**
   * Graceful stop: no new connections, idle keep-alive connections closed,
   * in-flight requests finished and answered with `Connection: close`; after
   * `shutdown_timeout_ms` whatever is left is cut.
   */
  async close(opts: { gentle?: boolean } = {}): Promise<void> {
    const began = performance.now();
    this.#draining = true;
    if (opts.gentle === true) await this.#gentleDrain(began + this.config.server.shutdown_timeout_ms);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // A response that started before close() was sent with keep-alive; its
    // connection turns idle only once that response ends. Sweep until done,
    // so no client can slip another request in during the drain.
    const sweep = setInterval(() => this.server.closeIdleConnections(), 100);
    sweep.unref();
    const deadline = began + this.config.server.shutdown_timeout_ms;
    if (!(await settlesWithin(closed, deadline - performance.now()))) {
      this.logger.warn('shutdown timeout reached: closing remaining connections');
      this.server.closeAllConnections();
    }
    clearInterval(sweep);
    this.#stopTracing();
    // Outbound calls still running (an introspection waiting on a slow
    // authorization server) get what is left of shutdown_timeout_ms, then are cut.
    const guards = this.#ownsGuards ? [this.guards] : [];
    const outbound = Promise.all([...this.#pools.map((p) => p.close()), ...guards.map((g) => g.close())]);
    if (!(await settlesWithin(outbound, deadline - performance.now()))) {
      this.logger.warn('shutdown timeout reached: cutting calls to the authorization server and upstreams');
      const destroyed = Promise.all([...this.#pools.map((p) => p.destroy()), ...guards.map((g) => g.destroy())]);
      // undici's destroy() does not reach a connect still pending (a host
      // that drops packets): cut, or it would keep the process alive until
      // its connect timeout.
      this.#upstreamSockets.destroyAll();
      await destroyed;
    }
  }
}

/**
 * One proxied request: the per-request context and the undici dispatch
 * handler in a single object, so forwarding allocates little.
 */
class ProxyRequest implements Dispatcher.DispatchHandler, Requester, RequestFacts, Presentation, Seen {
  cache = '-';
  /** Seen: filled in by the exchange (a DPoP request found in the cache is a hit, though its verdict waits for the proof). */
  expiresAt = 0;
  hit: boolean | undefined;
  introspectionMs = -1;
  token: ActiveToken | undefined;
  /** The upstream call's span, while it runs (spans recorded only). */
  #upstreamSpan: Span | undefined;
  #controller: Dispatcher.DispatchController | undefined;
  /** The buffered body being read, until it is complete or failed. */
  #read: BodyRead | undefined;
  /** The client's response is settled: ended, refused, or given up. */
  #done = false;
  /** Why the upstream request must be aborted once undici starts it. */
  #abortWith: Error | undefined;
  /** response_timeout_ms from dispatch to response headers, while queued for a connection and after (see #dispatch). */
  #deadline: NodeJS.Timeout | undefined;
  /** When the deadline was armed (performance.now()), for a streamed body only. */
  #armedAt = 0;
  /** A body undici reads as a stream: the deadline stops while it is being sent. */
  #streamed: Readable | undefined;
  #sendTimer: NodeJS.Timeout | undefined;
  #sendTimedOut = false;
  /** When the request was dispatched upstream (performance.now()); 0 when metrics are off. */
  #sentAt = 0;

  constructor(
    readonly gw: Gateway,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly route: CompiledRoute,
    readonly scan: RequestHeaderScan,
    readonly upstreamPath: string,
    readonly logPath: string,
    readonly start: number,
    readonly expectContinue: boolean,
    readonly requestId: string,
    /** The request's checked trace context. */
    readonly trace: TraceHeaders | undefined,
    /** Requester and RequestFacts: the server span, when spans are recorded. */
    readonly span: Span | undefined,
  ) {}

  /** Requester: read by the exchange on a miss only. */
  get clientAddress(): string {
    return this.gw.clientAddress(this.req.socket.remoteAddress, this.scan.xff);
  }

  /** Requester: the trace context the introspection carries (on a miss only). */
  get traceHeaders(): TraceHeaders | undefined {
    return this.trace;
  }

  get xff(): string | undefined {
    return this.scan.xff;
  }

  /** Presentation: the method a DPoP proof's htm must name. */
  get method(): string {
    return this.req.method!;
  }

  /** Presentation: the request's DPoP proof(s). */
  get dpop(): string | string[] | undefined {
    return this.scan.dpop;
  }

  /** Presentation: the path the client sent. */
  get path(): string {
    return this.logPath;
  }

  /** Presentation: the URL the client addressed (a trusted proxy's scheme and host when it sent them): a DPoP proof's htu. */
  get url(): string | undefined {
    return requestUrl(this.scan.xfProto ?? this.gw.proto, this.scan.xfHost ?? this.scan.host, this.logPath);
  }

  /** Presentation: the thumbprint of the client's certificate (TLS listener), or of the one a trusted proxy passed on (RFC 9440). */
  get certThumbprint(): string | undefined {
    const der = this.#clientCert();
    return der === undefined ? undefined : certThumbprint(der);
  }

  /**
   * The client's certificate (DER). From a trusted proxy that is known to
   * set Client-Cert itself (`trust_client_cert_header`), that header only:
   * the certificate of its own connection is the proxy's, not the client's.
   * From anyone else, the certificate of this TLS connection.
   */
  #clientCert(): Buffer | undefined {
    if (this.scan.trusted && this.gw.config.trust_client_cert_header) return this.scan.clientCert === undefined ? undefined : clientCertFromHeader(this.scan.clientCert);
    const socket = this.req.socket as TLSSocket;
    // getPeerX509Certificate: a fifth of getPeerCertificate's cost (no object of every field).
    if (typeof socket.getPeerX509Certificate !== 'function') return undefined;
    const raw = socket.getPeerX509Certificate()?.raw;
    return raw !== undefined && raw.length > 0 ? raw : undefined;
  }

  decide(v: Verdict): void {
    if (v instanceof GatewayError) this.gw.refuse(this.req, this.res, v, this.start, this.logPath, false, this);
    else this.forward(v);
  }

  forward(token: ActiveToken | undefined): void {
    const { req, res, scan } = this;
    if (this.#done || res.destroyed) return;
    const headers = scan.headers;
    this.token = token;
    if (token !== undefined) {
      headers.push('authorization', token.authorization);
      // The proof the gateway verified, and who it was verified for (dpop.forward: dpop).
      if (token.dpop !== undefined) headers.push('dpop', token.dpop.proof, 'x-dpop-verified', token.dpop.jkt);
    }
    if (this.route.guard?.options.forward_client_cert === true) {
      const der = this.#clientCert();
      if (der !== undefined) headers.push('client-cert', `:${der.toString('base64')}:`);
    }
    headers.push('x-request-id', this.requestId);
    if (this.span !== undefined) {
      // The upstream's parent is the gateway's span for the call.
      const u = this.#upstreamSpan = startClientSpan(req.method!, this.span, req.method!, `${this.route.origin}${this.upstreamPath}`);
      const t = outboundTrace(u, this.trace);
      headers.push('traceparent', t.traceparent);
      if (t.tracestate !== undefined) headers.push('tracestate', t.tracestate);
    } else if (this.trace !== undefined) {
      headers.push('traceparent', this.trace.traceparent);
      if (this.trace.tracestate !== undefined) headers.push('tracestate', this.trace.tracestate);
    }
    // The scan kept client X-Forwarded-* values only from a trusted peer.
    const peer = req.socket.remoteAddress ?? '';
    headers.push('x-forwarded-for', scan.xff === undefined ? peer : `${scan.xff}, ${peer}`, 'x-forwarded-proto', scan.xfProto ?? this.gw.proto);
    const host = scan.xfHost ?? scan.host;
    if (host !== undefined) headers.push('x-forwarded-host', host);
    if (this.expectContinue) res.writeContinue();
    this.gw.using();
    res.once('close', this.#onClose);
    if (!scan.hasBody) {
      this.#dispatch(null);
      return;
    }
    // The body is read completely before an upstream connection is taken, so
    // a slow client holds only its own buffer; a streaming route passes it
    // through a meter that cuts a client too slow or too large.
    if (!this.route.buffering) {
      this.#dispatch(new MeteredBody(req, this.route.body, this.bodyFailed));
      return;
    }
    this.#read = readBody(req, this.route.body, this.#onBuffered, this.bodyFailed);
  }

  readonly #onBuffered = (body: BufferedBody): void => {
    this.#read = undefined;
    if (!Buffer.isBuffer(body.data)) this.res.once('close', body.dispose);
    if (this.#done || this.res.destroyed) {
      body.dispose();
      return;
    }
    // A chunked body goes on length-framed (as NGINX does); one sent with
    // Content-Length keeps it (the parser checked it matches).
    const headers = this.scan.headers;
    let framed = false;
    for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'content-length') framed = true;
    if (!framed) headers.push('content-length', String(body.length));
    this.#dispatch(body.data);
  };

  /**
   * The client's body failed before its request was answered: too large,
   * too slow, unparsable (from the server's clientError), or the client
   * went away. Answered once if nothing was sent yet; otherwise the
   * connection is closed. The upstream request, if any, is aborted.
   */
  readonly bodyFailed = (err: Error): void => {
    if (this.#done) return;
    this.#done = true;
    // A fault reported by the parser (clientError) ends the request before
    // its body did: the read is stopped here, or its temporary file stays
    // open (Node detaches the request once the refusal is sent, so it never
    // learns the body ended).
    const read = this.#read;
    this.#read = undefined;
    read?.abort(err);
    clearTimeout(this.#deadline);
    clearTimeout(this.#sendTimer);
    if (this.#controller !== undefined) this.#controller.abort(err);
    else this.#abortWith = err;
    const { req, res } = this;
    this.#endUpstream(undefined, 'client_error');
    if (err === BODY_ABORTED || res.destroyed) {
      this.gw.access(req.method, this.logPath, 499, this.start, this.cache, 'client_closed', this);
      return;
    }
    if (!(err instanceof GatewayError)) {
      this.gw.logger.error({ err }, 'could not buffer a request body');
      err = INTERNAL;
    }
    if (res.headersSent) {
      this.gw.access(req.method, this.logPath, res.statusCode, this.start, this.cache, (err as GatewayError).code, this);
      res.destroy();
      return;
    }
    this.gw.refuse(req, res, err as GatewayError, this.start, this.logPath, true, this);
  };

  #dispatch(body: Buffer | Readable | null): void {
    if (this.gw.metrics !== undefined) this.#sentAt = performance.now();
    const free = this.route.pool.dispatch(
      {
        path: this.upstreamPath,
        method: this.req.method as Dispatcher.HttpMethod,
        headers: this.scan.headers,
        body,
      },
      this,
    );
    // undici 7 seldom starts a request within dispatch(), even on a free
    // connection: a reused keep-alive socket is first checked for a close
    // from its peer (setImmediate), a new one must connect (bounded by
    // connect_timeout_ms). dispatch() returns true only when the request
    // went to a connection that was free and another is still free: then
    // nothing queues it, and undici's headersTimeout (response_timeout_ms
    // from the end of the request) is the only deadline, with no timer of
    // ours on the hot path. Otherwise the request may wait in the pool's
    // queue: one deadline covers that wait and the response headers
    // (undici's own timer would start a full period again once the request
    // is written), so clients that stop reading and hold every connection
    // cannot make everyone else wait without bound, nor a queued request
    // wait twice the bound. It stops while a streamed body is being sent
    // (see onRequestStart).
    if (!free && this.#controller === undefined && !this.#done) {
      this.#deadline = setTimeout(this.#onDeadline, this.gw.config.upstream.response_timeout_ms);
      if (body !== null && !Buffer.isBuffer(body)) {
        this.#streamed = body;
        this.#armedAt = performance.now();
      }
    }
  }

  /**
   * The time a streamed body takes to send is not the upstream's delay: it is
   * bounded by the client's rate and idle checks and by undici's write
   * timers. The deadline stops when the request starts and gets what was
   * left of it (not a fresh period) once the body has been read to its end.
   */
  #holdDeadline(body: Readable): void {
    clearTimeout(this.#deadline);
    this.#deadline = undefined;
    const left = Math.max(1, this.gw.config.upstream.response_timeout_ms - (performance.now() - this.#armedAt));
    body.once('end', () => {
      if (this.#done || this.res.headersSent) return;
      this.#deadline = setTimeout(this.#onDeadline, left);
    });
  }

  readonly #onDeadline = (): void => {
    this.#deadline = undefined;
    if (this.#done) return;
    this.#done = true;
    const queued = this.#controller === undefined;
    if (queued) this.#abortWith = QUEUE_TIMEOUT;
    else this.#controller!.abort(DEADLINE);
    this.gw.routeMetrics?.upstreamError(this.route.index, 'timeout');
    this.#endUpstream(undefined, 'timeout');
    this.route.upstreamWarn.fail(queued ? 'queue_timeout' : 'timeout', queued ? 'upstream timed out: no connection to it became free' : 'upstream timed out');
    this.gw.refuse(this.req, this.res, UPSTREAM_TIMEOUT, this.start, this.logPath, this.scan.hasBody, this);
  };

  readonly #onClose = (): void => {
    this.gw.settled();
    // The response is over while the body is still being read (the
    // connection was cut, or a refusal was sent): the read stops with it.
    this.#read?.abort(BODY_ABORTED);
    if (this.#done) return;
    if (this.#controller !== undefined) {
      this.#controller.abort(CLIENT_GONE);
      return;
    }
    // Still queued: nobody is waiting for a 504 any more; the request is
    // dropped (and logged as 499) as soon as undici starts it.
    clearTimeout(this.#deadline);
    this.#deadline = undefined;
    this.#abortWith ??= CLIENT_GONE;
  };

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#abortWith !== undefined) controller.abort(this.#abortWith);
    else if (this.res.destroyed) controller.abort(CLIENT_GONE);
    else if (this.#streamed !== undefined && this.#deadline !== undefined) this.#holdDeadline(this.#streamed);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200 || this.#done) return; // 1xx from the upstream are not relayed
    if (this.#sentAt !== 0) this.gw.routeMetrics!.upstream(this.route.index, (performance.now() - this.#sentAt) / 1000);
    if (this.#deadline !== undefined) {
      clearTimeout(this.#deadline);
      this.#deadline = undefined;
    }
    // An upstream that was failing answers again: one line says so.
    if (this.route.upstreamWarn.failing) this.route.upstreamWarn.ok();
    const out = responseHeaders(headers);
    out['x-request-id'] = this.requestId;
    if (this.gw.draining) {
      out.connection = 'close';
      this.gw.closing(this.req.socket);
    }
    // An answer before the client's (streamed) body ended: the rest of it is
    // not read as a next request, and a fault in it is not answered again.
    if (this.scan.hasBody && !this.req.complete) {
      out.connection = 'close';
      this.gw.closing(this.req.socket);
    }
    this.res.writeHead(statusCode, out);
    // These never have a body, whatever their Content-Length says (RFC 9110
    // §8.6 allows one on a 304 and on HEAD): the client's response ends here,
    // so undici's complaint that no body followed cannot cut it.
    if (statusCode === 204 || statusCode === 304 || this.req.method === 'HEAD') this.#finish();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#done) return;
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', this.#onDrain);
      this.#sendTimer = setTimeout(this.#onSendTimeout, this.gw.config.server.send_timeout_ms);
    }
  }

  readonly #onDrain = (): void => {
    clearTimeout(this.#sendTimer);
    this.#sendTimer = undefined;
    if (!this.#done) this.#controller?.resume();
  };

  readonly #onSendTimeout = (): void => {
    this.#sendTimer = undefined;
    this.#sendTimedOut = true;
    this.gw.logger.warn({ path: this.logPath }, 'client accepted no data within send_timeout_ms: connection closed');
    this.res.destroy(); // 'close' then aborts the upstream request
  };

  onResponseEnd(): void {
    this.#finish();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.res.end();
    this.#endUpstream(this.res.statusCode, undefined);
    this.gw.access(this.req.method, this.logPath, this.res.statusCode, this.start, this.cache, undefined, this);
  }

  /** Ends the upstream call's span, if any (spans recorded only). */
  #endUpstream(status: number | undefined, errorType: string | undefined): void {
    const u = this.#upstreamSpan;
    if (u === undefined) return;
    this.#upstreamSpan = undefined;
    endHttpSpan(u, status, errorType);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.#sendTimer !== undefined) clearTimeout(this.#sendTimer);
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    // Already answered: ended early (204/304/HEAD), or refused on a queue timeout.
    if (this.#done) return;
    this.#done = true;
    const { res } = this;
    const code = (err as { code?: string }).code;
    this.#endUpstream(res.headersSent ? res.statusCode : undefined, code ?? err.name);
    if (this.#sendTimedOut) {
      this.gw.access(this.req.method, this.logPath, res.statusCode, this.start, this.cache, 'send_timeout', this);
      return;
    }
    if (err === CLIENT_GONE || res.destroyed) {
      // 499, as nginx logs it: the client went away before the answer.
      this.gw.access(this.req.method, this.logPath, 499, this.start, this.cache, 'client_closed', this);
      return;
    }
    if (res.headersSent) {
      this.gw.routeMetrics?.upstreamError(this.route.index, 'aborted');
      this.route.upstreamWarn.fail(code ?? err.name, 'upstream response failed mid-stream');
      this.gw.access(this.req.method, this.logPath, res.statusCode, this.start, this.cache, 'upstream_aborted', this);
      res.destroy();
      return;
    }
    const timeout = isUndiciTimeout(err);
    this.gw.routeMetrics?.upstreamError(this.route.index, timeout ? 'timeout' : 'unreachable');
    this.route.upstreamWarn.fail(code ?? err.name, timeout ? 'upstream timed out' : 'upstream unreachable');
    this.gw.refuse(this.req, res, timeout ? UPSTREAM_TIMEOUT : UPSTREAM_UNREACHABLE, this.start, this.logPath, this.scan.hasBody, this);
  }
}
