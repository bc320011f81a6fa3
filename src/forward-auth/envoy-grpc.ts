import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { GatewayConfig } from '../config/schema.js';
import { decide, withdraw, type Decision, type DecisionRequest } from '../core/decide.js';
import { GatewayError, refusal } from '../core/errors.js';
import { createGuards, type Guards } from '../core/guards.js';
import { ENVOY } from '../observability/doors.js';
import { renderRefusal } from '../core/render.js';
import type { Logger } from '../observability/logger.js';
import { requestId } from '../observability/request-id.js';
import { traceHeaders } from '../observability/trace-context.js';
import { TrustedProxies, unmapped } from '../net/addresses.js';
import { isMethodOverride } from '../routing/method-override.js';
import { IdentityHeaders } from './identity.js';
import { certThumbprint, clientCertFromHeader } from '../net/client-cert.js';
import { requestUrl } from '../routing/request-target.js';
import { DPOP_VERIFIED } from '../core/sender.js';

/*
 * Envoy's external authorization over gRPC: `envoy.service.auth.v3.Authorization/Check`.
 * Envoy sends what it knows of a request (method, target, headers, peer);
 * this service asks the shared engine (`decide`) and translates its decision:
 * OK with `Authorization: Bearer <jwt>` replacing the client's, or a denial
 * carrying the status, headers and JSON body every front door sends.
 */

/** The `.proto` files (the subset of Envoy's API used here), beside `src/` and `dist/` alike. */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));
/** The file declaring the service, relative to `PROTO_DIR`. */
export const EXTERNAL_AUTH_PROTO = 'envoy/service/auth/v3/external_auth.proto';

/** How the messages are read and written (snake_case names as in Envoy's API, enums as numbers). */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: true,
  longs: String,
  enums: Number,
  defaults: false,
  oneofs: false,
  includeDirs: [PROTO_DIR],
});

/** gRPC status codes (google.rpc.Code) a Check answers with. */
export const GrpcCode = Object.freeze({
  OK: 0,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
});

/** `HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD`. */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/**
 * The CheckResponse status for a refusal's HTTP status, after the HTTP
 * mapping of google.rpc.Code: 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
 * 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 502 and 503 UNAVAILABLE, 504
 * DEADLINE_EXCEEDED, any other 4xx INVALID_ARGUMENT, any other 5xx INTERNAL.
 * Never OK: any other code than OK is a denial to Envoy. The HTTP status the
 * client gets is `denied_response.status`; this code is what Envoy's stats
 * and access logs show.
 */
export function grpcCodeFor(httpStatus: number): number {
  switch (httpStatus) {
    case 401:
      return GrpcCode.UNAUTHENTICATED;
    case 403:
      return GrpcCode.PERMISSION_DENIED;
    case 404:
      return GrpcCode.NOT_FOUND;
    case 429:
      return GrpcCode.RESOURCE_EXHAUSTED;
    case 502:
    case 503:
      return GrpcCode.UNAVAILABLE;
    case 504:
      return GrpcCode.DEADLINE_EXCEEDED;
    default:
      return httpStatus < 500 ? GrpcCode.INVALID_ARGUMENT : GrpcCode.INTERNAL;
  }
}

// The decoded messages (proto-loader with PROTO_LOADER_OPTIONS: absent fields are undefined).

export interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer;
}

export interface CheckRequest {
  attributes?: {
    source?: { address?: { socket_address?: { address?: string; port_value?: number } }; certificate?: string };
    request?: {
      http?: {
        method?: string;
        path?: string;
        host?: string;
        scheme?: string;
        headers?: Record<string, string>;
        header_map?: { headers?: HeaderValue[] };
        body?: string;
        raw_body?: Buffer;
      };
    };
  };
}

export interface HeaderValueOption {
  header: { key: string; value: string };
  append: { value: boolean };
  append_action: number;
}

export interface CheckResponse {
  status: { code: number; message?: string };
  ok_response?: { headers: HeaderValueOption[]; headers_to_remove?: string[] };
  denied_response?: { status: { code: number }; headers: HeaderValueOption[]; body: string };
}

/** A request that could not be decoded, or lacks `attributes.request.http`. */
const MALFORMED = refusal('ERR_MALFORMED_REQUEST');
const INTERNAL = refusal('ERR_INTERNAL');
const TOO_MANY_HEADERS = refusal('ERR_TOO_MANY_HEADERS');
const HEADERS_TOO_LARGE = refusal('ERR_HEADERS_TOO_LARGE');
/** A part of a joined `Authorization` value that is a Bearer credential. */
const BEARER = /^\s*bearer\s/i;

/**
 * The largest Check message read: `server.max_header_bytes` four times over
 * (each header's protobuf framing, `value` beside `raw_value`, the path in
 * `:path` and `http.path`) plus 64 KiB for the rest of the attributes
 * (addresses, a client certificate, metadata). A larger one is refused by
 * grpc-js (RESOURCE_EXHAUSTED) before it is read.
 */
export function maxCheckBytes(config: GatewayConfig): number {
  return 4 * config.server.max_header_bytes + 64 * 1024;
}
/** HTTP/2 streams (concurrent Checks) per Envoy connection; Envoy opens another connection past it. */
export const MAX_CONCURRENT_CHECKS = 1000;
/** What the deserializer returns for bytes that are not a CheckRequest. */
const UNDECODABLE: unique symbol = Symbol('undecodable');

/**
 * A header Envoy is to set, replacing any value it has: `append_action:
 * OVERWRITE_IF_EXISTS_OR_ADD` for current Envoys, and the deprecated
 * `append: false` for older ones, which read only that (current Envoys give
 * `append`, when present, precedence, and read false as overwrite too).
 * Never an append: a client's own `Authorization` must not survive beside the JWT.
 */
function overwrite(key: string, value: string): HeaderValueOption {
  return { header: { key, value }, append: { value: false }, append_action: OVERWRITE_IF_EXISTS_OR_ADD };
}

const denials = new WeakMap<GatewayError, CheckResponse>();

/** The denial for a refusal: `renderRefusal`'s status, headers and body (built once per shared refusal). */
export function deniedResponse(err: GatewayError): CheckResponse {
  let r = denials.get(err);
  if (r !== undefined) return r;
  const rendered = renderRefusal(err);
  const headers: HeaderValueOption[] = [];
  // Envoy frames the local reply it sends, so its own length is the one that counts.
  for (const [k, v] of Object.entries(rendered.headers)) if (k !== 'content-length') headers.push(overwrite(k, v));
  r = Object.freeze({
    status: { code: grpcCodeFor(rendered.status) },
    denied_response: { status: { code: rendered.status }, headers, body: rendered.body },
  });
  denials.set(err, r);
  return r;
}

/** Whatever the decision: a client's Client-Cert never reaches the upstream (at the proxy, only the gateway sends one). */
const NO_CLIENT_CERT = Object.freeze(['client-cert', 'client-cert-chain']);
/** A request without a verified proof: neither the client's DPoP nor its X-DPoP-Verified reaches the upstream. */
const NO_PROOF = Object.freeze(['dpop', DPOP_VERIFIED, ...NO_CLIENT_CERT]);
/** An open route with `forward_authorization`: the client's Authorization and DPoP pass as they are; X-DPoP-Verified never. */
const OPEN: CheckResponse = Object.freeze({ status: { code: GrpcCode.OK }, ok_response: { headers: [], headers_to_remove: [DPOP_VERIFIED, ...NO_CLIENT_CERT] } });
/** An open route without `forward_authorization`: the client's Authorization (the opaque token) and its proof do not reach the upstream. */
const OPEN_DROPPING: CheckResponse = Object.freeze({ status: { code: GrpcCode.OK }, ok_response: { headers: [], headers_to_remove: ['authorization', ...NO_PROOF] } });
/** A CORS preflight: no credentials to swap; no proof passes either. */
const PREFLIGHT: CheckResponse = Object.freeze({ status: { code: GrpcCode.OK }, ok_response: { headers: [], headers_to_remove: [...NO_PROOF] } });

/**
 * What a decision becomes on the wire. An allow with a token overwrites
 * `Authorization` with the JWT (`Bearer` or `DPoP`, per the route's
 * `dpop.forward`); with a verified proof to hand on (`dpop.forward: dpop`)
 * it also sets `DPoP` (the client's proof) and `X-DPoP-Verified` (its key's
 * thumbprint), otherwise it removes both. With `identity` (from
 * `forward_auth.identity_headers`), an allow also sets each identity header
 * its token's claims give (overwriting a client's copy) and removes every
 * other one, so that a client's own copy never reaches the API.
 */
export function checkResponse(d: Decision, identity?: IdentityHeaders, underscored: readonly string[] = []): CheckResponse {
  if (!d.allow) return deniedResponse(d.error);
  if (d.token === undefined) {
    // An open route or a CORS preflight: nothing to swap, the request passes as it is (an open route's Authorization removed).
    const base = d.route.guard !== undefined ? PREFLIGHT : d.route.config.forward_authorization ? OPEN : OPEN_DROPPING;
    if (identity === undefined && underscored.length === 0) return base;
    return { status: base.status, ok_response: { headers: [], headers_to_remove: [...(identity?.names ?? []), ...base.ok_response!.headers_to_remove!, ...underscored] } };
  }
  const headers: HeaderValueOption[] = [overwrite('authorization', d.token.authorization)];
  const proof = d.token.dpop;
  if (proof !== undefined) headers.push(overwrite('dpop', proof.proof), overwrite(DPOP_VERIFIED, proof.jkt));
  const remove: string[] = [];
  if (identity !== undefined) {
    const pairs: string[] = [];
    identity.append(d.token, pairs);
    // Names only: a claim value spelled like another identity header's name must not spare that header.
    const set = new Set<string>();
    for (let i = 0; i < pairs.length; i += 2) {
      headers.push(overwrite(pairs[i]!, pairs[i + 1]!));
      set.add(pairs[i]!);
    }
    for (const n of identity.names) if (!set.has(n)) remove.push(n);
  }
  remove.push(...(proof === undefined ? NO_PROOF : NO_CLIENT_CERT), ...underscored);
  return { status: { code: GrpcCode.OK }, ok_response: { headers, headers_to_remove: remove } };
}

export interface EnvoyAuthDeps {
  logger: Logger;
  /**
   * The engine to decide with, shared with the other front doors (one cache,
   * one single-flight); its owner closes it. Without it the service builds
   * its own from `config` and closes it on `close()`.
   */
  guards?: Guards;
}

/** What the service knows of one Check besides the message: who sent it. */
export interface CheckContext {
  /** The gRPC peer (Envoy), the client address of last resort. */
  readonly peer?: string;
  /** The guards to decide with (the service's current ones by default). */
  readonly guards?: Guards;
  /**
   * Filled in by `decide`: the request's header names that are an `_`
   * spelling of a header the gateway sets (`x_dpop_verified`): Envoy passes
   * them on, and CGI-style upstreams read them as the real one.
   */
  underscored?: string[];
}

/** Headers the gateway sets or vouches for; a client's copy in any spelling never reaches the upstream. */
const GATEWAY_SET = new Set(['authorization', 'dpop', DPOP_VERIFIED, 'client-cert', 'client-cert-chain']);

/**
 * Envoy's `ext_authz` filter over gRPC, on the shared engine. Each Check is
 * one `decide()`: the same target checks, routes, per-route `phantom_token`
 * settings, credential rules and cache as the reverse proxy.
 *
 * - Method from `attributes.request.http.method`; target from `http.path`
 *   (path and query, as received).
 * - Headers from `http.header_map` when Envoy sends it (`encode_raw_headers`:
 *   one entry per header line, each `authorization` entry one credential),
 *   else from `http.headers` (Envoy joins a repeated header's values with
 *   `,`). A Bearer token never contains a comma, so a joined `Authorization`
 *   value with several comma-separated parts, one of which looks like a
 *   Bearer credential, is several credentials (two are refused like two
 *   `Authorization` headers, 401 `invalid_request`); a lone Digest or AWS
 *   SigV4 credential, whose parameters hold commas, is one.
 * - More than `server.max_headers` headers, or headers over
 *   `server.max_header_bytes`: 431, as at the HTTP listeners; a message
 *   over `maxCheckBytes()` is not read at all.
 * - Sender-constrained tokens: the `dpop` header's proofs (a joined value
 *   split on `,`, which a proof never holds), the URL for `htu` from Envoy's
 *   `:scheme`, `:authority` and the path, the client certificate from
 *   `attributes.source.certificate` (Envoy's `include_peer_certificate`).
 * - Client address (introspection queues are bounded per address): the
 *   downstream peer Envoy reports (`attributes.source.address`), or, when that
 *   peer is in `trusted_proxies`, the right-most `X-Forwarded-For` entry that
 *   is not, as in the proxy.
 * - A request that cannot be decoded, or lacks `attributes.request.http` or
 *   its method, is denied with 400 (`ERR_MALFORMED_REQUEST`), never answered
 *   with a gRPC error: Envoy's `failure_mode_allow` would let such a request
 *   through.
 * - A call cancelled by Envoy, or past its deadline, withdraws its token from
 *   the introspection queue when nobody else waits for it.
 *
 * @example
 * const envoy = new EnvoyAuthService(config, { logger, guards });
 * const { port } = await envoy.listen(9191, '127.0.0.1');
 * // ...
 * await envoy.close();
 */
export class EnvoyAuthService {
  readonly server: grpc.Server;
  readonly config: GatewayConfig;
  guards: Guards;
  readonly logger: Logger;
  readonly #ownsGuards: boolean;
  readonly #trusted: TrustedProxies | undefined;
  readonly #accessLog: boolean;
  readonly #identity: IdentityHeaders | undefined;

  constructor(config: GatewayConfig, deps: EnvoyAuthDeps) {
    this.config = config;
    this.logger = deps.logger;
    this.#ownsGuards = deps.guards === undefined;
    this.guards = deps.guards ?? createGuards(config, deps);
    this.#accessLog = config.log.access_log && this.logger.isLevelEnabled('info');
    this.#trusted = TrustedProxies.from(config.trusted_proxies);
    const ids = config.forward_auth?.identity_headers;
    this.#identity = ids !== undefined && Object.keys(ids).length > 0 ? new IdentityHeaders(ids) : undefined;

    const pkg = protoLoader.loadSync(EXTERNAL_AUTH_PROTO, PROTO_LOADER_OPTIONS);
    const def = pkg['envoy.service.auth.v3.Authorization'] as grpc.ServiceDefinition;
    const check = def.Check!;
    const decodeRequest = check.requestDeserialize;
    // Bytes that are not a CheckRequest get a denial, not a gRPC error.
    const service: grpc.ServiceDefinition = {
      Check: {
        ...check,
        requestDeserialize: (bytes: Buffer) => {
          try {
            return decodeRequest(bytes);
          } catch {
            return UNDECODABLE;
          }
        },
      },
    };
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': maxCheckBytes(config),
      'grpc.max_concurrent_streams': MAX_CONCURRENT_CHECKS,
    });
    this.server.addService(service, {
      Check: (call: grpc.ServerUnaryCall<CheckRequest | typeof UNDECODABLE, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>) => this.#handle(call, callback),
    });
  }

  #handle(call: grpc.ServerUnaryCall<CheckRequest | typeof UNDECODABLE, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>): void {
    const start = this.#accessLog ? performance.now() : 0;
    // The guards deciding this check, kept to its end: a reload may switch this.guards meanwhile.
    const guards = this.guards;
    const req = call.request;
    let method = '-';
    let path = '-';
    // Envoy's own x-request-id (it sets one on every request), for the access log.
    let id: string | undefined;
    let d: Decision | Promise<Decision>;
    const ctx: CheckContext = { peer: call.getPeer(), guards };
    try {
      const http = req === UNDECODABLE ? undefined : req?.attributes?.request?.http;
      method = typeof http?.method === 'string' && http.method !== '' ? http.method : '-';
      path = logPath(http?.path);
      if (this.#accessLog) id = envoyRequestId(http);
      d = this.decide(req === UNDECODABLE ? undefined : req, ctx);
    } catch (err) {
      return callback(null, this.#failed(err, method, path, start, id, guards));
    }
    if (!(d instanceof Promise)) {
      let r: CheckResponse;
      try {
        r = this.#answer(d, method, path, start, false, id, guards, ctx.underscored);
      } catch (err) {
        r = this.#failed(err, method, path, start, id, guards);
      }
      return callback(null, r);
    }
    // Envoy gave up (its timeout, the client went away) or the deadline
    // passed: grpc-js has already told Envoy; the token leaves the
    // introspection queue unless another request waits for it.
    const pending = d;
    call.once('cancelled', () => withdraw(pending));
    let answered = false;
    pending
      .then(
        (x) => {
          const r = this.#answer(x, method, path, start, call.cancelled, id, guards, ctx.underscored);
          answered = true;
          if (!call.cancelled) callback(null, r);
        },
        (err: unknown) => {
          const r = this.#failed(err, method, path, start, id, guards);
          answered = true;
          if (!call.cancelled) callback(null, r);
        },
      )
      .catch((err: unknown) => {
        // A bug on the asynchronous path must not become an unhandled rejection that ends the process.
        this.logger.error({ err }, 'internal error during an Envoy check');
        if (!answered && !call.cancelled) callback(null, deniedResponse(INTERNAL));
      });
  }

  /**
   * The decision for one CheckRequest (`undefined`: it could not be decoded).
   * Synchronous when the answer is known. Exposed for tests and embedding.
   */
  decide(req: CheckRequest | undefined, ctx: CheckContext = {}): Decision | Promise<Decision> {
    const attributes = req?.attributes;
    const http = attributes?.request?.http;
    if (http === undefined || http === null || typeof http.method !== 'string' || http.method === '') {
      return { allow: false, error: MALFORMED, route: undefined, cache: '-', ttl: 0 };
    }
    const { headers, joined, count, bytes } = readHeaders(http);
    if (count > this.config.server.max_headers) return { allow: false, error: TOO_MANY_HEADERS, route: undefined, cache: '-', ttl: 0 };
    if (bytes > this.config.server.max_header_bytes) return { allow: false, error: HEADERS_TOO_LARGE, route: undefined, cache: '-', ttl: 0 };
    const authorization: string[] = [];
    for (const v of headers.get('authorization') ?? []) {
      // `headers` joins repeated lines with ","; a Bearer b64token never holds one,
      // while one Digest or AWS SigV4 credential does (its parameters).
      if (joined) {
        const parts = v.split(',');
        if (parts.length > 1 && parts.some((p) => BEARER.test(p))) {
          authorization.push(...parts);
          continue;
        }
      }
      authorization.push(v);
    }
    let methodOverride = false;
    for (const name of headers.keys()) {
      if (isMethodOverride(name)) methodOverride = true;
      if (name.includes('_') && GATEWAY_SET.has(name.replaceAll('_', '-'))) (ctx.underscored ??= []).push(name);
    }
    const contentLength = headers.get('content-length');
    const hasBody =
      (contentLength !== undefined && contentLength.some((v) => v.trim() !== '0')) ||
      headers.has('transfer-encoding') ||
      (http.body !== undefined && http.body !== '') ||
      (http.raw_body !== undefined && http.raw_body.length > 0);
    const source = attributes?.source?.address?.socket_address?.address;
    // A DPoP proof (a compact JWS) holds no comma: a joined value with one is several proofs, refused like two DPoP lines.
    const dpop: string[] = [];
    for (const v of headers.get('dpop') ?? []) {
      if (joined) for (const part of v.split(',')) dpop.push(part.trim());
      else dpop.push(v);
    }
    const target = http.path ?? '';
    return decide(
      ctx.guards ?? this.guards,
      new EnvoyCheck(
        {
          method: http.method,
          target,
          authorization,
          preflight: headers.has('origin') && headers.has('access-control-request-method'),
          hasBody,
          methodOverride,
          clientAddress: this.#clientAddress(source !== undefined && source !== '' ? source : (ctx.peer ?? ''), headers.get('x-forwarded-for')),
          // Passed on to the introspection (a repeated traceparent is none).
          traceHeaders: headers.get('traceparent')?.length === 1 ? traceHeaders(headers.get('traceparent')![0], headers.get('tracestate')?.join(',')) : undefined,
          dpop,
        },
        headers,
        http,
        attributes?.source?.certificate,
      ),
    );
  }

  #answer(d: Decision, method: string, path: string, start: number, cancelled: boolean, id: string | undefined, guards: Guards, underscored?: readonly string[]): CheckResponse {
    guards.routeMetrics?.request(ENVOY, d.route?.index ?? -1, cancelled ? 499 : d.allow ? 200 : d.error.status, cancelled ? 'client_closed' : d.allow ? undefined : d.error.code);
    if (this.#accessLog) {
      const ms = elapsed(start);
      const route = d.route?.config.path;
      // Nobody got this answer: logged as nginx's 499, like the proxy's clients that went away.
      if (cancelled) this.logger.info({ front_door: 'envoy_grpc', method, path, status: 499, ms, cache: d.cache, code: 'client_closed', request_id: id, route }, 'check');
      else if (d.allow) this.logger.info({ front_door: 'envoy_grpc', method, path, status: 200, ms, cache: d.cache, request_id: id, route, client_id: d.token?.clientId?.slice(0, 256) }, 'check');
      else this.logger.info({ front_door: 'envoy_grpc', method, path, status: d.error.status, ms, cache: d.cache, code: d.error.code, request_id: id, route }, 'check');
    }
    return checkResponse(d, this.#identity, underscored);
  }

  #failed(err: unknown, method: string, path: string, start: number, id: string | undefined, guards: Guards): CheckResponse {
    this.logger.error({ err }, 'internal error during an Envoy check');
    return this.#answer({ allow: false, error: INTERNAL, route: undefined, cache: '-', ttl: 0 }, method, path, start, false, id, guards);
  }

  /** The address introspections are queued under (see the class notes). */
  #clientAddress(peer: string, xff: readonly string[] | undefined): string {
    return this.#trusted === undefined || xff === undefined ? unmapped(peer) : this.#trusted.clientAddress(peer, xff.join(','));
  }


  /** Starts serving; resolves with the bound port. Defaults to `forward_auth.grpc`. */
  async listen(port = this.config.forward_auth?.grpc?.port ?? 0, host = this.config.forward_auth?.grpc?.host ?? '127.0.0.1'): Promise<{ host: string; port: number }> {
    const address = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
    const bound = await new Promise<number>((resolve, reject) => {
      // Plaintext: TLS between Envoy and this service is left to the deployment (loopback, a mesh's mTLS).
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    return { host, port: bound };
  }

  /**
   * A reload: checks from now on use these guards (routes, phantom token
   * options, cache); calls under way finish on the old ones. Only for guards
   * the caller owns (the service never closes them). The service's own
   * options (`forward_auth.grpc`, identity headers) stay as they started.
   */
  useGuards(guards: Guards): void {
    if (this.#ownsGuards) throw new TypeError('useGuards: the service built its own guards');
    this.guards = guards;
  }

  /**
   * Graceful stop: no new calls; calls under way get `server.shutdown_timeout_ms`
   * to finish, then are cut. Closes the guards when it built them.
   */
  async close(): Promise<void> {
    const drained = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), this.config.server.shutdown_timeout_ms);
      timer.unref();
    });
    if (await Promise.race([drained.then(() => false), timedOut])) {
      this.logger.warn('shutdown timeout reached: cutting Envoy check calls');
      this.server.forceShutdown();
    }
    clearTimeout(timer);
    if (this.#ownsGuards) await this.guards.close();
  }
}

/**
 * The request's headers by lower-case name, each with its values: from
 * `header_map` (one entry per line) when present, else from the `headers`
 * map (one value, repeated lines already joined with `,`).
 */
type EnvoyHttp = NonNullable<NonNullable<NonNullable<CheckRequest['attributes']>['request']>['http']>;

/**
 * A check as `decide` reads it. The URL and the certificate's thumbprint are
 * worked out when it reads them (a DPoP request, a certificate-bound token),
 * never before; a class, since an object literal with getters is built
 * slowly on every check.
 */
class EnvoyCheck implements DecisionRequest {
  readonly method: string;
  readonly target: string;
  readonly authorization: readonly string[];
  readonly preflight: boolean;
  readonly hasBody: boolean;
  readonly methodOverride: boolean;
  readonly clientAddress: string;
  readonly traceHeaders: DecisionRequest['traceHeaders'];
  readonly dpop: readonly string[];

  constructor(
    fields: Omit<DecisionRequest, 'url' | 'certThumbprint' | 'dpop' | 'hasBody' | 'methodOverride'> & { dpop: readonly string[]; hasBody: boolean; methodOverride: boolean },
    readonly headers: ReadonlyMap<string, string[]>,
    readonly http: EnvoyHttp,
    readonly certificate: string | undefined,
  ) {
    this.method = fields.method;
    this.target = fields.target;
    this.authorization = fields.authorization;
    this.preflight = fields.preflight;
    this.hasBody = fields.hasBody;
    this.methodOverride = fields.methodOverride;
    this.clientAddress = fields.clientAddress;
    this.traceHeaders = fields.traceHeaders;
    this.dpop = fields.dpop;
  }

  /** Envoy's own view of the request (its pseudo-headers, else the attributes it fills from them): the URL the client addressed. */
  get url(): string | undefined {
    return requestUrl(this.headers.get(':scheme')?.[0] ?? this.http.scheme, this.headers.get(':authority')?.[0] ?? this.http.host, this.target);
  }

  /** The downstream connection's certificate (include_peer_certificate), never a header a client could send. */
  get certThumbprint(): string | undefined {
    const der = typeof this.certificate === 'string' && this.certificate !== '' ? clientCertFromHeader(this.certificate) : undefined;
    return der === undefined ? undefined : certThumbprint(der);
  }
}

function readHeaders(http: NonNullable<NonNullable<NonNullable<CheckRequest['attributes']>['request']>['http']>): { headers: Map<string, string[]>; joined: boolean; count: number; bytes: number } {
  const out = new Map<string, string[]>();
  let count = 0;
  let bytes = 0;
  const add = (key: string, value: string) => {
    // Sized as HTTP/1.1 header lines; pseudo-headers are the request line, not headers, except `:authority` (Host).
    bytes += key.length + value.length + 4;
    if (!key.startsWith(':') || key === ':authority') count++;
    const k = key.toLowerCase();
    const list = out.get(k);
    if (list === undefined) out.set(k, [value]);
    else list.push(value);
  };
  const raw = http.header_map?.headers;
  const joined = !(raw !== undefined && raw.length > 0);
  if (!joined) {
    for (const h of raw) {
      if (typeof h.key !== 'string') continue;
      // Header bytes as they were (a token is ASCII; anything else is refused as malformed).
      add(h.key, h.raw_value !== undefined && h.raw_value.length > 0 ? h.raw_value.toString('latin1') : (h.value ?? ''));
    }
  } else if (http.headers !== undefined && http.headers !== null) {
    for (const [k, v] of Object.entries(http.headers)) add(k, v);
  }
  return { headers: out, joined, count, bytes };
}

/** The path without its query (which may hold a token): what the access log shows. */
function logPath(target: string | undefined): string {
  if (typeof target !== 'string' || target === '') return '-';
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/** Envoy's `x-request-id` (from `headers` or `header_map`) when well formed, else a new one. */
function envoyRequestId(http: NonNullable<NonNullable<NonNullable<CheckRequest['attributes']>['request']>['http']> | undefined): string {
  let v = http?.headers?.['x-request-id'];
  if (v === undefined) {
    for (const e of http?.header_map?.headers ?? []) {
      if (e.key === 'x-request-id') {
        v = e.value !== undefined && e.value !== '' ? e.value : e.raw_value?.toString('latin1');
        break;
      }
    }
  }
  return requestId(v);
}

function elapsed(start: number): number {
  return Math.round((performance.now() - start) * 100) / 100;
}




/**
 * Starts the Envoy gRPC service when `forward_auth.grpc` is configured (the
 * CLI's entry point); undefined when it is not. Rejects with a message naming
 * the option when the address cannot be bound.
 */
export async function startEnvoyGrpc(config: GatewayConfig, deps: EnvoyAuthDeps): Promise<EnvoyAuthService | undefined> {
  const where = config.forward_auth?.grpc;
  if (where === undefined) return undefined;
  const service = new EnvoyAuthService(config, deps);
  try {
    const bound = await service.listen(where.port, where.host);
    deps.logger.info({ host: bound.host, port: bound.port }, 'Envoy ext_authz (gRPC) listening');
    return service;
  } catch (err) {
    await service.close();
    const e = err as Error;
    throw new Error(`cannot listen on ${where.host}:${where.port} (forward_auth.grpc): ${e.message}`, { cause: err });
  }
}
