import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { isMethodOverride, METHOD_OVERRIDE_HEADERS } from '../routing/method-override.js';

/** RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies meet. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'transfer-encoding',
  'upgrade',
  'trailer',
  'proxy-authorization',
  'proxy-authenticate',
]);

/*
 * Headers an upstream could read as supplied by a proxy in front of it: the
 * client's address, the scheme, host, port, prefix or path the client used,
 * its TLS client certificate. Frameworks trust them for exactly those
 * (Spring's ForwardedHeaderFilter, Werkzeug's ProxyFix, Express's `trust
 * proxy`, IIS's URL Rewrite reading X-Original-URL). Matched on the
 * normalized name (lower case, `_` read as `-`: CGI, WSGI and PHP map both
 * to the same variable, RFC 3875 §4.1.18). Via is not in the family: it is
 * informational and loop detection, and no framework derives address,
 * scheme, host or path from it.
 *
 * The family also holds the identity headers an authenticating proxy sets
 * and its upstream trusts as the signed-in user: Apache's and Authelia's
 * `Remote-User`/`-Groups`/`-Email`/`-Name`, Kubernetes' `X-Remote-User`/
 * `-Group`/`-Extra-*`, oauth2-proxy's `X-Auth-Request-*`, Grafana's and
 * Gitea's `X-WEBAUTH-*`, Azure Easy Auth's `X-MS-CLIENT-PRINCIPAL*` and
 * `X-MS-TOKEN-*`, Google IAP's `X-Goog-Authenticated-*` and
 * `X-Goog-IAP-JWT-Assertion`, Cloud Endpoints' and API Gateway's
 * `X-Endpoint-API-UserInfo`/`X-Apigateway-Api-Userinfo`, AWS ALB's
 * `X-Amzn-Oidc-*`, Cloudflare Access's `Cf-Access-*`, Kong's
 * `X-Consumer-*`, `X-Authenticated-*`, `X-Credential-Identifier`/`-Username`,
 * `X-Anonymous-Consumer` and `X-Userinfo`, WSO2's `X-JWT-Assertion`,
 * Pomerium's `X-Pomerium-*`, Vouch's `X-Vouch-*`, authentik's
 * `X-Authentik-*`, Tailscale's `Tailscale-User-*`. Names too generic to be
 * an auth proxy's alone (`X-User`, `X-Email`, `X-Auth-Token`, `X-Access-Token`,
 * which clients send as their own credentials) are not in it.
 */
const PROXY_SUPPLIED = [
  'forwarded',
  'x-real-ip',
  'client-ip',
  'true-client-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'cf-connecting-ipv6',
  'cf-visitor',
  'fastly-client-ip',
  'x-azure-clientip',
  'x-azure-socketip',
  'x-host',
  'x-http-host-override',
  'x-proxyuser-ip',
  'proxy-client-ip',
  'wl-proxy-client-ip',
  'x-originating-ip',
  'x-rewrite-url',
  'x-scheme',
  'x-url-scheme',
  'front-end-https',
  'x-client-cert',
  'ssl-client-cert',
  // RFC 9440
  'client-cert',
  'client-cert-chain',
  // identity
  'x-goog-iap-jwt-assertion',
  'x-endpoint-api-userinfo',
  'x-apigateway-api-userinfo',
  'x-credential-identifier',
  'x-credential-username',
  'x-anonymous-consumer',
  'x-userinfo',
  'x-jwt-assertion',
];
/**
 * Whole prefixes of the family, by first letter so that most names meet no
 * pattern at all: `X-Forwarded-For/-Proto/-Host/-Port/-Prefix/-Ssl/-Server/...`,
 * `X-Original-URL/-URI/-Host/-Method`, `X-Remote-IP/-Addr/-User/-Group/...`,
 * and the identity families above.
 */
const X_PREFIXES =
  /^x-(?:forwarded|original-|envoy-|arr-|ssl-|remote-|auth-request-|webauth-|ms-client-principal|ms-token-|goog-authenticated-|amzn-oidc-|consumer-|authenticated-|pomerium-|vouch-|authentik-)/;


/** The headers the gateway sets itself: other spellings of them never pass. */
const GATEWAY_SET = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'authorization', 'host', 'x-request-id', 'traceparent', 'tracestate', 'dpop', 'x-dpop-verified', 'client-cert', 'client-cert-chain']);

const HOP = 1;
const OVERRIDE = 2;
const SUPPLIED = 3;
/** One lookup per header name in the scan: hop-by-hop, method override or proxy-supplied. */
const KIND = new Map<string, number>([...[...HOP_BY_HOP].map((n): [string, number] => [n, HOP]), ...METHOD_OVERRIDE_HEADERS.map((n): [string, number] => [n, OVERRIDE]), ...PROXY_SUPPLIED.map((n): [string, number] => [n, SUPPLIED])]);

/** `name` lower case with `_` read as `-`, the way CGI-style upstreams see it. */
export function normalizeHeaderName(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') ? lower.replaceAll('_', '-') : lower;
}

/** Whether an already normalized name matches a prefix of the family. */
function suppliedPrefix(n: string): boolean {
  switch (n.charCodeAt(0)) {
    case 120: // x
      return n.charCodeAt(1) === 45 && X_PREFIXES.test(n);
    case 99: // c
      return n.startsWith('cf-access-');
    case 114: // r
      return n.startsWith('remote-');
    case 116: // t
      return n.startsWith('tailscale-user-');
    default:
      return false;
  }
}

/** Whether an upstream could read the header as supplied by a proxy (any case, `_` or `-`). */
export function isProxySupplied(name: string): boolean {
  const n = normalizeHeaderName(name);
  return KIND.get(n) === SUPPLIED || suppliedPrefix(n);
}

export { isMethodOverride };

/** What the scan of a request's raw headers found. */
export interface RequestHeaderScan {
  /** Flat name/value list for the upstream request, without the JWT yet. */
  readonly headers: string[];
  readonly host: string | undefined;
  readonly authorization: string | undefined;
  /** Set when Host appears more than once (refuse with 400). */
  readonly duplicateHost: boolean;
  /**
   * Set when Authorization appears more than once: an ambiguous credential,
   * refused like a malformed one (RFC 6750 §3.1 invalid_request).
   */
  readonly duplicateAuthorization: boolean;
  /** A CORS preflight: `Origin` and `Access-Control-Request-Method` present. */
  readonly preflight: boolean;
  /** The request announces a body (Content-Length > 0 or Transfer-Encoding). */
  readonly hasBody: boolean;
  /** A method-override header (`X-HTTP-Method-Override`...) was sent: refused. */
  readonly methodOverride: boolean;
  /** X-Forwarded-* values sent by a trusted peer; always undefined for others. */
  readonly xff: string | undefined;
  readonly xfProto: string | undefined;
  readonly xfHost: string | undefined;
  /** `X-Request-Id` from a trusted peer (the first one; not yet checked); always undefined for others. */
  readonly requestId: string | undefined;
  /** `traceparent` when it came exactly once (not yet checked). */
  readonly traceparent: string | undefined;
  /** Every `tracestate` line, joined with `,`. */
  readonly tracestate: string | undefined;
  /** The `DPoP` header: its value, or every value when sent more than once. Never copied to `headers` (the gateway sends a verified proof itself). */
  readonly dpop: string | string[] | undefined;
  /** A trusted peer's RFC 9440 `Client-Cert` (the TLS client certificate it received); always undefined for others. */
  readonly clientCert: string | undefined;
  /** The peer is trusted (its forwarding headers were kept). */
  readonly trusted: boolean;
}

/**
 * One pass over `rawHeaders`: copies what may go to the upstream, and drops
 * hop-by-hop fields, every field the client names in `Connection` (so a client
 * cannot make the gateway strip a header it adds), `Host`, `Authorization`,
 * `Expect`, the forwarding fields the gateway sets itself (with `X-Request-Id`,
 * `traceparent` and `tracestate`, read here and set again once checked), the whole
 * proxy-supplied family unless the peer is trusted, and (unless
 * `keepUnderscores`) every field whose name contains `_`.
 *
 * @param keepForwarding keep the client's proxy-supplied fields (trusted peer).
 * @param keepAuthorization pass the client's `Authorization` on: only an open
 *   route with `forward_authorization: true` (an open route otherwise drops
 *   it, so the opaque token never reaches a service that has no use for it).
 * @param keepUnderscores pass names with `_` (`server.underscores_in_headers`).
 */
export function scanRequestHeaders(raw: readonly string[], keepForwarding: boolean, keepAuthorization: boolean, keepUnderscores = false): RequestHeaderScan {
  const out: string[] = [];
  let host: string | undefined;
  let authorization: string | undefined;
  let duplicateHost = false;
  let duplicateAuthorization = false;
  let origin = false;
  let acrm = false;
  let hasBody = false;
  let methodOverride = false;
  let connection: string | undefined;
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  let requestId: string | undefined;
  let traceparent: string | undefined;
  let traceparents = 0;
  let tracestate: string | undefined;
  let dpop: string | string[] | undefined;
  let clientCert: string | undefined;

  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    switch (name) {
      case 'host':
        if (host !== undefined) duplicateHost = true;
        host = value;
        continue;
      case 'authorization':
        if (authorization !== undefined) duplicateAuthorization = true;
        authorization = value;
        if (keepAuthorization) out.push(name, value);
        continue;
      case 'expect':
        // Answered by the gateway (checkContinue) once the token is accepted.
        continue;
      case 'origin':
        origin = true;
        break;
      case 'access-control-request-method':
        acrm = true;
        break;
      case 'content-length':
        if (value !== '0') hasBody = true;
        break;
      case 'transfer-encoding':
        hasBody = true;
        continue;
      case 'connection':
        connection = connection === undefined ? value : `${connection},${value}`;
        continue;
      // Read only from a trusted peer; from anyone else they are dropped, and
      // the gateway's own values replace them.
      case 'x-forwarded-for':
        if (keepForwarding) xff = xff === undefined ? value : `${xff}, ${value}`;
        continue;
      case 'x-forwarded-proto':
        if (keepForwarding) xfProto ??= value;
        continue;
      case 'x-forwarded-host':
        // Two lines are a chain, like a comma-separated value: refused by the Host rule, not resolved by picking one.
        if (keepForwarding) xfHost = xfHost === undefined ? value : `${xfHost},${value}`;
        continue;
      // Set by the gateway: a trusted proxy's ID is kept (when well formed),
      // anyone else's replaced; the trace context is checked, then set again.
      case 'x-request-id':
        if (keepForwarding) requestId ??= value;
        continue;
      case 'traceparent':
        traceparents++;
        traceparent = value;
        continue;
      case 'tracestate':
        tracestate = tracestate === undefined ? value : `${tracestate},${value}`;
        continue;
      // A DPoP proof reaches the upstream only once the gateway verified it;
      // an open route that passes the client's Authorization on passes its proof too.
      case 'dpop':
        dpop = dpop === undefined ? value : typeof dpop === 'string' ? [dpop, value] : [...dpop, value];
        if (keepAuthorization) out.push(name, value);
        continue;
      // Only the gateway says a proof was verified.
      case 'x-dpop-verified':
        continue;
      // RFC 9440: the certificate a TLS-terminating proxy in front received; from anyone else a forgery.
      case 'client-cert':
        if (keepForwarding) clientCert = clientCert === undefined ? value : `${clientCert},${value}`;
        continue;
      case 'client-cert-chain':
        continue;
    }
    // NGINX, Apache and Gunicorn drop `_` names by default: `X_Forwarded_For`
    // is HTTP_X_FORWARDED_FOR to a CGI-style upstream, like the real one.
    const underscore = name.includes('_');
    if (underscore && !keepUnderscores) continue;
    const norm = underscore ? name.replaceAll('_', '-') : name;
    const kind = KIND.get(norm);
    if (kind !== undefined) {
      if (kind === HOP) continue;
      if (kind === OVERRIDE) {
        methodOverride = true;
        continue;
      }
      if (!keepForwarding) continue; // SUPPLIED
    } else if (!keepForwarding && suppliedPrefix(norm)) continue;
    if (underscore && GATEWAY_SET.has(norm)) continue;
    out.push(name, value);
  }

  if (connection !== undefined) dropNamed(out, connection);
  return { headers: out, host, authorization, duplicateHost, duplicateAuthorization, preflight: origin && acrm, hasBody, methodOverride, xff, xfProto, xfHost, requestId, traceparent: traceparents === 1 ? traceparent : undefined, tracestate, dpop, clientCert, trusted: keepForwarding };
}

/** Removes from a flat list every field named in a `Connection` value. */
function dropNamed(flat: string[], connection: string): void {
  const named = new Set<string>();
  for (const token of connection.split(',')) {
    const t = token.trim().toLowerCase();
    if (t !== '' && t !== 'close' && t !== 'keep-alive') named.add(t);
  }
  if (named.size === 0) return;
  let w = 0;
  for (let r = 0; r < flat.length; r += 2) {
    if (named.has(flat[r]!)) continue;
    flat[w++] = flat[r]!;
    flat[w++] = flat[r + 1]!;
  }
  flat.length = w;
}

/** Response headers from the upstream, minus hop-by-hop fields and those it names in `Connection`. */
export function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const connection = headers.connection;
  let named: Set<string> | undefined;
  if (connection !== undefined) {
    named = new Set(
      String(connection)
        .split(',')
        .map((t) => t.trim().toLowerCase()),
    );
  }
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || named?.has(name)) continue;
    out[name] = headers[name];
  }
  return out;
}
