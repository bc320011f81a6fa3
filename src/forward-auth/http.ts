import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Clock } from '../cache/memory.js';
import { FORWARD_AUTH_DEFAULTS, type ForwardAuthConfig, type GatewayConfig } from '../config/schema.js';
import { decide, withdraw, type Decision, type DecisionRequest } from '../core/decide.js';
import { GatewayError, refusal } from '../core/errors.js';
import { createGuards, type Guards } from '../core/guards.js';
import { renderRefusal } from '../core/render.js';
import { settlesWithin } from '../net/wait.js';
import { listen } from '../net/listen.js';
import type { Logger } from '../observability/logger.js';
import { requestId } from '../observability/request-id.js';
import { traceHeaders, type TraceHeaders } from '../observability/trace-context.js';
import { endHttpSpan, startServerSpan, tracing, watchTracing } from '../observability/tracing.js';
import type { Span } from '@opentelemetry/api';
import { TrustedProxies, unmapped } from '../net/addresses.js';
import { answerJwks, JWKS_PATH } from '../minting/publish.js';
import type { Jwks } from '../minting/key-set.js';
import { IdentityHeaders } from './identity.js';
import { FORWARD_AUTH } from '../observability/doors.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { clientAddress, originalRequest, originalUrl, scanDecisionHeaders, type DecisionHeaders } from './original.js';
import { certThumbprint, clientCertFromHeader } from '../net/client-cert.js';
import { DPOP_VERIFIED } from '../core/sender.js';

export interface ForwardAuthDeps {
  logger: Logger;
  /** Clock for cache lifetimes (tests move it); only used when `guards` is not given. */
  now?: Clock;
  /**
   * The engine to use, shared with other front doors (the proxy) so that they
   * share one cache and one single-flight; its owner closes it. Without it
   * the listener builds its own from `config` and closes it on `close()`.
   */
  guards?: Guards;
  /** Prometheus metrics, when `guards` is not given (else the guards' are used); undefined: off. */
  metrics?: GatewayMetrics | undefined;
  /**
   * A reload: the listener whose server this one takes over. Nothing
   * changes until `activate()`; decisions under way finish on the old one.
   */
  adopt?: ForwardAuthListener;
}

const BAD_TARGET = refusal('ERR_BAD_REQUEST_TARGET');
const TOO_MANY_HEADERS = refusal('ERR_TOO_MANY_HEADERS');
const HEADERS_TOO_LARGE = refusal('ERR_HEADERS_TOO_LARGE');
const MALFORMED_REQUEST = refusal('ERR_MALFORMED_REQUEST');
const REQUEST_TIMEOUT = refusal('ERR_REQUEST_TIMEOUT');
const METHOD_NOT_ALLOWED = refusal('ERR_METHOD_NOT_ALLOWED');
const INTERNAL = refusal('ERR_INTERNAL');

/** What Envoy (HTTP ext_authz) removes from every allowed request: a client's Client-Cert never reaches the upstream. */
const NO_CLIENT_CERT = 'client-cert, client-cert-chain';
/** ... and from one that carries no verified proof. */
const NO_PROOF = `dpop, ${DPOP_VERIFIED}, ${NO_CLIENT_CERT}`;
/** ... and from a request to an open route (without `forward_authorization`). */
const OPEN_DROPPED = `authorization, ${NO_PROOF}`;

/** `X-Accel-Expires` values, built once for the usual range. */
const SECONDS = Array.from({ length: 3601 }, (_, i) => String(i));
const seconds = (n: number): string => SECONDS[n] ?? String(n);

/**
 * The forward-auth decision listener: a `node:http` server on which every
 * request, any method on any path, asks whether the request it describes may
 * pass (NGINX `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`,
 * APISIX `forward-auth`, Envoy HTTP `ext_authz`). It only translates: the
 * original method and URI and the credentials go to `decide()`, the decision
 * comes back as
 *
 * - an allow: `200`, `X-Accel-Expires: <seconds>` first, `Authorization:
 *   Bearer <jwt>` or `DPoP <jwt>` (none for a CORS preflight; on an open
 *   route none and `X-Envoy-Auth-Headers-To-Remove: authorization`, or the
 *   client's own with `forward_authorization: true`), with a verified DPoP
 *   proof to pass on the proof and `X-DPoP-Verified: <jkt>` (without one,
 *   Envoy is told to remove both), the identity headers, `Cache-Control:
 *   private`, no body;
 * - a refusal: `renderRefusal()`'s status, headers and JSON body, with
 *   `X-Accel-Expires` first (the negative TTL for an inactive token or a
 *   missing scope, else `0`: NGINX never caches it).
 *
 * `X-Accel-Expires` comes before `Cache-Control` because NGINX reads upstream
 * headers in order: an `X-Accel-Expires` seen first wins over a later
 * `Cache-Control`, and `X-Accel-Expires: 0` makes the answer uncacheable
 * whatever follows.
 *
 * It hands a JWT to whoever shows an opaque token: it must only be reachable
 * by the gateway that asks it (loopback by default). What only that gateway
 * knows, the URL the client addressed (a DPoP proof's `htu`) and the
 * client's certificate (`Client-Cert`), is believed from a peer in
 * `trusted_proxies` only.
 *
 * @example
 * const fa = new ForwardAuthListener(config, { logger, guards });
 * const { port } = await fa.listen();
 * // ... on SIGTERM:
 * await fa.close();
 */
export class ForwardAuthListener {
  readonly server: Server;
  readonly config: GatewayConfig;
  readonly options: ForwardAuthConfig;
  readonly logger: Logger;
  readonly guards: Guards;
  readonly #ownsGuards: boolean;
  readonly #identity: IdentityHeaders | undefined;
  readonly #pathPrefix: string | undefined;
  readonly #maxRawHeaders: number;
  readonly #accessLog: boolean;
  /** The guards' metrics; undefined when off. */
  readonly #metrics: GatewayMetrics | undefined;
  /** Open connections, for the end of a graceful stop (the server's: shared across reloads). */
  readonly #sockets: Set<Duplex>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly #handlers: Array<[string, (...args: any[]) => void]>;
  #adopted: ForwardAuthListener | undefined;
  /** Decisions waiting on an introspection (a reload closes the old guards after them). */
  #pending = 0;
  #onIdle: (() => void) | undefined;
  /** `log.access_log_sub`. */
  readonly #accessSub: boolean;
  /** Peers whose `X-Request-Id` is taken (a gateway that sets its own, e.g. NGINX's `$request_id`). */
  readonly #trusted: TrustedProxies | undefined;
  /** Each route's upstream origin, by route index (access log), parsed once. */
  readonly #origins: ReadonlyArray<string | undefined>;
  /** Stops refreshing `tracing.on` once closed (or retired by a reload). */
  readonly #stopTracing: () => void;
  #draining = false;

  constructor(config: GatewayConfig, deps: ForwardAuthDeps) {
    this.config = config;
    this.options = config.forward_auth ?? { listen: { host: FORWARD_AUTH_DEFAULTS.host, port: FORWARD_AUTH_DEFAULTS.port }, keep_alive_timeout_ms: FORWARD_AUTH_DEFAULTS.keep_alive_timeout_ms };
    this.logger = deps.logger;
    this.#ownsGuards = deps.guards === undefined;
    this.guards = deps.guards ?? createGuards(config, deps);
    this.#metrics = this.guards.metrics;
    const ids = this.options.identity_headers;
    this.#identity = ids !== undefined && Object.keys(ids).length > 0 ? new IdentityHeaders(ids) : undefined;
    this.#pathPrefix = this.options.path_prefix;
    this.#accessLog = config.log.access_log && this.logger.isLevelEnabled('info');
    this.#accessSub = config.log.access_log_sub === true;
    this.#trusted = TrustedProxies.from(config.trusted_proxies);
    this.#origins = this.guards.routes.map((r) => (r.config.upstream === undefined ? undefined : new URL(r.config.upstream).origin));
    if (this.#trusted === undefined && deps.adopt === undefined) warnUnknownUrl(this.guards, this.logger);
    const s = config.server;
    this.#maxRawHeaders = s.max_headers * 2;
    this.#stopTracing = watchTracing();
    const handle = (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res);
    this.#handlers = [
      ['request', handle],
      // No `100 Continue`: the body of a decision request is never read.
      ['checkContinue', handle],
      ['checkExpectation', handle],
      ['clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#clientError(err, socket)],
      ['connect', (_req: IncomingMessage, socket: Duplex) => this.#rawRefusal(socket, METHOD_NOT_ALLOWED)],
    ];
    if (deps.adopt !== undefined) {
      this.server = deps.adopt.server;
      this.#sockets = deps.adopt.#sockets;
      this.#adopted = deps.adopt;
      return;
    }
    this.#sockets = new Set<Duplex>();
    this.server = createServer({
      maxHeaderSize: s.max_header_bytes,
      headersTimeout: s.headers_timeout_ms,
      requestTimeout: s.request_timeout_ms,
      // The gateway keeps connections to the listener; they should outlive its own idle timeout.
      keepAliveTimeout: this.options.keep_alive_timeout_ms,
      // headersTimeout and requestTimeout are only enforced when this check runs.
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(s.headers_timeout_ms / 4))),
      requireHostHeader: false,
      noDelay: true,
    });
    // One more than the bound, so that reaching it is visible instead of Node silently dropping the rest.
    this.server.maxHeadersCount = s.max_headers + 1;
    for (const [event, handler] of this.#handlers) this.server.on(event, handler);
    // The socket set is the server's, not a generation's: never moved on reload.
    this.server.on('connection', (socket: Duplex) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  /** A reload's switch: the adopted listener's handlers leave the server and this one's take their place, in one step. */
  activate(): void {
    const old = this.#adopted;
    if (old === undefined) return;
    this.#adopted = undefined;
    this.server.maxHeadersCount = this.config.server.max_headers + 1;
    this.server.keepAliveTimeout = this.options.keep_alive_timeout_ms;
    for (const [event, handler] of old.#handlers) this.server.off(event, handler);
    for (const [event, handler] of this.#handlers) this.server.on(event, handler);
  }

  /** After a reload took the server over: resolves once the decisions it still waits on are answered (or at `deadline`, a `performance.now()` time). */
  async retire(deadline: number): Promise<void> {
    this.#stopTracing();
    if (this.#pending === 0) return;
    await settlesWithin(new Promise<void>((resolve) => (this.#onIdle = resolve)), deadline - performance.now());
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const start = this.#accessLog ? performance.now() : 0;
    if (this.#metrics !== undefined) this.#metrics.started(FORWARD_AUTH, res);
    res.sendDate = false;
    let path = '-';
    let method = req.method;
    // Until the headers are read: a new ID.
    let f: DecisionFacts = { id: '', req, h: undefined, introspectionMs: -1 };
    try {
      const raw = req.rawHeaders;
      if (raw.length > this.#maxRawHeaders) return this.#refuse(req, res, TOO_MANY_HEADERS, 0, start, method, path, '-', withId(f));
      const h = scanDecisionHeaders(raw);
      // The gateway asking may set the ID (NGINX `proxy_set_header X-Request-Id $request_id`) when it is trusted.
      const id = requestId(h.requestId !== undefined && this.#trusted !== undefined && this.#trusted.has(req.socket.remoteAddress) ? h.requestId : undefined);
      const original = originalRequest(h, req.method!, req.url!, this.#pathPrefix);
      if (original === undefined) {
        f = { id, req, h, introspectionMs: -1 };
        if (describesNothing(h) && pathOf(req.url!) === JWKS_PATH) {
          const jwks = this.guards.jwks();
          if (jwks !== undefined) return this.#jwks(req, res, jwks, start, f);
        }
        return this.#refuse(req, res, BAD_TARGET, 0, start, method, path, '-', f);
      }
      method = original.method;
      const trusted = this.#trusted !== undefined && this.#trusted.has(req.socket.remoteAddress);
      const fr = new ForwardedRequest(original.method, original.target, h, req, id, trusted, original.requestLine === true, trusted && this.config.trust_client_cert_header);
      // The decision's server span, parented on the original request's traceparent (spans recorded only).
      if (tracing.on) fr.span = startServerSpan(original.method, undefined, pathOf(original.target), 'http', fr.traceHeaders);
      f = fr;
      const d = decide(this.guards, fr);
      if (!(d instanceof Promise)) {
        path = logPath(d, original.target);
        return this.#answer(req, res, d, h, start, method, path, fr);
      }
      const asked = this.#accessLog ? performance.now() : 0;
      let answered = false;
      this.#pending++;
      const gone = () => {
        if (answered) return;
        answered = true;
        // Nobody waits for this answer any more: an introspection not yet sent is never sent.
        withdraw(d);
        this.#log(method, logPath(undefined, original.target), 499, start, 'miss', 'client_closed', fr);
      };
      res.once('close', gone);
      d.finally(() => {
        if (--this.#pending === 0) this.#onIdle?.();
      }).catch(() => {});
      d.then(
        (decision) => {
          res.off('close', gone);
          if (answered || res.destroyed) return;
          answered = true;
          if (this.#accessLog) fr.introspectionMs = Math.round((performance.now() - asked) * 100) / 100;
          this.#answer(req, res, decision, h, start, method, logPath(decision, original.target), fr);
        },
        (err: unknown) => {
          res.off('close', gone);
          if (answered) return;
          answered = true;
          this.logger.error({ err }, 'internal error');
          this.#refuse(req, res, INTERNAL, 0, start, method, logPath(undefined, original.target), 'miss', fr);
        },
      ).catch((err: unknown) => {
        // A bug on the asynchronous path must not become an unhandled rejection that ends the process.
        this.logger.error({ err }, 'internal error');
        if (!res.headersSent) this.#refuse(req, res, INTERNAL, 0, start, method, '-', '-', fr);
        else res.destroy();
      });
    } catch (err) {
      this.logger.error({ err }, 'internal error');
      if (!res.headersSent) this.#refuse(req, res, INTERNAL, 0, start, method, path, '-', withId(f));
      else res.destroy();
    }
  }

  #answer(req: IncomingMessage, res: ServerResponse, d: Decision, h: DecisionHeaders, start: number, method: string | undefined, path: string, f: DecisionFacts): void {
    f.decision = d;
    if (!d.allow) return this.#refuse(req, res, d.error, d.ttl, start, method, path, d.cache, f);
    // A sender-constrained token's allow has ttl 0: the next request brings its own proof or certificate.
    const out: string[] = ['x-accel-expires', seconds(d.ttl)];
    const token = d.token;
    if (token !== undefined) {
      out.push('authorization', token.authorization);
      // dpop.forward: dpop hands the verified proof on, with its key's thumbprint;
      // otherwise neither reaches the API: Envoy removes what
      // x-envoy-auth-headers-to-remove lists, Traefik drops a listed header the
      // answer lacks, Caddy before 2.9 too (from 2.9 it keeps the client's: the
      // README has Caddy remove the client's X-DPoP-Verified first).
      const proof = token.dpop;
      if (proof !== undefined) out.push('dpop', proof.proof, DPOP_VERIFIED, proof.jkt, 'x-envoy-auth-headers-to-remove', NO_CLIENT_CERT);
      else out.push('x-envoy-auth-headers-to-remove', NO_PROOF);
      this.#identity?.append(token, out);
    } else if (d.route.guard === undefined) {
      // An open route. Its Authorization (the opaque token) is dropped: Traefik
      // and Caddy remove a copied header the answer lacks, Envoy removes what
      // x-envoy-auth-headers-to-remove lists. forward_authorization: true
      // hands the client's back (and its DPoP proof, which goes with it), for
      // the proxies that copy it (never cached: X-Accel-Expires is 0 here).
      // X-DPoP-Verified is the gateway's to set, never a client's.
      const auth = h.authorization[0];
      if (!d.route.config.forward_authorization) out.push('x-envoy-auth-headers-to-remove', OPEN_DROPPED);
      else {
        out.push('x-envoy-auth-headers-to-remove', `${DPOP_VERIFIED}, ${NO_CLIENT_CERT}`);
        if (auth !== undefined) out.push('authorization', auth);
        if (h.dpop.length === 1) out.push('dpop', h.dpop[0]!);
      }
    } else {
      // A CORS preflight: no credentials, and no proof or verification passes on.
      out.push('x-envoy-auth-headers-to-remove', NO_PROOF);
    }
    out.push('x-request-id', f.id, 'cache-control', 'private', 'content-length', '0');
    if (h.hasBody || this.#draining) out.push('connection', 'close');
    res.writeHead(200, out);
    res.end();
    this.#log(method, path, 200, start, d.cache, undefined, f);
  }

  /**
   * The public keys minted tokens verify with, to a request that describes no
   * other request (no `X-Forwarded-*`/`X-Original-*` method or URI, not under
   * Envoy's `path_prefix`): never a decision, so a gateway can never read it
   * as an allow. GET and HEAD; 405 with `Allow` otherwise.
   */
  #jwks(req: IncomingMessage, res: ServerResponse, jwks: Jwks, start: number, f: DecisionFacts): void {
    const a = answerJwks(req.method, jwks);
    const out: string[] = [];
    for (const name in a.headers) out.push(name, a.headers[name]!);
    out.push('x-request-id', f.id);
    if (this.#draining || hasBody(req)) out.push('connection', 'close');
    res.writeHead(a.status, out);
    res.end(a.body);
    this.#log(req.method, JWKS_PATH, a.status, start, '-', a.code, f);
  }

  /**
   * A refusal as every front door renders it, with `X-Accel-Expires` first.
   * A decision request that announces a body (it should have none) is answered
   * at once, its body unread, and its connection closed: a `Content-Length`
   * passed on without its body (NGINX `proxy_pass_request_body off` without
   * clearing the header) would otherwise swallow the next request.
   */
  #refuse(req: IncomingMessage, res: ServerResponse, err: GatewayError, ttl: number, start: number, method: string | undefined, path: string, cache: string, f: DecisionFacts): void {
    if (res.headersSent || res.destroyed) return;
    const r = renderRefusal(err);
    const out: string[] = ['x-accel-expires', seconds(ttl)];
    for (const name in r.headers) out.push(name, r.headers[name]!);
    out.push('x-request-id', f.id);
    if (this.#draining || hasBody(req)) out.push('connection', 'close');
    res.writeHead(r.status, out);
    res.end(req.method === 'HEAD' ? undefined : r.body);
    this.#log(method, path, err.status, start, cache, err.code, f);
  }

  /** One access-log line (one object; undefined fields are left out). */
  #log(method: string | undefined, path: string, status: number, start: number, cache: string, code: string | undefined, f: DecisionFacts): void {
    if (f.span !== undefined) {
      const route = f.decision?.route?.config.path;
      if (route !== undefined) f.span.setAttribute('http.route', route);
      endHttpSpan(f.span, status, status >= 500 ? code : undefined);
    }
    if (this.guards.routeMetrics !== undefined) this.guards.routeMetrics.request(FORWARD_AUTH, f.decision?.route !== undefined ? f.decision.route.index : this.guards.routeIndex(path), status, code);
    if (!this.#accessLog) return;
    const ms = Math.round((performance.now() - start) * 100) / 100;
    const d = f.decision;
    const token = d?.allow === true ? d.token : undefined;
    this.logger.info(
      {
        method,
        path,
        status,
        ms,
        cache,
        code,
        request_id: f.id,
        client_address: f.h === undefined ? unmapped(f.req.socket.remoteAddress ?? '') : clientAddress(f.h, f.req.socket.remoteAddress),
        route: d?.route?.config.path,
        upstream: d?.route === undefined ? undefined : this.#origins[d.route.index],
        introspection_ms: f.introspectionMs < 0 ? undefined : f.introspectionMs,
        client_id: token?.clientId?.slice(0, 256),
        sub: this.#accessSub ? token?.sub?.slice(0, 256) : undefined,
      },
      'decision',
    );
  }

  /** Requests Node's parser refused (oversized heads, slow or malformed ones) get the same JSON refusals. */
  #clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    // A response under way on this connection: a refusal now would be read as its answer.
    const inFlight = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (inFlight != null && !inFlight.writableEnded) {
      socket.destroy();
      return;
    }
    this.#rawRefusal(socket, err.code === 'HPE_HEADER_OVERFLOW' ? HEADERS_TOO_LARGE : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? REQUEST_TIMEOUT : MALFORMED_REQUEST);
  }

  #rawRefusal(socket: Duplex, refusal: GatewayError): void {
    const r = renderRefusal(refusal);
    let head = `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status]}\r\nx-accel-expires: 0\r\n`;
    for (const name in r.headers) head += `${name}: ${r.headers[name]}\r\n`;
    socket.end(`${head}connection: close\r\n\r\n${r.body}`);
    this.logger.info({ status: r.status, code: refusal.code }, 'decision request refused before reading it');
    if (this.guards.routeMetrics !== undefined) this.guards.routeMetrics.request(FORWARD_AUTH, -1, r.status, refusal.code);
  }

  /** Starts listening (by default on `forward_auth.listen`); resolves with the bound address. */
  listen(port = this.options.listen?.port ?? FORWARD_AUTH_DEFAULTS.port, host = this.options.listen?.host ?? FORWARD_AUTH_DEFAULTS.host): Promise<AddressInfo> {
    return listen(this.server, port, host);
  }

  /**
   * Graceful stop: no new connections, idle keep-alive connections closed,
   * decisions under way answered (with `Connection: close`); after
   * `server.shutdown_timeout_ms` whatever is left is cut. Closes the guards
   * only when the listener built them.
   */
  async close(): Promise<void> {
    const began = performance.now();
    this.#draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const idle = () => {
      this.server.closeIdleConnections();
      // Node leaves out connections that never carried a request (a client
      // that opened a spare one): nothing is owed on them either.
      for (const socket of this.#sockets) if ((socket as { _httpMessage?: unknown })._httpMessage == null) socket.destroy();
    };
    idle();
    const sweep = setInterval(idle, 100);
    sweep.unref();
    const deadline = began + this.config.server.shutdown_timeout_ms;
    if (!(await settlesWithin(closed, deadline - performance.now()))) {
      this.logger.warn('shutdown timeout reached: closing remaining forward-auth connections');
      this.server.closeAllConnections();
    }
    clearInterval(sweep);
    this.#stopTracing();
    if (!this.#ownsGuards) return;
    if (!(await settlesWithin(this.guards.close(), deadline - performance.now()))) await this.guards.destroy();
  }
}

/**
 * With no peer in `trusted_proxies`, the listener never learns the URL a
 * client addressed: every DPoP request to a route without
 * `dpop.public_base_url` is refused (`htu`). Said once at start, naming the
 * routes.
 */
function warnUnknownUrl(guards: Guards, logger: Logger): void {
  const routes = guards.routes.filter((r) => r.guard !== undefined && r.guard.scheme !== 'Bearer' && r.guard.options.dpop.public_base_url === undefined).map((r) => r.config.path);
  if (routes.length === 0) return;
  logger.warn(
    { routes },
    'forward_auth: these routes take DPoP proofs, but trusted_proxies is empty, so the listener believes no X-Forwarded-Proto/-Host and every DPoP request to them is refused; add the gateway in front to trusted_proxies, or set the routes\' dpop.public_base_url',
  );
}

/** Builds a forward-auth listener (see `ForwardAuthListener`). */
export function createForwardAuthListener(config: GatewayConfig, deps: ForwardAuthDeps): ForwardAuthListener {
  return new ForwardAuthListener(config, deps);
}

/**
 * What `decide` reads; the client address is worked out on a cache miss
 * only (the exchange reads it to queue the introspection).
 */
class ForwardedRequest implements DecisionRequest, DecisionFacts {
  readonly authorization: readonly string[];
  readonly preflight: boolean;
  readonly hasBody: boolean;
  readonly methodOverride: boolean;
  introspectionMs = -1;
  decision: Decision | undefined;
  /** Requester and DecisionFacts: the decision's server span (spans recorded only). */
  span: Span | undefined;

  /** Every `DPoP` line of the original request (the gateway passes the client's headers on). */
  readonly dpop: readonly string[];

  constructor(
    readonly method: string,
    readonly target: string,
    readonly h: DecisionHeaders,
    readonly req: IncomingMessage,
    readonly id: string,
    /** The peer is in `trusted_proxies`: its X-Forwarded-Proto/-Host and Client-Cert are believed. */
    readonly trusted: boolean,
    /** The request line is the original request (`path_prefix`): the decision request's Host is the client's. */
    readonly requestLine: boolean,
    /** The peer is trusted and `trust_client_cert_header` is set: its Client-Cert is the client's certificate. */
    readonly certFromPeer: boolean,
  ) {
    this.authorization = h.authorization;
    this.preflight = h.preflight;
    this.hasBody = h.hasBody;
    this.methodOverride = h.methodOverride;
    this.dpop = h.dpop;
  }

  /** The URL the client addressed (a DPoP proof's htu), from a trusted peer only; read for DPoP requests only. */
  get url(): string | undefined {
    return this.trusted ? originalUrl(this.h, this.target, this.requestLine) : undefined;
  }

  /** The client certificate's thumbprint, from a trusted peer's `Client-Cert` only (with `trust_client_cert_header`); read for certificate-bound tokens only. */
  get certThumbprint(): string | undefined {
    if (!this.certFromPeer) return undefined;
    const der = clientCertFromHeader(this.h.clientCert);
    return der === undefined ? undefined : certThumbprint(der);
  }

  get clientAddress(): string {
    return clientAddress(this.h, this.req.socket.remoteAddress);
  }

  /** The original request's trace context, for the introspection it starts (read on a miss only). */
  get traceHeaders(): TraceHeaders | undefined {
    const tp = this.req.headers.traceparent;
    if (typeof tp !== 'string') return undefined;
    const ts = this.req.headers.tracestate;
    return traceHeaders(tp, typeof ts === 'string' ? ts : undefined);
  }
}

/** What the access log says of one decision request. */
interface DecisionFacts {
  /** Returned as `X-Request-Id`; '' until the headers are read (see `withId`). */
  readonly id: string;
  readonly req: IncomingMessage;
  readonly h: DecisionHeaders | undefined;
  introspectionMs: number;
  decision?: Decision | undefined;
  span?: Span | undefined;
}

/** `f`, with a new request ID when it has none yet. */
function withId(f: DecisionFacts): DecisionFacts {
  return f.id === '' ? { ...f, id: requestId(undefined) } : f;
}

/** The original path for the access log (never the query): only once the target checks passed. */
function logPath(d: Decision | undefined, target: string): string {
  if (d !== undefined && !d.allow && d.route === undefined && d.error.code !== 'ERR_NO_ROUTE') return '-';
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/** No header describes another request: the request is the listener's own. */
function describesNothing(h: DecisionHeaders): boolean {
  return h.forwardedMethod === undefined && h.forwardedUri === undefined && h.originalMethod === undefined && h.originalUri === undefined;
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

function hasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  return (cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined;
}
