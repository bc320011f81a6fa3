import { readFileSync } from 'node:fs';
import type { Span } from '@opentelemetry/api';
import type { TraceHeaders } from '../observability/trace-context.js';
import { Client, type Dispatcher } from 'undici';
import { GatewayError } from '../core/errors.js';
import { TrackedConnector } from '../net/sockets.js';
import { isUndiciTimeout } from '../net/timeouts.js';
import { FairScheduler, type Admission, type Job } from './scheduler.js';

/*
 * The introspection transport: the call, its timer, its bounds and its pool.
 * It knows nothing of what is asked (client authentication adds headers and
 * form fields) nor of what the answer means (a dialect decodes it).
 */

export interface TransportOptions {
  /** Origin of the introspection endpoint (`https://as.example.com`). */
  origin: string;
  /** Bound on the whole call: queueing, connect, request, answer. */
  timeoutMs: number;
  /** `false` turns off TLS certificate verification (development only). */
  verifySsl: boolean;
  /** PEM file with the CA(s) to trust for the endpoint's certificate. */
  caFile?: string | undefined;
  /** TLS client certificate and key, for `tls_client_auth` (RFC 8705). */
  clientCertificate?: { readonly cert: Buffer | string; readonly key: Buffer | string } | undefined;
  /** Bound on the answer body; a JWT is usually well under 4 KiB. */
  maxAnswerBytes: number;
  /**
   * Introspections running at once, and so the bound on connections to the
   * authorization server, whatever state it is in.
   */
  connections: number;
  /** Introspections waiting for a connection, all clients together; past it: 503. Unbounded when absent. */
  maxQueued?: number | undefined;
  /** Introspections waiting for a connection for one client address; past it: 429. Unbounded when absent. */
  maxQueuedPerClient?: number | undefined;
  /** Dispatcher to use instead of private keep-alive connections (tests, proxies). */
  dispatcher?: Dispatcher | undefined;
}

/** Who an introspection is for; the transport fills in `withdraw` when the call has to wait. */
export interface IntrospectionRequest {
  /** The requesting client's address: waiting calls queue, and are bounded, per address. */
  readonly client: string;
  /** The trace context of the request that started the call: sent as `traceparent`/`tracestate`. */
  readonly trace?: TraceHeaders | undefined;
  /** That request's server span, when spans are recorded: the call's span is its child. */
  readonly span?: Span | undefined;
  /**
   * Set by the transport while the call waits for a connection: removes it
   * from the queue (its requesters went away), so it is never sent. Returns
   * false once the call has started (it then runs to its end, and its answer
   * is cached).
   */
  withdraw?: (() => boolean) | undefined;
}

/** One POST to the endpoint, as client authentication left it. */
export interface OutboundCall {
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Receives notable events; the gateway logs them as warnings. */
export type IntrospectionWarn = (event: { code: string; status?: number; detail: string }) => void;

/**
 * Sends introspection calls over keep-alive connections and gives back the
 * raw answer (status, headers, and the body of a 200).
 *
 * Failures that are nobody's answer are thrown as `GatewayError`s: 503 for a
 * full queue, 429 for a client's full queue, 504 for timeouts, 502 for an
 * unreachable server or an answer over `maxAnswerBytes`.
 *
 * Connections: `connections` undici Clients, each running one call at a time,
 * behind a `FairScheduler` with as many slots. A slot is given back when
 * undici is done with the request, not when the caller got its answer, so a
 * call answered 504 while its connect still hangs keeps its slot: however the
 * server fails, there are never more than `connections` sockets to it. (An
 * undici Pool does not keep that bound: it drops a client whose connect
 * failed from its list but still feeds it queued requests, so each failed
 * connect let one more socket open, and `destroy()` could not reach those.)
 */
export class IntrospectionTransport {
  readonly #opts: TransportOptions;
  /** The injected dispatcher; undefined when the transport runs its own connections. */
  readonly #shared: Dispatcher | undefined;
  /** Own connections: idle ones, and all of them (at most `connections`). */
  readonly #idle: Client[] = [];
  readonly #clients: Client[] = [];
  readonly #connector: TrackedConnector | undefined;
  readonly #scheduler: FairScheduler<IntrospectionCall>;
  readonly #warn: IntrospectionWarn;

  constructor(opts: TransportOptions, warn: IntrospectionWarn = () => {}) {
    this.#opts = opts;
    this.#warn = warn;
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
        ...(opts.clientCertificate ? { cert: opts.clientCertificate.cert, key: opts.clientCertificate.key } : {}),
      });
    }
  }

  /**
   * Sends `call`. With `request`, the call waits (when every connection is
   * busy) in that client's queue, and may be refused at once when that queue
   * or the whole queue is full.
   */
  async send(outbound: OutboundCall, request?: IntrospectionRequest): Promise<RawAnswer> {
    const call = new IntrospectionCall(
      { origin: this.#opts.origin, path: outbound.path, method: 'POST', headers: outbound.headers, body: outbound.body },
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
    try {
      return await call.answer;
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
  }

  #transportError(err: unknown): GatewayError {
    const code = (err as { code?: string; name?: string })?.code;
    const name = (err as { name?: string })?.name;
    // TimeoutError: the timer bounding the whole call fired (IntrospectionCall).
    if (name === 'TimeoutError' || name === 'AbortError' || isUndiciTimeout(err)) {
      this.#warn({ code: 'ERR_INTROSPECTION_TIMEOUT', detail: `introspection timed out after ${this.#opts.timeoutMs} ms` });
      return new GatewayError('ERR_INTROSPECTION_TIMEOUT', { cause: err });
    }
    // A server refusing a client certificate closes the connection in or right
    // after the TLS handshake: no HTTP answer (and no 401) ever comes.
    const certificateHint = this.#opts.clientCertificate !== undefined && isClosedByPeer(code) ? CLIENT_CERTIFICATE_HINT : '';
    this.#warn({ code: 'ERR_INTROSPECTION_UNREACHABLE', detail: `introspection endpoint unreachable (${code ?? name ?? 'error'})${certificateHint}` });
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
      client = new Client(this.#opts.origin, {
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

const CLIENT_CERTIFICATE_HINT =
  ': if the server refuses the client certificate it closes the connection during the TLS handshake: check client_cert_file, client_key_file, ' +
  "that the server trusts the certificate's CA and the subject registered for client_id (tls_client_auth)";

/** How a connection the server closed or broke off in TLS shows: undici's "other side closed", a reset, a TLS alert. */
function isClosedByPeer(code: string | undefined): boolean {
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE' || (code !== undefined && /^ERR_SSL_.*ALERT/.test(code));
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

/** An answer as it came: the dialect decides what it means. */
export interface RawAnswer {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /** The body of a 200 or a 400; empty for other statuses, which are decided by status alone. */
  readonly body: Buffer;
}

const NO_BODY = Buffer.alloc(0);

/**
 * A 200 is the answer; a 400 may say why (RFC 6749 §5.2 `error`): one
 * server's `unsupported_token_type` is a statement about the token. Both are
 * read within the same bound.
 */
function keepsBody(status: number): boolean {
  return status === 200 || status === 400;
}

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
    if (!keepsBody(statusCode) && statusCode >= 200) this.#settle({ statusCode, headers, body: NO_BODY });
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#size += chunk.length;
    if (this.#size > this.#limit) {
      this.#fail(new GatewayError('ERR_INTROSPECTION_INVALID_ANSWER', { detail: `introspection answer larger than ${this.#limit} bytes` }));
      return;
    }
    if (keepsBody(this.#status)) this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    this.#free();
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    if (keepsBody(this.#status)) this.#settle({ statusCode: this.#status, headers: this.#headers, body: this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks) });
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
