import type { Allow } from '../core/decide.js';

/*
 * Sender-constrained tokens (RFC 9449 DPoP, RFC 8705 certificate binding) at
 * the front doors that do not carry the request: what an allow tells the
 * gateway in front to send upstream, and what it must never let through.
 */

/** The client's proof and its key's thumbprint, when the upstream is to get them (`dpop.forward: dpop`). */
export interface ForwardedProof {
  readonly proof: string;
  readonly jkt: string;
}

/** Header the gateway sets on a request whose DPoP proof it verified: the proof key's RFC 7638 thumbprint. */
export const DPOP_VERIFIED = 'x-dpop-verified';

/** The proof to pass upstream with the JWT, or undefined (a Bearer request, `dpop.forward: bearer`). */
export function forwardedProof(d: Allow): ForwardedProof | undefined {
  const own = (d as { readonly dpop?: ForwardedProof | undefined }).dpop;
  if (own !== undefined) return own;
  return (d.token as { readonly dpop?: ForwardedProof | undefined } | undefined)?.dpop;
}

/**
 * Whether an allow rests on more than the token: a verified proof (one per
 * request, its `jti` once) or a certificate the token is bound to. Such an
 * allow is never kept by an outside cache (NGINX's `proxy_cache` keys on the
 * token alone): the next request must be checked with its own proof and
 * certificate.
 */
export function senderConstrained(d: Allow): boolean {
  if (forwardedProof(d) !== undefined) return true;
  const binding = (d.token as { readonly binding?: unknown } | undefined)?.binding;
  return binding !== undefined && binding !== null;
}
