import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { purgeKind, type PurgeOutcome, type PurgeRequest } from '../cache/purge.js';
import { ADMIN_DEFAULTS, type AdminConfig } from '../config/schema.js';
import { listen } from '../net/listen.js';
import { settlesWithin } from '../net/wait.js';
import type { Logger } from '../observability/logger.js';
import { announcesBody, isBodyProblem, parsePurgeBody, purgeBodyKind, readPurgeBody } from './purge-body.js';
import { adminToken, BearerCheck } from './token.js';

/** What a reload came to: the new configuration runs, or the old one still does and why. */
export type ReloadOutcome = { ok: true } | { ok: false; errors: string[] };

/** Whether the gateway should be sent traffic, and the checks that decided it (the `/readyz` body). */
export interface Readiness {
  readonly ready: boolean;
  readonly checks: Readonly<Record<string, unknown>>;
}

export interface AdminDeps {
  logger: Logger;
  /** The Prometheus text to serve at `/metrics`, and its content type (one process's registry, or a cluster's aggregate). */
  metrics: { readonly contentType: string; scrape(): Promise<string> };
  /** Asked on every `/readyz`. */
  readiness(): Readiness | Promise<Readiness>;
  /** `POST /reload`: re-reads and applies the configuration. Absent: the endpoint answers 501. */
  reload?: (() => Promise<ReloadOutcome>) | undefined;
  /** `POST /cache/purge`: removes cached tokens (the guards' `purge`, or a cluster's fan-out to its workers). Absent: the endpoint answers 501. */
  purge?: ((request: PurgeRequest) => Promise<AdminPurgeOutcome>) | undefined;
}

/** A purge's outcome as the admin listener reports it: a cluster's primary adds how many workers it asked and how many did not confirm. */
export interface AdminPurgeOutcome extends PurgeOutcome {
  readonly workers?: { readonly asked: number; readonly unanswered: number };
}

/** Bounds: the admin listener answers small requests from operators and scrapers, nothing else. */
const LIMITS = Object.freeze({ maxHeaderSize: 8192, maxHeadersCount: 50, headersTimeout: 5000, requestTimeout: 10_000, keepAliveTimeout: 5000, closeMs: 2000 });
/** A scrape, or a worker's answer, that takes longer than this is a failure (500), not a hung request. */
const ANSWER_TIMEOUT_MS = 5000;

const JSON_HEADERS = Object.freeze({ 'content-type': 'application/json', 'cache-control': 'no-store' });
const UNAUTHORIZED = JSON.stringify({ code: 'unauthorized', message: 'Admin token required' });
const NO_TOKEN = JSON.stringify({ code: 'forbidden', message: 'State-changing admin endpoints are disabled: no admin token is configured' });

/** Endpoints and their methods. */
const ENDPOINTS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  '/livez': ['GET', 'HEAD'],
  '/readyz': ['GET', 'HEAD'],
  '/metrics': ['GET', 'HEAD'],
  '/reload': ['POST'],
  '/cache/purge': ['POST'],
});

/** Codes of a purge body's refusals, by status. */
const BODY_CODES = Object.freeze({ 400: 'invalid_request', 408: 'request_timeout', 413: 'payload_too_large', 415: 'unsupported_media_type' });

/**
 * The admin listener (`admin.listen`, loopback by default): health,
 * readiness and Prometheus metrics without a token; endpoints that change
 * state only with `Authorization: Bearer <admin.token>`.
 *
 * - `GET /livez`: 200 while the process serves (draining included: a
 *   process finishing its requests must not be killed for it).
 * - `GET /readyz`: 200 or 503, with the checks as JSON.
 * - `GET /metrics`: Prometheus text format.
 * - `POST /reload`: 200 `{"status":"reloaded"}`, or 422 with the errors
 *   (the old configuration keeps running); 401 without the right token, 403
 *   when no token is configured, 409 while another reload runs.
 * - `POST /cache/purge`: removes cached tokens before their time: one token,
 *   or every token of a subject or a client (`token=`, `sub=` or
 *   `client_id=`, as a form or as a JSON object; exactly one). 200
 *   `{"status":"purged","removed":{"local":n,"shared":m},"instances":...}`;
 *   503 with the same body and a `message` when the purge could not reach
 *   every instance (the shared cache unavailable, or workers that did not
 *   answer); 400 for a malformed request (the value sent is never repeated),
 *   413 over 64 KiB, 415 for another content type, 408 for a body that does
 *   not arrive in time; 401/403 as for `/reload`.
 *
 * Anything else is a JSON 404; a known path with another method a 405 with
 * `Allow`. Request bodies are read by `POST /cache/purge` only, after the
 * token check; a request elsewhere (or a refused one) that announces a body
 * is answered and its connection closed.
 *
 * @example
 * const admin = new AdminListener(config.admin, { logger, metrics: { contentType: m.registry.contentType, scrape: () => m.registry.metrics() }, readiness: () => ({ ready: true, checks: {} }) });
 * await admin.listen();
 */
export class AdminListener {
  readonly server: Server;
  readonly options: AdminConfig;
  readonly #deps: AdminDeps;
  #check: BearerCheck | undefined;
  readonly #sockets = new Set<Duplex>();
  /** Requests whose body was read to its end: their connection may carry another request. */
  readonly #bodyRead = new WeakSet<IncomingMessage>();
  #reloading = false;

  constructor(options: AdminConfig, deps: AdminDeps) {
    this.options = options;
    this.#deps = deps;
    this.useToken(options);
    this.server = createServer({
      maxHeaderSize: LIMITS.maxHeaderSize,
      headersTimeout: LIMITS.headersTimeout,
      requestTimeout: LIMITS.requestTimeout,
      keepAliveTimeout: LIMITS.keepAliveTimeout,
      connectionsCheckingInterval: 1000,
    });
    this.server.maxHeadersCount = LIMITS.maxHeadersCount;
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#deps.logger.error({ err }, 'admin endpoint failed');
        if (!res.headersSent) this.#json(req, res, 500, { code: 'server_error', message: 'Internal error' });
        else res.destroy();
      });
    });
    this.server.on('connection', (socket: Duplex) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    this.server.on('clientError', (_err: Error, socket: Duplex) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const methods = ENDPOINTS[path];
    if (methods === undefined || !Object.hasOwn(ENDPOINTS, path)) return this.#json(req, res, 404, { code: 'not_found', message: 'No such admin endpoint' });
    if (!methods.includes(req.method ?? '')) return this.#json(req, res, 405, { code: 'method_not_allowed', message: 'Method not allowed' }, { allow: methods.join(', ') });
    switch (path) {
      case '/livez':
        return this.#json(req, res, 200, { status: 'ok' });
      case '/readyz': {
        const r = await bounded(Promise.resolve(this.#deps.readiness()));
        return this.#json(req, res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', checks: r.checks });
      }
      case '/metrics': {
        const text = await bounded(this.#deps.metrics.scrape());
        return this.#send(req, res, 200, { 'content-type': this.#deps.metrics.contentType, 'cache-control': 'no-store' }, text);
      }
      case '/reload':
        return this.#reload(req, res);
      default:
        return this.#purge(req, res);
    }
  }

  /** The bearer check every state-changing endpoint goes through; false when it has answered the refusal. */
  #authorized(req: IncomingMessage, res: ServerResponse, what: string): boolean {
    if (this.#check === undefined) {
      this.#send(req, res, 403, JSON_HEADERS, NO_TOKEN);
      return false;
    }
    // Sent twice (Node keeps only the first in req.headers): refused like a wrong one.
    let count = 0;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 13 && raw[i]!.toLowerCase() === 'authorization') count++;
    if (count > 1 || !this.#check.accepts(req.headers.authorization)) {
      this.#deps.logger.warn({ endpoint: what, client: req.socket.remoteAddress }, 'admin request refused: missing or wrong admin token');
      this.#send(req, res, 401, { ...JSON_HEADERS, 'www-authenticate': 'Bearer realm="phantom-gateway-admin"' }, UNAUTHORIZED);
      return false;
    }
    return true;
  }

  async #reload(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.#authorized(req, res, 'POST /reload')) return;
    const reload = this.#deps.reload;
    if (reload === undefined) return this.#json(req, res, 501, { code: 'not_implemented', message: 'Reload is not available in this process' });
    if (this.#reloading) return this.#json(req, res, 409, { code: 'conflict', message: 'A reload is already running' });
    this.#reloading = true;
    this.#deps.logger.info({ client: req.socket.remoteAddress }, 'reload requested on the admin listener');
    let outcome: ReloadOutcome;
    try {
      outcome = await reload();
    } finally {
      this.#reloading = false;
    }
    if (outcome.ok) return this.#json(req, res, 200, { status: 'reloaded' });
    return this.#json(req, res, 422, { status: 'rejected', errors: outcome.errors });
  }

  async #purge(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.#authorized(req, res, 'POST /cache/purge')) return;
    const purge = this.#deps.purge;
    if (purge === undefined) return this.#json(req, res, 501, { code: 'not_implemented', message: 'Purge is not available in this process' });
    const request = await this.#purgeRequest(req, res);
    if (request === undefined) return;
    const outcome = await bounded(purge(request));
    const { local, shared, instances } = outcome;
    const fields = { by: purgeKind(request), local, shared, instances, ...(outcome.workers !== undefined ? { workers: outcome.workers.asked, workers_unanswered: outcome.workers.unanswered } : {}), client: req.socket.remoteAddress };
    const answer = { status: 'purged', removed: { local, shared }, instances };
    const missed = notReached(outcome);
    if (missed === undefined) {
      this.#deps.logger.info(fields, 'cache purged');
      return this.#json(req, res, 200, answer);
    }
    this.#deps.logger.warn(fields, `cache purged in part: ${missed}`);
    return this.#json(req, res, 503, { ...answer, message: missed.charAt(0).toUpperCase() + missed.slice(1) });
  }

  /** The purge the body asks for; undefined when it has answered the refusal (or the client left). */
  async #purgeRequest(req: IncomingMessage, res: ServerResponse): Promise<PurgeRequest | undefined> {
    const refuse = (status: keyof typeof BODY_CODES, message: string): undefined => {
      this.#json(req, res, status, { code: BODY_CODES[status], message });
      return undefined;
    };
    if (!announcesBody(req)) return refuse(400, 'Invalid purge request: no body: exactly one of token, sub or client_id is required');
    const kind = purgeBodyKind(req.headers['content-type']);
    if (kind === undefined) return refuse(415, 'Send the purge request as application/x-www-form-urlencoded or application/json (UTF-8)');
    const body = await readPurgeBody(req);
    if (body === 'aborted') {
      res.destroy();
      return undefined;
    }
    if (isBodyProblem(body)) return refuse(body.status, body.message);
    this.#bodyRead.add(req);
    const request = parsePurgeBody(kind, body);
    if (isBodyProblem(request)) return refuse(request.status, request.message);
    return request;
  }

  #json(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
    this.#send(req, res, status, { ...JSON_HEADERS, ...extra }, JSON.stringify(body));
  }

  #send(req: IncomingMessage, res: ServerResponse, status: number, headers: Record<string, string>, body: string): void {
    const out: Record<string, string | number> = { ...headers, 'content-length': Buffer.byteLength(body) };
    // A body left unread: the connection cannot carry another request after it.
    if (announcesBody(req) && !this.#bodyRead.has(req)) out.connection = 'close';
    res.writeHead(status, out);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  /** Starts listening (by default on `admin.listen`); resolves with the bound address. */
  /**
   * The admin token from now on: `token`, or `token_file` read again (a
   * reload applies a rotated secret; the previous token stops working).
   */
  useToken(options: Pick<AdminConfig, 'token' | 'token_file'>): void {
    let token: string | undefined;
    try {
      token = adminToken(options);
    } catch (err) {
      // Checked at load; a file gone since keeps the token in use (never none: that would open nothing, but say why).
      if (this.#check === undefined) throw err;
      this.#deps.logger.error({ token_file: options.token_file, err: { message: (err as Error).message } }, 'admin.token_file cannot be read: the admin token in use is kept');
      return;
    }
    this.#check = token === undefined ? undefined : new BearerCheck(token);
  }

  listen(port = this.options.listen.port ?? ADMIN_DEFAULTS.port, host = this.options.listen.host ?? ADMIN_DEFAULTS.host): Promise<AddressInfo> {
    return listen(this.server, port, host);
  }

  /** Stops: idle connections closed at once, requests under way given a moment, then cut. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // Connections that never carried a request are not idle to Node.
    for (const socket of this.#sockets) if ((socket as { _httpMessage?: unknown })._httpMessage == null) socket.destroy();
    if (!(await settlesWithin(closed, LIMITS.closeMs))) this.server.closeAllConnections();
    await closed;
  }
}

/** What a purge did not reach (the 503's message), or undefined when it reached everything it had to. */
function notReached(outcome: AdminPurgeOutcome): string | undefined {
  const missed: string[] = [];
  if (outcome.instances === 'unavailable') {
    missed.push('the shared cache could not be reached: the entries were removed from this process now (with workers, from each of them); the purge is replayed in the shared cache and to the other instances when it is back, and until then they keep their copies');
  }
  const workers = outcome.workers;
  if (workers !== undefined && workers.asked === 0) missed.push('no worker is running to purge its cache');
  else if (workers !== undefined && workers.unanswered > 0) missed.push(`${workers.unanswered} of ${workers.asked} workers did not confirm the purge: they may keep serving the purged entries until they expire`);
  return missed.length === 0 ? undefined : missed.join('; ');
}

/** `p`, or a failure after ANSWER_TIMEOUT_MS (a worker that never answers must not hang a scrape). */
function bounded<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms`)), ANSWER_TIMEOUT_MS);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
