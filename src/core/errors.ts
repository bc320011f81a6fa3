/**
 * Every way a request can be refused, in one table.
 *
 * A client sees `status`, the body `{"code": publicCode, "message": message}`
 * (the shape of Curity's phantom token plugins) and, for 401/403, a
 * `WWW-Authenticate` challenge (RFC 6750 §3). The finer-grained `ErrorCode`
 * goes to logs and metrics only, so a client never learns why a token was
 * refused or what went wrong upstream.
 */

/** The body `code` a client sees. */
export type PublicCode = 'unauthorized' | 'forbidden' | 'server_error' | 'bad_request' | 'not_found' | 'too_many_requests';

/** Internal codes, one per situation; logged, never sent to clients. */
export type ErrorCode =
  | 'ERR_TOKEN_MISSING'
  | 'ERR_TOKEN_MALFORMED'
  | 'ERR_TOKEN_INACTIVE'
  | 'ERR_INSUFFICIENT_SCOPE'
  | 'ERR_TOKEN_AUDIENCE'
  | 'ERR_DPOP_PROOF_MISSING'
  | 'ERR_DPOP_PROOF_INVALID'
  | 'ERR_DPOP_PROOF_MISMATCH'
  | 'ERR_DPOP_PROOF_STALE'
  | 'ERR_DPOP_PROOF_REPLAYED'
  | 'ERR_DPOP_KEY_MISMATCH'
  | 'ERR_DPOP_NONCE'
  | 'ERR_DPOP_REPLAY_FULL'
  | 'ERR_TOKEN_DPOP_BOUND'
  | 'ERR_TOKEN_NOT_DPOP_BOUND'
  | 'ERR_TOKEN_CERTIFICATE_MISMATCH'
  | 'ERR_INTROSPECTION_NOT_READY'
  | 'ERR_INTROSPECTION_REJECTED'
  | 'ERR_INTROSPECTION_UNREACHABLE'
  | 'ERR_INTROSPECTION_INVALID_ANSWER'
  | 'ERR_INTROSPECTION_UNAVAILABLE'
  | 'ERR_INTROSPECTION_TIMEOUT'
  | 'ERR_INTROSPECTION_OVERLOADED'
  | 'ERR_TOO_MANY_INTROSPECTIONS'
  | 'ERR_CLIENT_CLOSED'
  | 'ERR_UPSTREAM_UNREACHABLE'
  | 'ERR_UPSTREAM_TIMEOUT'
  | 'ERR_BAD_REQUEST_TARGET'
  | 'ERR_DUPLICATE_HEADER'
  | 'ERR_BAD_HOST'
  | 'ERR_TOKEN_IN_QUERY'
  | 'ERR_TOO_MANY_HEADERS'
  | 'ERR_HEADERS_TOO_LARGE'
  | 'ERR_MALFORMED_REQUEST'
  | 'ERR_REQUEST_TIMEOUT'
  | 'ERR_NO_ROUTE'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_HOST_MISSING'
  | 'ERR_EXPECTATION_FAILED'
  | 'ERR_TRANSFER_CODING'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_BODY_TOO_SLOW'
  | 'ERR_INTERNAL';

interface ErrorSpec {
  readonly status: number;
  readonly publicCode: PublicCode;
  readonly message: string;
}

/**
 * The single source of truth for status codes and client messages. The README's
 * error table is checked against this object by a test.
 */
export const ERRORS: { readonly [K in ErrorCode]: ErrorSpec } = Object.freeze({
  ERR_TOKEN_MISSING: { status: 401, publicCode: 'unauthorized', message: 'Access token required' },
  ERR_TOKEN_MALFORMED: { status: 401, publicCode: 'unauthorized', message: 'Malformed Authorization header' },
  ERR_TOKEN_INACTIVE: { status: 401, publicCode: 'unauthorized', message: 'Invalid or expired access token' },
  ERR_INSUFFICIENT_SCOPE: { status: 403, publicCode: 'forbidden', message: 'The access token does not have the required scope' },
  ERR_TOKEN_AUDIENCE: { status: 401, publicCode: 'unauthorized', message: 'Invalid or expired access token' },
  // DPoP (RFC 9449): every failed proof check looks the same to the client; the code says which in the log.
  ERR_DPOP_PROOF_MISSING: { status: 401, publicCode: 'unauthorized', message: 'Invalid DPoP proof' },
  ERR_DPOP_PROOF_INVALID: { status: 401, publicCode: 'unauthorized', message: 'Invalid DPoP proof' },
  ERR_DPOP_PROOF_MISMATCH: { status: 401, publicCode: 'unauthorized', message: 'Invalid DPoP proof' },
  ERR_DPOP_PROOF_STALE: { status: 401, publicCode: 'unauthorized', message: 'Invalid DPoP proof' },
  ERR_DPOP_PROOF_REPLAYED: { status: 401, publicCode: 'unauthorized', message: 'Invalid DPoP proof' },
  ERR_DPOP_KEY_MISMATCH: { status: 401, publicCode: 'unauthorized', message: 'Invalid DPoP proof' },
  // The proof carries no nonce, or one no longer accepted: the answer's DPoP-Nonce is the one to use.
  ERR_DPOP_NONCE: { status: 401, publicCode: 'unauthorized', message: 'DPoP nonce required' },
  // The replay memory is full of proofs still in their window: a proof could not be remembered, so it is not accepted (not the client's doing).
  ERR_DPOP_REPLAY_FULL: { status: 503, publicCode: 'server_error', message: 'Token validation is temporarily unavailable' },
  // A sender-constrained token used without its proof of possession, or a bearer token sent as DPoP.
  ERR_TOKEN_DPOP_BOUND: { status: 401, publicCode: 'unauthorized', message: 'Invalid or expired access token' },
  ERR_TOKEN_NOT_DPOP_BOUND: { status: 401, publicCode: 'unauthorized', message: 'Invalid or expired access token' },
  ERR_TOKEN_CERTIFICATE_MISMATCH: { status: 401, publicCode: 'unauthorized', message: 'Invalid or expired access token' },
  ERR_INTROSPECTION_NOT_READY: { status: 503, publicCode: 'server_error', message: 'Token validation is temporarily unavailable' },
  ERR_INTROSPECTION_REJECTED: { status: 502, publicCode: 'server_error', message: 'Token validation is unavailable' },
  ERR_INTROSPECTION_UNREACHABLE: { status: 502, publicCode: 'server_error', message: 'Token validation is unavailable' },
  ERR_INTROSPECTION_INVALID_ANSWER: { status: 502, publicCode: 'server_error', message: 'Token validation is unavailable' },
  ERR_INTROSPECTION_UNAVAILABLE: { status: 503, publicCode: 'server_error', message: 'Token validation is temporarily unavailable' },
  ERR_INTROSPECTION_TIMEOUT: { status: 504, publicCode: 'server_error', message: 'Token validation timed out' },
  // Too many new tokens waiting for the authorization server, from everyone: not the client's doing.
  ERR_INTROSPECTION_OVERLOADED: { status: 503, publicCode: 'server_error', message: 'Token validation is temporarily unavailable' },
  // Too many new tokens waiting from this client's address: its own burst (RFC 6585 §4).
  ERR_TOO_MANY_INTROSPECTIONS: { status: 429, publicCode: 'too_many_requests', message: 'Too many new access tokens at once' },
  // The client went away while its token waited (nginx's 499); logged, never sent.
  ERR_CLIENT_CLOSED: { status: 499, publicCode: 'bad_request', message: 'Client closed request' },
  ERR_UPSTREAM_UNREACHABLE: { status: 502, publicCode: 'server_error', message: 'The upstream API is unavailable' },
  ERR_UPSTREAM_TIMEOUT: { status: 504, publicCode: 'server_error', message: 'The upstream API timed out' },
  ERR_BAD_REQUEST_TARGET: { status: 400, publicCode: 'bad_request', message: 'Bad request' },
  ERR_DUPLICATE_HEADER: { status: 400, publicCode: 'bad_request', message: 'Bad request' },
  ERR_BAD_HOST: { status: 400, publicCode: 'bad_request', message: 'Bad request' },
  ERR_TOKEN_IN_QUERY: { status: 400, publicCode: 'bad_request', message: 'Access tokens are not accepted in the query string' },
  ERR_TOO_MANY_HEADERS: { status: 431, publicCode: 'bad_request', message: 'Too many request headers' },
  ERR_HEADERS_TOO_LARGE: { status: 431, publicCode: 'bad_request', message: 'Request headers too large' },
  ERR_MALFORMED_REQUEST: { status: 400, publicCode: 'bad_request', message: 'Bad request' },
  ERR_REQUEST_TIMEOUT: { status: 408, publicCode: 'bad_request', message: 'Request timeout' },
  ERR_NO_ROUTE: { status: 404, publicCode: 'not_found', message: 'No route for this path' },
  ERR_METHOD_NOT_ALLOWED: { status: 405, publicCode: 'bad_request', message: 'Method not allowed' },
  ERR_HOST_MISSING: { status: 400, publicCode: 'bad_request', message: 'Bad request' },
  ERR_EXPECTATION_FAILED: { status: 417, publicCode: 'bad_request', message: 'Expectation failed' },
  ERR_TRANSFER_CODING: { status: 501, publicCode: 'bad_request', message: 'Unsupported transfer coding' },
  ERR_BODY_TOO_LARGE: { status: 413, publicCode: 'bad_request', message: 'Request body too large' },
  ERR_BODY_TOO_SLOW: { status: 408, publicCode: 'bad_request', message: 'Request timeout' },
  ERR_INTERNAL: { status: 500, publicCode: 'server_error', message: 'Internal error' },
});

/**
 * A refusal. The hot-path refusals (missing, malformed, inactive token) are
 * built once below and shared, so a flood of bad tokens allocates nothing.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly publicCode: PublicCode;
  /** `WWW-Authenticate` value, when the refusal is an RFC 6750 challenge. */
  readonly challenge: string | undefined;
  /** `Retry-After` to send (authorization server 503/429 passed on, or the gateway's own queue full). */
  readonly retryAfter: string | undefined;
  /** `DPoP-Nonce` to send: the server nonce a DPoP proof must carry (RFC 9449 §9). */
  readonly dpopNonce: string | undefined;

  constructor(code: ErrorCode, opts: { challenge?: string; retryAfter?: string; dpopNonce?: string; cause?: unknown; detail?: string } = {}) {
    const spec = ERRORS[code];
    super(opts.detail ?? spec.message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = spec.status;
    this.publicCode = spec.publicCode;
    this.challenge = opts.challenge;
    this.retryAfter = opts.retryAfter;
    this.dpopNonce = opts.dpopNonce;
  }

  /** The JSON body sent to clients: never the internal detail. */
  get publicMessage(): string {
    return ERRORS[this.code].message;
  }
}

const CHALLENGE_MISSING = 'Bearer';
const CHALLENGE_MALFORMED = 'Bearer error="invalid_request"';
const CHALLENGE_INVALID = 'Bearer error="invalid_token"';

/** Pre-built refusals for the hot path (immutable, so safe to share). */
export const TOKEN_MISSING = Object.freeze(new GatewayError('ERR_TOKEN_MISSING', { challenge: CHALLENGE_MISSING }));
export const TOKEN_MALFORMED = Object.freeze(new GatewayError('ERR_TOKEN_MALFORMED', { challenge: CHALLENGE_MALFORMED }));
export const TOKEN_INACTIVE = Object.freeze(new GatewayError('ERR_TOKEN_INACTIVE', { challenge: CHALLENGE_INVALID }));
/** The token is active but meant for another audience than the route's (RFC 9700 §2.3): as invalid as an inactive one to the client. */
export const TOKEN_WRONG_AUDIENCE = Object.freeze(new GatewayError('ERR_TOKEN_AUDIENCE', { challenge: CHALLENGE_INVALID }));

const shared = new Map<ErrorCode, GatewayError>();

/**
 * The one shared, frozen refusal for `code` (no challenge, no `Retry-After`,
 * no detail): every front door refuses with the same object, so a refusal is
 * the same everywhere by construction and `renderRefusal` renders it once.
 *
 * @example
 * const BAD_TARGET = refusal('ERR_BAD_REQUEST_TARGET');
 */
export function refusal(code: ErrorCode): GatewayError {
  let err = shared.get(code);
  if (err === undefined) {
    err = Object.freeze(new GatewayError(code));
    shared.set(code, err);
  }
  return err;
}

/** 403 with the scopes the route requires, per RFC 6750 §3.1. */
export function insufficientScope(required: string): GatewayError {
  return new GatewayError('ERR_INSUFFICIENT_SCOPE', {
    challenge: `Bearer error="insufficient_scope", scope="${required}"`,
  });
}

/** Serialised body for a refusal. */
export function errorBody(err: GatewayError): string {
  return `{"code":"${err.publicCode}","message":${JSON.stringify(err.publicMessage)}}`;
}
