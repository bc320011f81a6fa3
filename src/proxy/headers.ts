import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

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

/** Headers a client could use to lie about where a request came from. */
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-real-ip']);

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
  /** X-Forwarded-* values sent by a trusted peer; always undefined for others. */
  readonly xff: string | undefined;
  readonly xfProto: string | undefined;
  readonly xfHost: string | undefined;
}

/**
 * One pass over `rawHeaders`: copies what may go to the upstream, and drops
 * hop-by-hop fields, every field the client names in `Connection` (so a client
 * cannot make the gateway strip a header it adds), `Host`, `Authorization`,
 * `Expect` and the forwarding fields the gateway sets itself.
 *
 * @param keepForwarding keep client `Forwarded`/`X-Forwarded-*` fields (trusted peer).
 * @param keepAuthorization pass the client's `Authorization` on (unprotected route).
 */
export function scanRequestHeaders(raw: readonly string[], keepForwarding: boolean, keepAuthorization: boolean): RequestHeaderScan {
  const out: string[] = [];
  let host: string | undefined;
  let authorization: string | undefined;
  let duplicateHost = false;
  let duplicateAuthorization = false;
  let origin = false;
  let acrm = false;
  let hasBody = false;
  let connection: string | undefined;
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;

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
        if (keepForwarding) xfHost ??= value;
        continue;
    }
    if (HOP_BY_HOP.has(name)) continue;
    if (FORWARDING.has(name) && !keepForwarding) continue;
    out.push(name, value);
  }

  if (connection !== undefined) dropNamed(out, connection);
  return { headers: out, host, authorization, duplicateHost, duplicateAuthorization, preflight: origin && acrm, hasBody, xff, xfProto, xfHost };
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
