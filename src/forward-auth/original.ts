import { isIP } from 'node:net';
import { unmapped } from '../net/addresses.js';
import { scanCredentials } from '../core/credentials.js';
import { requestUrl } from '../routing/request-target.js';

/*
 * What a decision request says about the request it asks about. Gateways
 * describe it in one of three ways: `X-Forwarded-Method`/`X-Forwarded-Uri`
 * (Traefik, Caddy, APISIX), `X-Original-Method`/`X-Original-URI` (NGINX, as
 * its configuration sets them), or the request line itself (Envoy HTTP
 * ext_authz, after its `path_prefix`).
 */

/** One pass over a decision request's raw headers. */
export interface DecisionHeaders {
  /** Every `Authorization` line, in order. */
  readonly authorization: readonly string[];
  readonly forwardedMethod: string | undefined;
  readonly forwardedUri: string | undefined;
  readonly originalMethod: string | undefined;
  readonly originalUri: string | undefined;
  /** One of the four headers above came more than once. */
  readonly duplicate: boolean;
  /** `Origin` and `Access-Control-Request-Method` present. */
  readonly preflight: boolean;
  /** The request announces a body (`Content-Length` other than 0, or `Transfer-Encoding`). */
  readonly hasBody: boolean;
  /** A method-override header (`X-HTTP-Method-Override`...). */
  readonly methodOverride: boolean;
  /** Every `X-Forwarded-For` line, joined with `,`. */
  readonly xff: string | undefined;
  /** `X-Real-IP` when it came exactly once. */
  readonly realIp: string | undefined;
  /** The first `X-Request-Id` (not yet checked; taken only from a trusted peer). */
  readonly requestId: string | undefined;
  /** Every `DPoP` line, in order (the client's proofs, which gateways pass on with the other headers). */
  readonly dpop: readonly string[];
  /** The first `X-Forwarded-Proto` line (read from a trusted peer only). */
  readonly xfProto: string | undefined;
  /** Every `X-Forwarded-Host` line, joined with `,` (read from a trusted peer only; a chain is no host). */
  readonly xfHost: string | undefined;
  /** `Host` when it came exactly once. */
  readonly host: string | undefined;
  /** RFC 9440 `Client-Cert` when it came exactly once (read from a trusted peer only). */
  readonly clientCert: string | undefined;
}

export function scanDecisionHeaders(raw: readonly string[]): DecisionHeaders {
  // Credentials, preflight, body and method override: the rules every front door shares.
  const { authorization, preflight, hasBody, methodOverride } = scanCredentials(raw);
  let forwardedMethod: string | undefined;
  let forwardedUri: string | undefined;
  let originalMethod: string | undefined;
  let originalUri: string | undefined;
  let duplicate = false;
  let xff: string | undefined;
  let realIp: string | undefined;
  let realIps = 0;
  let requestId: string | undefined;
  const dpop: string[] = [];
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  let host: string | undefined;
  let hosts = 0;
  let clientCert: string | undefined;
  let clientCerts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    const c = n.charCodeAt(0) | 32;
    if (c !== 120 /* x */) {
      // DPoP, Host, Client-Cert: the rest is skipped without a lower-case copy.
      if (n.length === 4) {
        const l = n.toLowerCase();
        if (l === 'dpop') dpop.push(raw[i + 1]!);
        else if (l === 'host') {
          hosts++;
          host = raw[i + 1]!;
        }
      } else if (n.length === 11 && n.toLowerCase() === 'client-cert') {
        clientCerts++;
        clientCert = raw[i + 1]!;
      }
      continue;
    }
    // Only x- names of 9 characters or more matter here.
    if (n.length < 9) continue;
    const value = raw[i + 1]!;
    switch (n.toLowerCase()) {
      case 'x-forwarded-method':
        if (forwardedMethod !== undefined) duplicate = true;
        forwardedMethod = value;
        break;
      case 'x-forwarded-uri':
        if (forwardedUri !== undefined) duplicate = true;
        forwardedUri = value;
        break;
      case 'x-original-method':
        if (originalMethod !== undefined) duplicate = true;
        originalMethod = value;
        break;
      case 'x-original-uri':
        if (originalUri !== undefined) duplicate = true;
        originalUri = value;
        break;
      case 'x-forwarded-for':
        xff = xff === undefined ? value : `${xff},${value}`;
        break;
      case 'x-real-ip':
        realIps++;
        realIp = value;
        break;
      case 'x-request-id':
        requestId ??= value;
        break;
      case 'x-forwarded-proto':
        xfProto ??= value;
        break;
      case 'x-forwarded-host':
        xfHost = xfHost === undefined ? value : `${xfHost},${value}`;
        break;
    }
  }
  return {
    authorization,
    forwardedMethod,
    forwardedUri,
    originalMethod,
    originalUri,
    duplicate,
    preflight,
    hasBody,
    methodOverride,
    xff,
    realIp: realIps === 1 ? realIp : undefined,
    requestId,
    dpop,
    xfProto,
    xfHost,
    host: hosts === 1 ? host : undefined,
    clientCert: clientCerts === 1 ? clientCert : undefined,
  };
}

/** The original request's method and target, as the decision request gives them. */
export interface Original {
  readonly method: string;
  readonly target: string;
  /** The decision request's own request line is the original request (Envoy HTTP ext_authz under `path_prefix`). */
  readonly requestLine?: boolean;
}

/** An HTTP method as gateways send it: upper-case token (a lower-case `trace` must not slip past the TRACE rule). */
const METHOD = /^[A-Z][A-Z_-]{0,31}$/;

/**
 * The original method and target, or undefined when the decision request
 * does not say them unambiguously (answered 400):
 *
 * 1. With `pathPrefix` set, a request line under it is Envoy's: the request
 *    line's method, and its target without the prefix. Headers are not read
 *    (Envoy builds the line itself; any such header came from the client).
 *    `pathPrefix` `/` makes every request line the original request (Envoy
 *    without a `path_prefix` of its own).
 * 2. `X-Forwarded-Method` and `X-Forwarded-Uri`, both, once each, and no
 *    `X-Original-*` beside them: NGINX's `auth_request` passes the client's
 *    own headers to the listener, so a client could add `X-Forwarded-Uri:
 *    /public` beside the `X-Original-URI` NGINX sets; two descriptions are
 *    refused rather than one picked.
 * 3. `X-Original-Method` and `X-Original-URI`, both, once each.
 * 4. Nothing else: a decision request that describes no request is 400,
 *    never decided on its own request line (a gateway configured without
 *    `X-Original-URI` asks `GET /_auth` for every request, and an open `/`
 *    route would allow them all). Reading the request line is opted into
 *    with `path_prefix`.
 *
 * The target is checked afterwards by `decide` like the proxy's.
 */
export function originalRequest(h: DecisionHeaders, method: string, url: string, pathPrefix: string | undefined): Original | undefined {
  if (pathPrefix === '/') return { method, target: url, requestLine: true };
  if (pathPrefix !== undefined && url.startsWith(pathPrefix) && url.charCodeAt(pathPrefix.length) === 47 /* / */) {
    return { method, target: url.slice(pathPrefix.length), requestLine: true };
  }
  if (h.duplicate) return undefined;
  if (h.forwardedMethod !== undefined || h.forwardedUri !== undefined) {
    if (h.forwardedMethod === undefined || h.forwardedUri === undefined || h.originalMethod !== undefined || h.originalUri !== undefined) return undefined;
    return METHOD.test(h.forwardedMethod) ? { method: h.forwardedMethod, target: h.forwardedUri } : undefined;
  }
  if (h.originalMethod !== undefined || h.originalUri !== undefined) {
    if (h.originalMethod === undefined || h.originalUri === undefined) return undefined;
    return METHOD.test(h.originalMethod) ? { method: h.originalMethod, target: h.originalUri } : undefined;
  }
  return undefined;
}

/**
 * The client's address, for the per-client introspection queues. The peer
 * is the gateway (the listener must never be reachable by clients), so the
 * right-most `X-Forwarded-For` entry, which the gateway appended, is the
 * client as the gateway saw it; else `X-Real-IP`; else the peer itself.
 * Anything that is not an IP address is skipped.
 */
export function clientAddress(h: DecisionHeaders, peer: string | undefined): string {
  if (h.xff !== undefined) {
    const comma = h.xff.lastIndexOf(',');
    const last = (comma === -1 ? h.xff : h.xff.slice(comma + 1)).trim();
    if (isIP(last) !== 0) return unmapped(last);
  }
  if (h.realIp !== undefined) {
    const ip = h.realIp.trim();
    if (isIP(ip) !== 0) return unmapped(ip);
  }
  return unmapped(peer ?? '');
}

/**
 * The URL the original request addressed, from a trusted peer's headers:
 * `X-Forwarded-Proto` and `X-Forwarded-Host` (NGINX as `nginx-conf`
 * configures it, Caddy, Traefik: each sets both, replacing a client's), or,
 * for a request line read as the original (Envoy HTTP ext_authz,
 * `path_prefix`), `X-Forwarded-Proto` and the decision request's own `Host`
 * (Envoy passes the client's). The path is always the decided target's, so
 * `htu` and routing see one path. Not ingress-nginx's `X-Original-URL`:
 * Caddy and Traefik pass a client's copy of it on, and a client that chose
 * the URL could replay a proof made for another server.
 */
export function originalUrl(h: DecisionHeaders, target: string, requestLine: boolean): string | undefined {
  return requestUrl(h.xfProto, h.xfHost ?? (requestLine ? h.host : undefined), target);
}
