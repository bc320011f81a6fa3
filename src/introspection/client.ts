import { readFileSync } from 'node:fs';
import { Pool, type Dispatcher } from 'undici';
import type { JWTPayload } from 'jose';
import { GatewayError } from '../core/errors.js';
import { isUndiciTimeout } from '../net/timeouts.js';
import { AMBIGUOUS, hasDuplicateKeys, parseMaxAge, parseRetryAfter, singleHeader, type HeaderValue } from './parse.js';

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
  /** Outbound connections kept to the authorization server. */
  connections: number;
  /** Dispatcher to use instead of a private keep-alive Pool (tests, proxies). */
  dispatcher?: Dispatcher;
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
 * and garbage, 503 for 503/429, 504 for timeouts.
 */
export class IntrospectionClient {
  readonly #opts: IntrospectionClientOptions;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
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
    if (opts.dispatcher) {
      this.#dispatcher = opts.dispatcher;
      this.#ownsDispatcher = false;
    } else {
      const connect: Record<string, unknown> = { timeout: opts.timeoutMs };
      if (!opts.verifySsl) connect.rejectUnauthorized = false;
      if (opts.caFile) connect.ca = readFileSync(opts.caFile);
      // A Pool, not an Agent: one origin, and an Agent's close() forgets its
      // connections, so a destroy() after it (the end of a graceful stop)
      // could not cut a call still waiting on a slow authorization server.
      this.#dispatcher = new Pool(opts.endpoint.origin, {
        connections: opts.connections,
        keepAliveTimeout: 30_000,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs,
        connect,
      });
      this.#ownsDispatcher = true;
    }
  }

  async introspect(token: string): Promise<IntrospectionAnswer> {
    let res: RawAnswer;
    try {
      res = await new Promise<RawAnswer>((resolve, reject) => {
        const call = new IntrospectionCall(resolve, reject, this.#opts.timeoutMs, this.#opts.maxAnswerBytes);
        this.#dispatcher.dispatch({ origin: this.#origin, path: this.#path, method: 'POST', headers: this.#headers, body: `token=${formEncode(token)}` }, call);
      });
    } catch (err) {
      if (err instanceof GatewayError) {
        this.#warn({ code: err.code, status: 200, detail: err.message });
        throw err;
      }
      throw this.#transportError(err);
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

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  /** Stops at once: calls in flight fail (as unreachable). */
  async destroy(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.destroy();
  }
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
 * One introspection call as an undici dispatch handler: no response stream,
 * no AbortSignal, one timer. The timer bounds the whole exchange, queueing
 * included: the caller gets its 504 on time even while the request still
 * waits for a connection (it is then aborted as soon as undici starts it).
 * The body is kept only for a 200 and never beyond `limit` bytes. Any other
 * status settles the call at once, but the timer and the size bound still
 * apply to the rest of its body: an error page that drips or stalls must not
 * hold one of the few connections to the authorization server.
 */
class IntrospectionCall implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | undefined;
  #resolve: ((a: RawAnswer) => void) | undefined;
  #reject: ((err: unknown) => void) | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #limit: number;
  /** The exchange is over: answered in full, failed, or cut. */
  #done = false;
  #abortWith: Error | undefined;
  #status = 0;
  #headers: Record<string, string | string[] | undefined> = {};
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(resolve: (a: RawAnswer) => void, reject: (err: unknown) => void, timeoutMs: number, limit: number) {
    this.#resolve = resolve;
    this.#reject = reject;
    this.#limit = limit;
    this.#timer = setTimeout(() => this.#fail(new TimeoutError(timeoutMs)), timeoutMs);
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
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    if (this.#status === 200) this.#settle({ statusCode: 200, headers: this.#headers, body: this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks) });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.#fail(err);
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
    } else {
      this.#abortWith = err; // undici has not started it yet: as soon as it does
    }
    const reject = this.#reject;
    this.#resolve = this.#reject = undefined;
    reject?.(err);
  }
}

/** The bound on the whole introspection call fired. */
class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
  constructor(ms: number) {
    super(`introspection took longer than ${ms} ms`);
  }
}
