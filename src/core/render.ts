import { errorBody, type GatewayError } from './errors.js';

/** A refusal as every front door sends it: status, headers in order, JSON body. */
export interface RenderedRefusal {
  readonly status: number;
  /** Lower-case names, in the order to send them. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

const rendered = new WeakMap<GatewayError, RenderedRefusal>();

/**
 * The one rendering of a refusal, so that it looks the same from the proxy,
 * the forward-auth listener, Envoy's gRPC check and the middleware: the
 * status of the error table, the body `{"code","message"}` with the public
 * message only (never an internal detail), `WWW-Authenticate` for RFC 6750
 * challenges, `Retry-After` when the authorization server or the gateway's
 * own queue asks for one, and `Cache-Control: no-store`.
 *
 * Shared refusals are rendered once and kept (a flood of bad tokens builds no
 * strings).
 *
 * @example
 * const { status, headers, body } = renderRefusal(TOKEN_MISSING);
 * // 401, { 'content-type': 'application/json', ..., 'www-authenticate': 'Bearer' }
 */
export function renderRefusal(err: GatewayError): RenderedRefusal {
  let r = rendered.get(err);
  if (r !== undefined) return r;
  const body = errorBody(err);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
  };
  if (err.challenge !== undefined) headers['www-authenticate'] = err.challenge;
  if (err.retryAfter !== undefined) headers['retry-after'] = err.retryAfter;
  if (err.dpopNonce !== undefined) headers['dpop-nonce'] = err.dpopNonce;
  r = Object.freeze({ status: err.status, headers: Object.freeze(headers), body });
  rendered.set(err, r);
  return r;
}
