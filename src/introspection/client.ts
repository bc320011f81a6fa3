import type { Dispatcher } from 'undici';
import type { JWTPayload } from 'jose';
import type { Span } from '@opentelemetry/api';
import { endHttpSpan, outboundTrace, startClientSpan, tracing } from '../observability/tracing.js';
import type { WarnChannel } from '../observability/warn-limiter.js';
import { GatewayError } from '../core/errors.js';
import type { Minter } from '../minting/minter.js';
import { clientSecretBasic, formEncode, type ClientAuthentication } from './client-auth.js';
import { InvalidAnswer, isPlainObject, jwsHeader, type Decoded, type Dialect, type InactiveReason } from './dialects/common.js';
import { jwtDialect } from './dialects/jwt.js';
import { StaticMetadata, type MetadataSource } from './metadata.js';
import { AMBIGUOUS, parseMaxAge, parseRetryAfter, singleHeader } from './parse.js';
import { IntrospectionTransport, WITHDRAWN, type IntrospectionRequest, type IntrospectionWarn, type RawAnswer } from './transport.js';
import type { IntrospectionOutcome, IntrospectionRecorder } from '../observability/metrics.js';

export { WITHDRAWN, type IntrospectionRequest, type IntrospectionWarn } from './transport.js';
export { formEncode } from './client-auth.js';
export type { InactiveReason } from './dialects/common.js';

export interface IntrospectionClientOptions {
  /** RFC 7662 introspection endpoint; or `metadata`, which may find it by discovery. */
  endpoint?: URL | undefined;
  /** Where the endpoint (and the server's JWKS and issuer) come from; default: `endpoint`. */
  metadata?: MetadataSource | undefined;
  clientId: string;
  /** For the default client authentication, `client_secret_basic`. */
  clientSecret?: string | undefined;
  /** How the gateway authenticates to the endpoint; default `client_secret_basic` with `clientId`/`clientSecret`. */
  auth?: ClientAuthentication | undefined;
  /** How answers are read; default `jwt` (Curity). */
  dialect?: Dialect | undefined;
  /** Mints the forwarded JWT when the dialect's answer has none (`json`, RFC 9701, `auto`). */
  minter?: Minter | undefined;
  /** The authorization server's issuer: an answer whose `iss` differs describes a token from elsewhere (401). */
  issuer?: string | undefined;
  /** Refuse answers that describe a refresh token, an ID token or another non-access token (401). */
  accessTokensOnly?: boolean | undefined;
  /** Bound on the whole call: queueing, connect, request, answer. */
  timeoutMs: number;
  /** `false` turns off TLS certificate verification (development only). */
  verifySsl: boolean;
  /** PEM file with the CA(s) to trust for the endpoint's certificate. */
  caFile?: string | undefined;
  /** Bound on the answer body; a JWT is usually well under 4 KiB. */
  maxAnswerBytes: number;
  /** Introspections running at once, and so the bound on connections to the authorization server. */
  connections: number;
  /** Introspections waiting for a connection, all clients together; past it: 503. Unbounded when absent. */
  maxQueued?: number | undefined;
  /** Introspections waiting for a connection for one client address; past it: 429. Unbounded when absent. */
  maxQueuedPerClient?: number | undefined;
  /** Dispatcher to use instead of private keep-alive connections (tests, proxies). */
  dispatcher?: Dispatcher | undefined;
  /** Clock for minting (tests). */
  now?: () => number;
  /** Told the outcome and duration of every introspection (metrics, readiness); undefined: off. */
  metrics?: IntrospectionRecorder | undefined;
  /**
   * Where outage warnings go (timeouts, unreachable, 5xx, 429, rejected or
   * invalid answers), rate-limited with a recovery line; without it they go
   * to the warn callback one by one.
   */
  outages?: WarnChannel | undefined;
}

/** Warnings about the endpoint failing (rate-limited through `outages`), as opposed to one-off notices. */
const OUTAGE_CODES: ReadonlySet<string> = new Set([
  'ERR_INTROSPECTION_TIMEOUT',
  'ERR_INTROSPECTION_UNREACHABLE',
  'ERR_INTROSPECTION_UNAVAILABLE',
  'ERR_INTROSPECTION_REJECTED',
  'ERR_INTROSPECTION_INVALID_ANSWER',
]);

/** An introspection answer, decoded: the JWT to forward and its claims, or inactive. */
export type IntrospectionAnswer =
  | {
      readonly active: true;
      readonly jwt: string;
      readonly claims: JWTPayload;
      /** Seconds from `Cache-Control: max-age`; 0 for `no-store`/`no-cache`; undefined when absent. */
      readonly maxAge: number | undefined;
    }
  | { readonly active: false; readonly reason: InactiveReason };

/**
 * An RFC 7662 client in three parts: the transport (the call, its timer,
 * bounds and connections), the client authentication (what each call
 * carries to prove it is the gateway) and the dialect (what the answer
 * means). It sends the token and the gateway's own credentials, nothing of
 * the client's request, and when the dialect's answer carries no JWT it has
 * one minted.
 *
 * Outcomes: an answer (active with JWT, or inactive), or a `GatewayError`
 * thrown for every failure that is not the token's fault: 502 for rejections
 * and garbage, 503 for 503/429, a full queue, or a server whose metadata is
 * not known yet, 429 for a client's full queue, 504 for timeouts.
 */
export class IntrospectionClient {
  readonly #opts: IntrospectionClientOptions;
  readonly #metadata: MetadataSource;
  readonly #auth: ClientAuthentication;
  readonly #dialect: Dialect;
  readonly #warn: IntrospectionWarn;
  readonly #headers: Readonly<Record<string, string>>;
  /** The transport to the endpoint's origin, made when the endpoint is known. */
  #transport: IntrospectionTransport | undefined;
  #transportOrigin = '';
  readonly #retired: IntrospectionTransport[] = [];
  #closed = false;
  /** A JWT without `exp` was reported (once per client, not per request). */
  #warnedNoExp = false;
  /** A sender-constrained token was reported (once per client). */
  #warnedBound = false;
  /** An answer from another issuer was reported (once per client). */
  #warnedIssuer = false;

  constructor(opts: IntrospectionClientOptions, warn: IntrospectionWarn = () => {}) {
    this.#opts = opts;
    const outages = opts.outages;
    this.#warn =
      outages === undefined ? warn : (e) => (OUTAGE_CODES.has(e.code) ? outages.fail(e.code, e.detail, e.status === undefined ? undefined : { status: e.status }) : warn(e));
    if (opts.metadata !== undefined) this.#metadata = opts.metadata;
    else if (opts.endpoint !== undefined) this.#metadata = new StaticMetadata({ introspectionEndpoint: opts.endpoint, issuer: opts.issuer });
    else throw new TypeError('"endpoint" or "metadata" option is required');
    this.#auth = opts.auth ?? clientSecretBasic(opts.clientId, opts.clientSecret ?? '');
    this.#dialect = opts.dialect ?? jwtDialect;
    if (this.#dialect.mints && opts.minter === undefined) throw new TypeError(`"minter" option is required for the ${this.#dialect.name} dialect`);
    this.#headers = Object.freeze({ accept: this.#dialect.accept, 'content-type': 'application/x-www-form-urlencoded' });
    const known = this.#metadata.current;
    if (known !== undefined) this.#transportFor(known.introspectionEndpoint);
  }

  /** The dialect answers are read in. */
  get dialect(): Dialect {
    return this.#dialect;
  }

  /** Whether the endpoint is known (it may wait for discovery). */
  get ready(): boolean {
    return this.#metadata.ready;
  }

  /**
   * Introspects `token`. With `request`, the call waits (when every
   * connection is busy) in that client's queue, and may be refused at once
   * when that queue or the whole queue is full.
   */
  introspect(token: string, request?: IntrospectionRequest): Promise<IntrospectionAnswer> {
    return this.#opts.metrics === undefined ? this.#introspect(token, request) : this.#measured(this.#opts.metrics, token, request);
  }

  async #measured(metrics: IntrospectionRecorder, token: string, request: IntrospectionRequest | undefined): Promise<IntrospectionAnswer> {
    const began = performance.now();
    const status = { code: 0 };
    try {
      const answer = await this.#introspect(token, request, status);
      metrics.record(answer.active ? 'active' : 'inactive', (performance.now() - began) / 1000);
      return answer;
    } catch (err) {
      metrics.record(outcomeOf(err, status.code), (performance.now() - began) / 1000);
      throw err;
    }
  }

  async #introspect(token: string, request?: IntrospectionRequest, status?: { code: number }): Promise<IntrospectionAnswer> {
    const metadata = this.#metadata.current ?? (await this.#metadata.get());
    const endpoint = metadata.introspectionEndpoint;
    const transport = this.#transportFor(endpoint);
    const creds = this.#auth.credentials({ issuer: metadata.issuer, tokenEndpoint: metadata.tokenEndpoint, endpoint: endpoint.href });
    const { headers, form } = creds instanceof Promise ? await creds : creds;
    let out = form === '' && Object.keys(headers).length === 0 ? this.#headers : { ...this.#headers, ...headers };
    // The trace context of the request that started the call; with spans recorded, this call's own span.
    let span: Span | undefined;
    let trace = request?.trace;
    if (request?.span !== undefined && tracing.on) {
      span = startClientSpan(`POST ${endpoint.pathname}`, request.span, 'POST', endpoint, { 'phantom_gateway.operation': 'introspection' });
      trace = outboundTrace(span, trace);
    }
    if (trace !== undefined) out = trace.tracestate === undefined ? { ...out, traceparent: trace.traceparent } : { ...out, traceparent: trace.traceparent, tracestate: trace.tracestate };
    let answered: number | undefined;
    try {
      const res = await transport.send({ path: endpoint.pathname + endpoint.search, headers: out, body: `token=${formEncode(token)}${form}` }, request);
      answered = res.statusCode;
      if (status !== undefined) status.code = answered;
      return await this.#decided(res);
    } catch (err) {
      if (span !== undefined) endHttpSpan(span, answered, (err as { code?: string }).code ?? 'error');
      span = undefined;
      throw err;
    } finally {
      if (span !== undefined) endHttpSpan(span, answered);
    }
  }

  /** What an answer's status says; the endpoint answered, so an outage being warned about is over. */
  async #decided(res: RawAnswer): Promise<IntrospectionAnswer> {
    const { statusCode, headers: answerHeaders } = res;
    if (statusCode === 200) {
      const a = await this.#answer(res);
      // A JSON answer without a JWT is the server's misconfiguration, warned about as such: not a recovery.
      if (this.#opts.outages?.failing === true && (a.active || a.reason !== 'no_jwt')) this.#opts.outages.ok();
      return a;
    }
    if (statusCode === 204) return this.#recovered(INACTIVE_NO_CONTENT);
    if (statusCode === 400 && isUnsupportedTokenType(res.body)) return this.#recovered(INACTIVE_REJECTED);
    if (statusCode === 503 || statusCode === 429) {
      this.#warn({ code: 'ERR_INTROSPECTION_UNAVAILABLE', status: statusCode, detail: 'authorization server is unavailable' });
      const retryAfter = parseRetryAfter(answerHeaders['retry-after']);
      throw new GatewayError('ERR_INTROSPECTION_UNAVAILABLE', retryAfter ? { retryAfter } : {});
    }
    const hint = statusCode === 401 || statusCode === 403 ? this.#auth.hint : `unexpected status ${statusCode} from the introspection endpoint`;
    this.#warn({ code: 'ERR_INTROSPECTION_REJECTED', status: statusCode, detail: hint });
    throw new GatewayError('ERR_INTROSPECTION_REJECTED', { detail: hint });
  }

  #recovered(a: IntrospectionAnswer): IntrospectionAnswer {
    if (this.#opts.outages?.failing === true) this.#opts.outages.ok();
    return a;
  }

  /**
   * Only a definite answer about the token is a decision; the dialect decides
   * what is one. Anything else in a 200 is the server's failure: 502, never
   * cached, never "invalid token", so a flapping server cannot turn good
   * tokens into remembered refusals.
   */
  async #answer(res: RawAnswer): Promise<IntrospectionAnswer> {
    const contentType = singleHeader(res.headers['content-type']);
    if (contentType === AMBIGUOUS) throw this.#invalid('introspection answer has two different Content-Type headers');
    const maxAge = parseMaxAge(res.headers['cache-control']);
    let decoded: Decoded;
    try {
      const d = this.#dialect.decode({ body: res.body.toString('utf8'), contentType });
      decoded = d instanceof Promise ? await d : d;
    } catch (err) {
      if (err instanceof InvalidAnswer) throw this.#invalid(err.message);
      throw err;
    }
    if (!decoded.active) {
      if (decoded.reason === 'no_jwt') {
        this.#warn({
          code: 'ERR_INTROSPECTION_INVALID_ANSWER',
          status: 200,
          detail: 'introspection answer is JSON without a JWT: set introspection_response: json to have the gateway mint one, or configure the authorization server to answer Accept: application/jwt',
        });
      }
      return decoded;
    }
    const rejected = this.#reject(decoded);
    if (rejected !== undefined) return rejected;
    if (decoded.jwt !== undefined) {
      if (decoded.claims.exp === undefined && !this.#warnedNoExp) {
        this.#warnedNoExp = true;
        this.#warn({
          code: 'WARN_JWT_WITHOUT_EXP',
          status: 200,
          detail: 'introspection JWT has no exp claim: such answers are cached at most token_cache_seconds (logged once per introspection client)',
        });
      }
      return { active: true, jwt: decoded.jwt, claims: decoded.claims, maxAge };
    }
    const minter = this.#opts.minter;
    if (minter === undefined) throw this.#invalid('introspection answer has no JWT and no signing key is configured to mint one');
    const minted = await minter.mint(decoded.claims, (this.#opts.now ?? Date.now)());
    // RFC 7662 servers mark their JSON `no-store` as RFC 6749 token answers
    // (oidc-provider, Okta): a rule for HTTP caches, which would leave
    // minted tokens never cached. The gateway's own token is kept as long as
    // token_cache_seconds and its exp allow; a positive max-age still bounds it.
    return { active: true, jwt: minted.jwt, claims: minted.claims, maxAge: maxAge === 0 ? undefined : maxAge };
  }

  /**
   * Answer-level checks: a token from another issuer, or one that is not an
   * access token, is not a token for this gateway. Such answers are definite
   * (and remembered as inactive), not failures.
   */
  #reject(decoded: Extract<Decoded, { active: true }>): IntrospectionAnswer | undefined {
    const issuer = this.#opts.issuer;
    // RFC 7662 makes `iss` optional: an answer without one is the server
    // speaking of its own token. One naming another issuer is refused.
    const iss = decoded.claims.iss;
    if (issuer !== undefined && iss !== undefined && iss !== issuer) {
      if (!this.#warnedIssuer) {
        this.#warnedIssuer = true;
        this.#warn({
          code: 'WARN_TOKEN_ISSUER',
          status: 200,
          detail: `introspection answer has iss ${JSON.stringify(String(iss)).slice(0, 200)}, not the configured issuer ${JSON.stringify(issuer)}: such tokens are refused (if every token is, check the issuer's exact spelling, trailing slash included; logged once per introspection client)`,
        });
      }
      return INACTIVE_REJECTED;
    }
    if (this.#opts.accessTokensOnly && !isAccessToken(decoded)) return INACTIVE_REJECTED;
    // A sender-constrained token is bound to a key (DPoP, RFC 9449 §6) or a
    // client certificate (RFC 8705 §3), and is usable only with proof of it.
    // The gateway checks those two bindings on every request (jkt against
    // the DPoP proof's key, x5t#S256 against the client certificate). Any
    // other confirmation method (RFC 7800 jwk, jwe, kid, jku) it cannot
    // check: taken as a bearer token it would work for whoever stole it
    // (RFC 9449 §7.2), so such a token is refused.
    const cnf = decoded.claims.cnf as Record<string, unknown> | undefined;
    if (cnf !== undefined && Object.keys(cnf).length > 0 && !checkableBinding(cnf)) {
      if (!this.#warnedBound) {
        this.#warnedBound = true;
        this.#warn({
          code: 'WARN_SENDER_CONSTRAINED_TOKEN',
          status: 200,
          detail: `introspection answer describes a token bound by cnf member(s) ${Object.keys(cnf).slice(0, 8).map((k) => JSON.stringify(k.slice(0, 32))).join(', ')}: refused, as the gateway checks only cnf.jkt (DPoP) and cnf["x5t#S256"] (certificate-bound tokens), each a SHA-256 thumbprint (logged once per introspection client)`,
        });
      }
      return INACTIVE_REJECTED;
    }
    return undefined;
  }

  #invalid(detail: string): GatewayError {
    this.#warn({ code: 'ERR_INTROSPECTION_INVALID_ANSWER', status: 200, detail });
    return new GatewayError('ERR_INTROSPECTION_INVALID_ANSWER', { detail });
  }

  /** The transport to `endpoint`'s origin; a changed origin (new metadata) gets a new one. */
  #transportFor(endpoint: URL): IntrospectionTransport {
    if (this.#transport !== undefined && this.#transportOrigin === endpoint.origin) return this.#transport;
    if (this.#closed) throw new GatewayError('ERR_INTROSPECTION_UNREACHABLE', { detail: 'introspection client closed' });
    if (this.#transport !== undefined) {
      const old = this.#transport;
      this.#retired.push(old);
      void old.close();
    }
    const o = this.#opts;
    this.#transportOrigin = endpoint.origin;
    this.#transport = new IntrospectionTransport(
      {
        origin: endpoint.origin,
        timeoutMs: o.timeoutMs,
        verifySsl: o.verifySsl,
        caFile: o.caFile,
        clientCertificate: this.#auth.clientCertificate,
        maxAnswerBytes: o.maxAnswerBytes,
        connections: o.connections,
        maxQueued: o.maxQueued,
        maxQueuedPerClient: o.maxQueuedPerClient,
        dispatcher: o.dispatcher,
      },
      this.#warn,
    );
    return this.#transport;
  }

  /** Sockets to the authorization server right now, connecting ones included (own connections only). */
  get sockets(): number {
    return this.#transport?.sockets ?? 0;
  }

  /** Introspections running, and waiting for a connection. */
  get load(): { running: number; queued: number } {
    return this.#transport?.load ?? { running: 0, queued: 0 };
  }

  /** Graceful stop: calls waiting for a connection fail at once, calls running finish. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#metadata.close();
    await Promise.all([this.#transport?.close(), ...this.#retired.map((t) => t.close())]);
  }

  /** Stops at once: calls in flight fail (as unreachable), and connects still pending are cut. */
  async destroy(): Promise<void> {
    this.#closed = true;
    this.#metadata.close();
    await Promise.all([this.#transport?.destroy(), ...this.#retired.map((t) => t.destroy())]);
  }
}

const INACTIVE_NO_CONTENT: IntrospectionAnswer = Object.freeze({ active: false, reason: 'no_content' });
const INACTIVE_REJECTED: IntrospectionAnswer = Object.freeze({ active: false, reason: 'rejected' });

/**
 * Values that name something other than an access token, in the members
 * servers use to say what a token is: RFC 7662 `token_type` (RFC 8693 URIs,
 * Duende's `refresh_token`), `token_use` (Ory Hydra: `access_token` or
 * `refresh_token`; Amazon Cognito JWTs: `access` or `id`) and Keycloak's `typ`
 * claim (`Bearer`, `DPoP`; `Refresh`, `Offline`, `ID`, `Logout`,
 * `Serialized-ID` for the others). Compared lowercased. oidc-provider marks a
 * refresh token only by leaving `token_type` out, which access tokens of other
 * servers do too: that one cannot be told apart here (its `allowedPolicy` can
 * refuse to describe refresh tokens to the gateway).
 */
const NOT_ACCESS_TOKEN_TYPES = new Set([
  'refresh_token',
  'id_token',
  'urn:ietf:params:oauth:token-type:refresh_token',
  'urn:ietf:params:oauth:token-type:id_token',
  'refresh',
  'offline',
  'id',
  'logout',
  'serialized-id',
]);
/** JWT header `typ` values of access tokens (RFC 9068 §2.1, and the generic ones). */
const ACCESS_TOKEN_JWT_TYPES = new Set(['at+jwt', 'application/at+jwt', 'jwt', 'application/jwt']);

/**
 * Whether an answer describes an access token: no `token_type`, `token_use`
 * or `typ` of a refresh or ID token, and a forwarded JWT whose header `typ`,
 * when set, is that of an access token (not an ID token's `id_token+jwt`, a
 * logout token, a SET, an RFC 9701 answer...).
 */
function isAccessToken(decoded: Extract<Decoded, { active: true }>): boolean {
  const claims = decoded.claims as Record<string, unknown>;
  for (const member of TYPE_MEMBERS) {
    const v = claims[member];
    if (typeof v === 'string' && NOT_ACCESS_TOKEN_TYPES.has(v.toLowerCase())) return false;
  }
  if (decoded.jwt !== undefined) {
    const header = jwsHeader(decoded.jwt);
    if (!isPlainObject(header)) return false;
    const t = header.typ;
    if (t !== undefined && (typeof t !== 'string' || !ACCESS_TOKEN_JWT_TYPES.has(t.toLowerCase()))) return false;
  }
  return true;
}
const TYPE_MEMBERS = ['token_type', 'token_use', 'typ'] as const;

/**
 * A 400 whose RFC 6749 §5.2 `error` is `unsupported_token_type`: the server
 * does not introspect tokens of this kind (oidc-provider says so for any
 * token shaped like a JWT, an ID token for one), so it is no access token of
 * this server: 401, remembered like any inactive token. Any other 400 is a
 * request the server could not take, the gateway's problem: 502.
 */
function isUnsupportedTokenType(body: Buffer): boolean {
  if (body.length === 0 || body.length > 4096) return false;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return isPlainObject(parsed) && parsed.error === 'unsupported_token_type';
  } catch {
    return false;
  }
}

/** The metrics outcome of a failed introspection (`status`: the HTTP status answered, 0 when none). */
function outcomeOf(err: unknown, status: number): IntrospectionOutcome {
  if (err === WITHDRAWN) return 'withdrawn';
  if (!(err instanceof GatewayError)) return 'error';
  switch (err.code) {
    case 'ERR_INTROSPECTION_TIMEOUT':
      return 'timeout';
    case 'ERR_INTROSPECTION_UNREACHABLE':
      return 'unreachable';
    case 'ERR_INTROSPECTION_UNAVAILABLE':
      return 'unavailable';
    case 'ERR_INTROSPECTION_REJECTED':
      return status >= 500 ? 'server_error' : 'rejected';
    case 'ERR_INTROSPECTION_INVALID_ANSWER':
      return 'invalid_answer';
    case 'ERR_INTROSPECTION_OVERLOADED':
      return 'overloaded';
    case 'ERR_TOO_MANY_INTROSPECTIONS':
      return 'client_queue_full';
    case 'ERR_INTROSPECTION_NOT_READY':
      return 'not_ready';
    default:
      return 'error';
  }
}

/** A SHA-256 thumbprint, base64url without padding (RFC 7638, RFC 8705 §3.1). */
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

/** Whether `cnf` holds only bindings the gateway checks (jkt, x5t#S256), each a well-formed thumbprint. */
function checkableBinding(cnf: Record<string, unknown>): boolean {
  for (const [k, v] of Object.entries(cnf)) {
    if (k !== 'jkt' && k !== 'x5t#S256') return false;
    if (typeof v !== 'string' || !THUMBPRINT.test(v)) return false;
  }
  return true;
}
