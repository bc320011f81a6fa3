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
  return d.token?.dpop;
}
