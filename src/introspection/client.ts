import { readFileSync } from 'node:fs';
import { Client, type Dispatcher } from 'undici';
import type { JWTPayload } from 'jose';
import { GatewayError } from '../core/errors.js';
import { TrackedConnector } from '../net/sockets.js';
import { isUndiciTimeout } from '../net/timeouts.js';
import { AMBIGUOUS, hasDuplicateKeys, parseMaxAge, parseRetryAfter, singleHeader, type HeaderValue } from './parse.js';
import { FairScheduler, type Admission, type Job } from './scheduler.js';

export interface IntrospectionClientOptions {
  /** RFC 7662 introspection endpoint. */
  endpoint: URL;
  clientId: string;
  clientSecret: string;
  /** Bound on the whole call: queueing, connect, request, answer. */
  timeoutMs: number;
  /** `false` turns off TLS certificate verification (development only). */
  verifySsl: boolean;
  /** PEM file with the CA(s) to trust for the endpoint's certificate. */
  caFile?: string | undefined;
  /** Bound on the answer body; a JWT is usually well under 4 KiB. */
  maxAnswerBytes: number;
  /**
   * Introspections running at once, and so the bound on connections to the
   * authorization server, whatever state it is in.
   */
  connections: number;
  /** Introspections waiting for a connection, all clients together; past it: 503. Unbounded when absent. */
  maxQueued?: number;
  /** Introspections waiting for a connection for one client address; past it: 429. Unbounded when absent. */
  maxQueuedPerClient?: number;
  /** Dispatcher to use instead of private keep-alive connections (tests, proxies). */
  dispatcher?: Dispatcher;
}

/** Who an introspection is for; the client fills in `withdraw` when the call has to wait. */
export interface IntrospectionRequest {
  /** The requesting client's address: waiting calls queue, and are bounded, per address. */
  readonly client: string;
  /**
   * Set by the introspection client while the call waits for a connection:
   * removes it from the queue (its requesters went away), so it is never
   * sent. Returns false once the call has started (it then runs to its end,
   * and its answer is cached).
   */
  withdraw?: () => boolean;
}

/** An introspection answer, decoded. */
export type IntrospectionAnswer =
  | {
      readonly active: true;
      readonly jwt: string;
      readonly claims: JWTPayload;
      /** Seconds from `Cache-Control: max-age`; 0 for `no-store`/`no-cache`; undefined when absent. */
      readonly maxAge: number | undefined;
    }
  | { readonly active: false; readonly reason: InactiveReason };

export type InactiveReason = 'no_content' | 'active_false' | 'no_jwt';

/** Receives notable events; the gateway logs them as warnings. */
export type IntrospectionWarn = (event: { code: string; status?: number; detail: string }) => void;

/**
 * RFC 7662 client that asks for the JWT form of the token (`Accept:
 * application/jwt`, as Curity's phantom token plugins do) over keep-alive
 * connections. It sends the token and the gateway's own credentials, nothing
 * of the client's request.
 *
 * Outcomes: an answer (active with JWT, or inactive), or a `GatewayError`
 * thrown for every failure that is not the token's fault: 502 for rejections
 * and garbage, 503 for 503/429 and a full queue, 429 for a client's full
 * queue, 504 for timeouts.
 *
 * Transport: `connections` undici Clients, each running one call at a time,
 * behind a `FairScheduler` with as many slots. A slot is given back when
 * undici is done with the request, not when the caller got its answer, so a
 * call answered 504 while its connect still hangs keeps its slot: however the
 * server fails, there are never more than `connections` sockets to it. (An
 * undici Pool does not keep that bound: it drops a client whose connect
 * failed from its list but still feeds it queued requests, so each failed
 * connect let one more socket open, and `destroy()` could not reach those.)
 */
export class IntrospectionClient {
  readonly #opts: IntrospectionClientOptions;
  /** The injected dispatcher; undefined when the client runs its own connections. */
  readonly #shared: Dispatcher | undefined;
  /** Own connections: idle ones, and all of them (at most `connections`). */
  readonly #idle: Client[] = [];
  readonly #clients: Client[] = [];
  readonly #connector: TrackedConnector | undefined;
  readonly #scheduler: FairScheduler<IntrospectionCall>;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #origin: string;
  readonly #path: string;
  readonly #warn: IntrospectionWarn;
  /** A JWT without `exp` was reported (once per client, not per request). */
  #warnedNoExp = false;

  constructor(opts: IntrospectionClientOptions, warn: IntrospectionWarn = () => {}) {
    this.#opts = opts;
    this.#warn = warn;
    // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
    const basic = Buffer.from(`${formEncode(opts.clientId)}:${formEncode(opts.clientSecret)}`).toString('base64');
    this.#headers = {
      accept: 'application/jwt',
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${basic}`,
    };
    this.#origin = opts.endpoint.origin;
    this.#path = opts.endpoint.pathname + opts.endpoint.search;
    this.#scheduler = new FairScheduler({
      slots: opts.connections,
      maxQueued: opts.maxQueued ?? Number.MAX_SAFE_INTEGER,
      maxQueuedPerClient: opts.maxQueuedPerClient ?? Number.MAX_SAFE_INTEGER,
    });
    if (opts.dispatcher) {
      this.#shared = opts.dispatcher;
    } else {
      this.#connector = new TrackedConnector({
        timeout: opts.timeoutMs,
        ...(opts.verifySsl ? {} : { rejectUnauthorized: false }),
        ...(opts.caFile ? { ca: readFileSync(opts.caFile) } : {}),
      });
    }
  }

  /**
   * Introspects `token`. With `request`, the call waits (when every
   * connection is busy) in that client's queue, and may be refused at once
   * when that queue or the whole queue is full.
   */
  async introspect(token: string, request?: IntrospectionRequest): Promise<IntrospectionAnswer> {
    const call = new IntrospectionCall(
      { origin: this.#origin, path: this.#path, method: 'POST', headers: this.#headers, body: `token=${formEncode(token)}` },
      this.#opts.timeoutMs,
      this.#opts.maxAnswerBytes,
      this.#start,
      this.#scheduler,
    );
    const admission = this.#scheduler.submit(request?.client ?? '', call);
    if (admission !== 'started' && admission !== 'queued') {
      call.discard();
      throw refusal(admission);
    }
    if (admission === 'queued' && request !== undefined) request.withdraw = () => call.withdraw();
    let res: RawAnswer;
    try {
      res = await call.answer;
    } catch (err) {
      if (err === WITHDRAWN) throw err;
      if (err instanceof GatewayError) {
        this.#warn({ code: err.code, status: 200, detail: err.message });
        throw err;
      }
      throw this.#transportError(err);
    } finally {
      // The exchange's flight holds `request`, and stale Map tables may hold
      // the flight until the next full GC (see FairScheduler): it must not
      // keep the call, and with it the answer, once the wait is over.
      if (request?.withdraw !== undefined) request.withdraw = undefined;
    }

    const { statusCode, headers } = res;
    if (statusCode === 200) return this.#decode(res.body.toString('utf8'), headers['content-type'], headers['cache-control']);
    if (statusCode === 204) return INACTIVE_NO_CONTENT;
    if (statusCode === 503 || statusCode === 429) {
      this.#warn({ code: 'ERR_INTROSPECTION_UNAVAILABLE', status: statusCode, detail: 'authorization server is unavailable' });
      const retryAfter = parseRetryAfter(headers['retry-after']);
      throw new GatewayError('ERR_INTROSPECTION_UNAVAILABLE', retryAfter ? { retryAfter } : {});
    }
    const hint =
      statusCode === 401 || statusCode === 403
        ? 'authorization server refused the gateway\'s credentials: check client_id and client_secret'
        : `unexpected status ${statusCode} from the introspection endpoint`;
    this.#warn({ code: 'ERR_INTROSPECTION_REJECTED', status: statusCode, detail: hint });
    throw new GatewayError('ERR_INTROSPECTION_REJECTED', { detail: hint });
  }

  /**
   * Only a definite answer about the token is a decision: a JWT, `{"active":
   * true, "jwt": ...}`, or `{"active": false}`. Anything else in a 200 (an
   * empty body, `null`, `{}`, `{"error": ...}` from a proxy in front of the
   * server, `"active": "true"`, duplicate keys, an HTML page) is the
   * server's failure: 502, never cached, never "invalid token", so a flapping
   * server cannot turn good tokens into remembered refusals.
   */
  #decode(body: string, contentTypeHeader: HeaderValue, cacheControl: HeaderValue): IntrospectionAnswer {
    const contentType = singleHeader(contentTypeHeader);
    if (contentType === AMBIGUOUS) throw this.#invalid('introspection answer has two different Content-Type headers');
    const maxAge = parseMaxAge(cacheControl);
    const trimmed = body.trim();
    if (trimmed === '') throw this.#invalid('introspection answer 200 with an empty body');
    const isJson = contentType !== undefined && JSON_MEDIA_TYPE.test(contentType);
    if (isJson || trimmed.startsWith('{')) {
      // An RFC 7662 JSON answer. An active answer may carry the JWT in a
      // `jwt` member (Keycloak 25+ does so for Accept: application/jwt when
      // the client is allowed to). An active answer without one means the
      // server was not set up for phantom tokens: there is nothing to
      // forward, so the request is refused (401, not remembered) and the
      // operator is told why.
      let parsed: unknown;
      try {
        parsed = JSON.parse(trimmed);
      } catch {
        throw this.#invalid('introspection answer is broken JSON');
      }
      if (hasDuplicateKeys(trimmed)) throw this.#invalid('introspection answer is JSON with a duplicate member name');
      if (!isPlainObject(parsed) || typeof parsed.active !== 'boolean') {
        throw this.#invalid('introspection answer is JSON without a boolean "active" member');
      }
      if (!parsed.active) return INACTIVE_ACTIVE_FALSE;
      const embedded = parsed.jwt;
      if (typeof embedded === 'string') return this.#jwtAnswer(embedded, maxAge);
      if (embedded !== undefined) throw this.#invalid('introspection answer has a "jwt" member that is not a string');
      this.#warn({
        code: 'ERR_INTROSPECTION_INVALID_ANSWER',
        status: 200,
        detail: 'introspection answer is JSON without a JWT: configure the authorization server to answer Accept: application/jwt',
      });
      return INACTIVE_NO_JWT;
    }
    return this.#jwtAnswer(trimmed, maxAge);
  }

  /**
   * Garbage where a JWT should be (an HTML error page from a proxy in front of
   * the server, a truncated body) is the server's failure, not the token's:
   * 502, never "invalid token". So are claims the gateway or the API would
   * read differently from what the server meant: duplicate member names, and
   * `exp`/`nbf`/`iat` that are not numbers (RFC 7519 NumericDate). A JWT
   * without `exp` is accepted and cached at most `token_cache_seconds`.
   */
  #jwtAnswer(jwt: string, maxAge: number | undefined): IntrospectionAnswer {
    // Compact JWS only: it goes into a header, so nothing but base64url and dots.
    const payload = JWS_COMPACT.test(jwt) ? jwt.slice(jwt.indexOf('.') + 1, jwt.lastIndexOf('.')) : '';
    let text: string;
    let claims: unknown;
    try {
      text = UTF8.decode(Buffer.from(payload, 'base64url'));
      claims = JSON.parse(text);
    } catch {
      throw this.#invalid('introspection answer is not a usable JWT');
    }
    if (!isPlainObject(claims)) throw this.#invalid('introspection answer is not a usable JWT');
    if (hasDuplicateKeys(text)) throw this.#invalid('introspection JWT has a duplicate claim name');
    for (const name of NUMERIC_DATES) {
      const v = claims[name];
      if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v))) throw this.#invalid(`introspection JWT has a ${name} claim that is not a number`);
    }
    if (claims.exp === undefined && !this.#warnedNoExp) {
      this.#warnedNoExp = true;
      this.#warn({
        code: 'WARN_JWT_WITHOUT_EXP',
        status: 200,
        detail: 'introspection JWT has no exp claim: such answers are cached at most token_cache_seconds (logged once per introspection client)',
      });
    }
    return { active: true, jwt, claims: claims as JWTPayload, maxAge };
  }

  #invalid(detail: string): GatewayError {
    this.#warn({ code: 'ERR_INTROSPECTION_INVALID_ANSWER', status: 200, detail });
    return new GatewayError('ERR_INTROSPECTION_INVALID_ANSWER', { detail });
  }

  #transportError(err: unknown): GatewayError {
    const code = (err as { code?: string; name?: string })?.code;
    const name = (err as { name?: string })?.name;
    // TimeoutError: the timer bounding the whole call fired (IntrospectionCall).
    if (name === 'TimeoutError' || name === 'AbortError' || isUndiciTimeout(err)) {
      this.#warn({ code: 'ERR_INTROSPECTION_TIMEOUT', detail: `introspection timed out after ${this.#opts.timeoutMs} ms` });
      return new GatewayError('ERR_INTROSPECTION_TIMEOUT', { cause: err });
    }
    this.#warn({ code: 'ERR_INTROSPECTION_UNREACHABLE', detail: `introspection endpoint unreachable (${code ?? name ?? 'error'})` });
    return new GatewayError('ERR_INTROSPECTION_UNREACHABLE', { cause: err });
  }

  /** Runs a call the scheduler let through, on an idle connection (there is one: slots and connections are as many). */
  readonly #start = (call: IntrospectionCall, release: () => void): void => {
    if (this.#shared !== undefined) {
      call.run(this.#shared, release);
      return;
    }
    let client = this.#idle.pop();
    if (client === undefined) {
      client = new Client(this.#origin, {
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: this.#opts.timeoutMs,
        bodyTimeout: this.#opts.timeoutMs,
        connect: this.#connector!.connect,
      });
      this.#clients.push(client);
    }
    const used = client;
    call.run(used, () => {
      this.#idle.push(used);
      release();
    });
  };

  /** Sockets to the authorization server right now, connecting ones included (own connections only). */
  get sockets(): number {
    return this.#connector?.size ?? 0;
  }

  /** Introspections running, and waiting for a connection. */
  get load(): { running: number; queued: number } {
    return { running: this.#scheduler.running, queued: this.#scheduler.queued };
  }

  /**
   * Graceful stop: calls still waiting for a connection fail at once (their
   * clients are gone by now: the gateway closes this after its own drain),
   * calls running finish.
   */
  async close(): Promise<void> {
    this.#failWaiting();
    await Promise.all(this.#clients.map((c) => c.close()));
  }

  /** Stops at once: calls in flight fail (as unreachable), and connects still pending are cut. */
  async destroy(): Promise<void> {
    this.#failWaiting();
    const destroyed = Promise.all(this.#clients.map((c) => c.destroy()));
    this.#connector?.destroyAll();
    await destroyed;
  }

  #failWaiting(): void {
    for (const call of this.#scheduler.close()) call.cancel(new ClosedError());
  }
}

/** The call was withdrawn before it was sent: its requesters are gone, nobody reads this. */
export const WITHDRAWN: GatewayError = Object.freeze(new GatewayError('ERR_CLIENT_CLOSED', { detail: 'introspection withdrawn: its requesters went away' })) as GatewayError;

const QUEUE_FULL = Object.freeze(new GatewayError('ERR_INTROSPECTION_OVERLOADED', { retryAfter: '1' }));
const CLIENT_QUEUE_FULL = Object.freeze(new GatewayError('ERR_TOO_MANY_INTROSPECTIONS', { retryAfter: '1' }));

function refusal(admission: Exclude<Admission, 'started' | 'queued'>): GatewayError {
  if (admission === 'full') return QUEUE_FULL;
  if (admission === 'client_full') return CLIENT_QUEUE_FULL;
  return new GatewayError('ERR_INTROSPECTION_UNREACHABLE', { detail: 'introspection client closed' });
}

const INACTIVE_NO_CONTENT: IntrospectionAnswer = Object.freeze({ active: false, reason: 'no_content' });
const INACTIVE_ACTIVE_FALSE: IntrospectionAnswer = Object.freeze({ active: false, reason: 'active_false' });
const INACTIVE_NO_JWT: IntrospectionAnswer = Object.freeze({ active: false, reason: 'no_jwt' });

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** `application/json` or `application/<anything>+json`, with parameters or none. */
const JSON_MEDIA_TYPE = /^\s*application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;
const UTF8 = new TextDecoder('utf-8', { fatal: true });
/** RFC 7519 NumericDate claims. */
const NUMERIC_DATES = ['exp', 'nbf', 'iat'] as const;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** application/x-www-form-urlencoded encoding of one value (space as `+`). */
export function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+').replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

interface RawAnswer {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /** The body of a 200; empty for other statuses, which are decided by status alone. */
  readonly body: Buffer;
}

const NO_BODY = Buffer.alloc(0);

/**
 * One introspection call: a scheduler job, then an undici dispatch handler.
 * No response stream, no AbortSignal, one timer. The timer bounds the whole
 * exchange, waiting for a connection included: the caller gets its 504 on
 * time. A call still waiting in the scheduler's queue is then taken out of it
 * and never sent; one already given to undici but not started (its connect
 * hangs) is aborted as soon as undici starts it, and keeps its slot until
 * then. The body is kept only for a 200 and never beyond `limit` bytes. Any
 * other status settles the call at once, but the timer and the size bound
 * still apply to the rest of its body: an error page that drips or stalls
 * must not hold one of the few connections to the authorization server.
 */
class IntrospectionCall implements Dispatcher.DispatchHandler, Job {
  readonly answer: Promise<RawAnswer>;
  readonly #request: Dispatcher.DispatchOptions;
  readonly #launch: (call: IntrospectionCall, release: () => void) => void;
  readonly #scheduler: FairScheduler<IntrospectionCall>;
  #controller: Dispatcher.DispatchController | undefined;
  #resolve: ((a: RawAnswer) => void) | undefined;
  #reject: ((err: unknown) => void) | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #limit: number;
  /** Given to undici (by the scheduler). */
  #started = false;
  /** Gives the slot back; set while undici holds the request. */
  #release: (() => void) | undefined;
  /** The exchange is over: answered in full, failed, or cut. */
  #done = false;
  #abortWith: Error | undefined;
  #status = 0;
  #headers: Record<string, string | string[] | undefined> = {};
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(
    request: Dispatcher.DispatchOptions,
    timeoutMs: number,
    limit: number,
    launch: (call: IntrospectionCall, release: () => void) => void,
    scheduler: FairScheduler<IntrospectionCall>,
  ) {
    this.#request = request;
    this.#launch = launch;
    this.#scheduler = scheduler;
    this.#limit = limit;
    this.answer = new Promise<RawAnswer>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#timer = setTimeout(() => this.#fail(new TimeoutError(timeoutMs)), timeoutMs);
  }

  /** Job: the scheduler gave it a slot. */
  start(release: () => void): void {
    this.#started = true;
    this.#launch(this, release);
  }

  /** Sends the request on `dispatcher`; `release` is called once undici is done with it. */
  run(dispatcher: Dispatcher, release: () => void): void {
    this.#release = release;
    try {
      dispatcher.dispatch(this.#request, this);
    } catch (err) {
      this.#fail(err as Error);
      this.#free();
    }
  }

  /** Never admitted: nothing was started, and nobody awaits `answer`. */
  discard(): void {
    this.#done = true;
    clearTimeout(this.#timer);
    this.#resolve = this.#reject = undefined;
  }

  /** Takes the call out of the queue if it still waits there; see `IntrospectionRequest.withdraw`. */
  withdraw(): boolean {
    if (this.#done || !this.#scheduler.cancel(this)) return false;
    this.#fail(WITHDRAWN);
    return true;
  }

  /** Fails a call the scheduler has already dropped from its queue. */
  cancel(err: Error): void {
    this.#fail(err);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#abortWith !== undefined) controller.abort(this.#abortWith);
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.#status = statusCode;
    this.#headers = headers;
    if (statusCode !== 200 && statusCode >= 200) this.#settle({ statusCode, headers, body: NO_BODY });
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#size += chunk.length;
    if (this.#size > this.#limit) {
      this.#fail(new GatewayError('ERR_INTROSPECTION_INVALID_ANSWER', { detail: `introspection answer larger than ${this.#limit} bytes` }));
      return;
    }
    if (this.#status === 200) this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    this.#free();
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    if (this.#status === 200) this.#settle({ statusCode: 200, headers: this.#headers, body: this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks) });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.#free();
    this.#fail(err);
  }

  /**
   * undici is done with the request: its connection may serve the next call.
   * In a microtask: the next call goes to this same undici Client, which must
   * not be given a request from inside its own callbacks (it is still
   * erroring or completing this one).
   */
  #free(): void {
    const release = this.#release;
    if (release === undefined) return;
    this.#release = undefined;
    queueMicrotask(release);
  }

  #settle(answer: RawAnswer): void {
    const resolve = this.#resolve;
    if (resolve === undefined) return;
    this.#resolve = this.#reject = undefined;
    resolve(answer);
  }

  /** Ends the exchange: rejects the call unless it was already answered, and stops the request. */
  #fail(err: Error): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    const controller = this.#controller;
    if (controller !== undefined) {
      // Paused first, so that undici's parser stops at this chunk instead of
      // completing a request that was just aborted.
      controller.pause();
      controller.abort(err);
    } else if (this.#started) {
      this.#abortWith = err; // undici has not started it yet: as soon as it does
    } else {
      this.#scheduler.cancel(this); // still queued: never sent
    }
    const reject = this.#reject;
    this.#resolve = this.#reject = undefined;
    reject?.(err);
  }
}

/** The gateway is stopping: calls still waiting for a connection fail. */
class ClosedError extends Error {
  override readonly name = 'ClosedError';
  constructor() {
    super('introspection client closed');
  }
}

/** The bound on the whole introspection call fired. */
class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
  constructor(ms: number) {
    super(`introspection took longer than ${ms} ms`);
  }
}
