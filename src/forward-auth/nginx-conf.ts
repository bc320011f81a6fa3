/*
 * `phantom-gateway nginx-conf`: an NGINX configuration for the `http {}`
 * context that puts NGINX in front of the routes of a gateway configuration,
 * with protected routes decided by the forward-auth listener (auth_request)
 * and the decisions cached by NGINX (proxy_cache) for exactly the TTL the
 * listener gives in `X-Accel-Expires`.
 *
 * NGINX routes on its own normalised path, the gateway's router on the path
 * as sent. The generated file keeps the two in step:
 * - every request whose raw target `checkTarget` would refuse (dot segments,
 *   `//`, encoded `/`, `.`, `\`, unreserved characters, controls...) is
 *   refused by NGINX before any location, because NGINX resolves
 *   `/public/../api` (and `/public/%2e%2e/api`) to `/api` before matching
 *   locations while an upstream may see the raw target;
 * - the spellings the router treats specially (a route's name without its
 *   trailing `/`, with an extension, in another case) get locations of their
 *   own, with the route (or the refusal) that the router itself picks for
 *   them: the router is run at generation time, so the two cannot drift;
 * - the decision service checks the raw target (`X-Original-URI`) again with
 *   every rule, on every decision it makes.
 *
 * Sender-constrained tokens: the decision request carries the client's DPoP
 * proof, `$scheme` and `$http_host` (the URL for `htu`) and, with
 * `listen.tls.request_client_certificates`, NGINX's own client certificate;
 * the API gets `DPoP` and `X-DPoP-Verified` from the decision only, never a
 * client's; a request with a proof is never answered from the decision cache.
 */
import { createHash } from 'node:crypto';
import type { GatewayConfig, RouteConfig } from '../config/schema.js';
import { MINTING_RESPONSES, upstreamPath } from '../config/schema.js';
import { createGuards, REFUSED, type GuardedRoute } from '../core/guards.js';
import { GatewayError, insufficientScope, TOKEN_INACTIVE, TOKEN_MALFORMED, TOKEN_MISSING, type ErrorCode } from '../core/errors.js';
import { TOKEN_IN_QUERY } from '../core/credentials.js';
import { renderRefusal } from '../core/render.js';
import { createLogger } from '../observability/logger.js';

/** The dynamic modules the generated file needs (Debian: `libnginx-mod-http-set-misc`, which pulls in `libnginx-mod-http-ndk`). */
export const NGINX_MODULES = Object.freeze(['modules/ndk_http_module.so', 'modules/ngx_http_set_misc_module.so']);

export interface NginxConfOptions {
  /** Where the generated server listens; default: the configuration's `listen`. */
  readonly listen?: { readonly host: string; readonly port: number };
  /** Directory of the decision cache (`proxy_cache_path`). Default `/run/nginx-phantom-gateway` (tmpfs: the files hold JWTs; NGINX creates the last component, as root, and gives it to its worker user). */
  readonly cachePath?: string;
  /** Name of the cache's shared memory zone (`keys_zone`), unique in the NGINX instance. Default `phantom_decisions`. */
  readonly cacheZone?: string;
  /** Cache decisions in NGINX (default true). false: every request to a protected route asks the decision service. */
  readonly decisionCache?: boolean;
  /**
   * Decision cache files each NGINX worker keeps open (`open_file_cache max`),
   * so a hit costs no open()/close(); 0 turns it off. Every one is a file
   * descriptor: raise `worker_rlimit_nofile` with it. Default 1000.
   */
  readonly openFiles?: number;
  /** Shown in the header comment (the configuration file the output was generated from). */
  readonly source?: string;
}

export const NGINX_CONF_DEFAULTS = Object.freeze({
  cachePath: '/run/nginx-phantom-gateway',
  cacheZone: 'phantom_decisions',
  openFiles: 1000,
});

/** The configuration cannot be expressed for NGINX (no forward-auth listener, a route NGINX cannot carry). */
export class NginxConfError extends Error {
  override readonly name = 'NginxConfError';
}

/**
 * Names of the identity headers the decision service sets on an allow, from
 * `forward_auth.identity_headers` (claim name -> header name).
 */
export function identityHeaderNames(identityHeaders: unknown): string[] {
  const names: string[] = [];
  if (identityHeaders !== null && typeof identityHeaders === 'object') {
    for (const v of Object.values(identityHeaders)) if (typeof v === 'string') names.push(v);
  }
  for (const n of names) if (!/^[A-Za-z0-9-]+$/.test(n)) throw new NginxConfError(`forward_auth.identity_headers: "${n}" is not a header name NGINX can set (letters, digits and - only)`);
  const seen = new Set<string>();
  return names.filter((n) => {
    const k = n.toLowerCase();
    if (k === 'authorization' || seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * Raw request targets the gateway's `checkTarget` refuses by their path, as
 * one PCRE for NGINX's `$request_uri` (path and query as sent): not
 * origin-form; a `#` anywhere (the query too); backslash, `;`, anything outside visible ASCII; an escape
 * of `%`, `/`, `\`, `?`, `#`, an unreserved character or a control; a bad
 * escape; `//`; `.` and `..` segments; a segment ending in `.` or `%20`.
 * (Encoded non-ASCII that folds to ASCII is checked by the decision service
 * on protected routes; see the README.)
 */
export const NGINX_BAD_TARGET =
  '^(?:[^/]|.*#|[^?]*(?:[\\x5c;]|[^\\x21-\\x7e]|%(?:[01][0-9A-Fa-f]|2[35DdEeFf]|3[0-9Ff]|4[1-9A-Fa-f]|5[0-9AaCcFf]|6[1-9A-Fa-f]|7[0-9AaEeFf])|%(?![0-9A-Fa-f]{2})|//|/\\.\\.?(?:[/?]|$)|(?:\\.|%20)(?:[/?]|$)))';

/** Request targets whose decision is never taken from, nor put in, NGINX's cache: an escape in the path, or a query parameter name with `access` or an escape (a possible `access_token`). */
const NGINX_UNCACHED_TARGET = '^[^?]*%|\\?(?:.*[&;])?[^=&;]*(?:[Aa][Cc][Cc][Ee][Ss][Ss]|%)';

/** The name of a route prefix: without its trailing `/` (`/` for the root). */
function nameOf(prefix: string): string {
  return prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
}

/** The plain longest-prefix match on whole segments (what NGINX's prefix locations give). */
function plainMatch(routes: readonly GuardedRoute[], path: string): GuardedRoute | undefined {
  let best: GuardedRoute | undefined;
  for (const r of routes) {
    const p = r.config.path;
    const ok = path.startsWith(p) && (path.length === p.length || p.length === 1 || p.endsWith('/') || path.charCodeAt(p.length) === 47);
    if (ok && (best === undefined || p.length > best.config.path.length)) best = r;
  }
  return best;
}

const pcreQuote = (s: string) => s.replace(/[\\^$.|?*+()[\]{}]/g, (c) => `\\${c}`);
/** A string in NGINX's double quotes (never interpolated where it is used: no `$` in it). */
const q = (s: string) => {
  if (s.includes('$')) throw new NginxConfError(`"${s}": NGINX would read the $ in it as a variable`);
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
};
/** A regex in NGINX's double quotes: backslashes pass through as written (NGINX keeps `\x` for any x but `"`, `'`, `\`, t, r, n). */
const qre = (s: string) => {
  if (/["\\][trn"'\\]/.test(s.replace(/\\x5c/g, ''))) throw new Error(`internal: regex not expressible in NGINX quotes: ${s}`);
  return `"${s}"`;
};

/** A file path as an NGINX directive argument (quoted; no `$`, no line end). */
const confPath = (file: string, option: string) => {
  if (/[\r\n]/.test(file)) throw new NginxConfError(`${option}: "${file}" cannot be written in an NGINX configuration`);
  return q(file);
};

const originOf = (url: string) => {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
};

function hostPort(host: string, port: number): string {
  const h = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`;
}
function listenAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * A route's requirements, for the cache key: what its decisions depend on
 * (authorization server, client, scope, cache bounds, scheme) and what an allow
 * carries (the identity-header mapping), hashed: a configuration change to
 * any of them gives new keys, so no decision cached before it is used after.
 */
function requirementsKey(r: GuardedRoute, identityHeaders: unknown, minting: string | null): string {
  const pt = r.config.phantom_token;
  if (pt === false) return 'open';
  const identity = identityHeaders !== null && typeof identityHeaders === 'object' ? Object.entries(identityHeaders).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : null;
  const what = JSON.stringify([
    r.config.path,
    pt.introspection_endpoint ?? null,
    pt.issuer ?? null,
    pt.client_id,
    pt.verify_ssl,
    pt.ca_file ?? null,
    pt.introspection_response,
    pt.access_tokens_only,
    pt.audience ?? null,
    pt.scope,
    pt.token_cache_seconds,
    pt.negative_cache_seconds,
    pt.max_token_length,
    // Which scheme the route takes, and its DPoP settings (a Bearer allow cached before a switch to DPoP must not serve after it).
    pt.scheme,
    pt.dpop,
    identity,
    // An allow of a minting route carries the gateway's own JWT: its issuer, claims rules, lifetime and signer.
    MINTING_RESPONSES.has(pt.introspection_response) ? minting : null,
  ]);
  return `r${r.index}-${createHash('sha256').update(what).digest('hex').slice(0, 16)}`;
}

/** A JSON refusal as a `return` body (NGINX string). */
function refusalBody(err: GatewayError): string {
  return q(renderRefusal(err).body);
}
const err = (code: ErrorCode) => new GatewayError(code);

/**
 * The NGINX configuration for `config`, for the `http {}` context.
 *
 * @example
 * process.stdout.write(nginxConf(loadConfigFile('gateway.yaml'), { listen: { host: '0.0.0.0', port: 80 } }));
 */
export function nginxConf(config: GatewayConfig, opts: NginxConfOptions = {}): string {
  const fa = config.forward_auth;
  const routes0 = config.routes;
  const anyProtected = routes0.some((r) => r.phantom_token !== false);
  if (anyProtected && fa?.listen === undefined) {
    throw new NginxConfError('forward_auth.listen is not set: NGINX asks the forward-auth listener about protected routes; add forward_auth: { listen: { host, port } } to the configuration');
  }
  for (const r of routes0) {
    if (r.upstream === undefined || r.upstream === '') throw new NginxConfError(`routes: ${r.path} has no upstream: NGINX needs one to proxy_pass to`);
    // NGINX has no variable with the DER of the client's certificate to write an RFC 9440 Client-Cert from.
    if (r.phantom_token !== false && r.phantom_token.forward_client_cert) {
      throw new NginxConfError(`routes: ${r.path}: forward_client_cert cannot be done by the generated NGINX configuration (it sends no client certificate upstream); remove it, or let the gateway's own listener carry this route`);
    }
  }
  // NGINX passes the client's certificate in Client-Cert; the listener believes it only when told its trusted peers set it themselves.
  if (config.listen?.tls?.request_client_certificates === true && !config.trust_client_cert_header) {
    throw new NginxConfError(
      'listen.tls.request_client_certificates: NGINX sends the client certificate to the forward-auth listener in Client-Cert, which the listener believes only with trust_client_cert_header: true (and NGINX\'s address in trusted_proxies); set both, or certificate-bound tokens are refused',
    );
  }
  const upstreamOfRoute = (r: RouteConfig): string => r.upstream!;
  const listen = opts.listen ?? config.listen;
  if (listen === undefined) throw new NginxConfError('the configuration has no listen (no proxy listener): say where NGINX listens with --listen HOST:PORT');
  const cachePath = opts.cachePath ?? NGINX_CONF_DEFAULTS.cachePath;
  const zone = opts.cacheZone ?? NGINX_CONF_DEFAULTS.cacheZone;
  if (!/^[A-Za-z0-9_]+$/.test(zone)) throw new NginxConfError(`cache zone "${zone}": letters, digits and _ only`);
  if (/[\s;{}"'$\\]/.test(cachePath)) throw new NginxConfError(`cache path "${cachePath}": no spaces, quotes, ;, {, }, $ or \\`);
  const cache = opts.decisionCache !== false;
  const openFiles = opts.openFiles ?? NGINX_CONF_DEFAULTS.openFiles;
  if (!Number.isInteger(openFiles) || openFiles < 0 || openFiles > 1_000_000) throw new NginxConfError(`open files "${openFiles}": a whole number from 0 to 1000000`);
  const identity = identityHeaderNames(fa?.identity_headers);

  // The router itself, to ask which route (or refusal) each special spelling gets.
  const guards = createGuards(config, { logger: createLogger('silent') });
  const routes = guards.routes;
  // A key made at start differs on every run: it is not part of the key (the file would change with every generation).
  const m = guards.minting;
  const mintingKey = m === undefined ? null : m.generated ? m.settings : m.identity;
  void guards.destroy();

  const out: string[] = [];
  const w = (s = '') => out.push(s);

  const mainModules = NGINX_MODULES.map((m) => `#   load_module ${m};`).join('\n');
  w(`# Generated by phantom-gateway nginx-conf${opts.source ? ` from ${opts.source}` : ''}. Do not edit: generate it again.`);
  w('#');
  w('# Include it in the http {} context of nginx.conf:  include /etc/nginx/phantom-gateway.conf;');
  w('# It needs, in the MAIN context of nginx.conf (top level, before events {}), the');
  w('# set-misc module (Debian: apt-get install libnginx-mod-http-set-misc, which');
  w('# loads them from /etc/nginx/modules-enabled/; elsewhere add):');
  w(mainModules);
  w('# set_sha1 (set-misc) hashes the client\'s Authorization into the decision');
  w('# cache key, so that the opaque token never reaches a cache file.');
  w('');
  w('# Raw targets the gateway refuses (checked first in every location a client can');
  w('# reach: NGINX would resolve /public/../api to /api, while an upstream may see the');
  w('# raw target).');
  w('map $request_uri $phantom_bad_target {');
  w(`  ${qre(`~${NGINX_BAD_TARGET}`)} 1;`);
  w('  default 0;');
  w('}');
  if (cache) {
    w('# Decisions that depend on more than route and token are asked every time and');
    w('# never stored: an escape in the path, a query parameter that may be an');
    w('# access_token, a non-empty method-override header, a CORS preflight. (NGINX reads');
    w('# only the first field of a header: the three override headers are also cleared');
    w('# before every upstream, so an override the decision did not see never reaches it.)');
    w('map $request_uri $phantom_uncached_target {');
    w(`  ${qre(`~${NGINX_UNCACHED_TARGET}`)} 1;`);
    w('  default "";');
    w('}');
    w('map "$http_x_http_method_override$http_x_http_method$http_x_method_override$http_access_control_request_method" $phantom_override {');
    w('  "" "";');
    w('  default 1;');
    w('}');
  }
  w('');
  const statusBodies: Array<[number, GatewayError]> = [
    [400, err('ERR_BAD_REQUEST_TARGET')],
    [404, err('ERR_NO_ROUTE')],
    [405, err('ERR_METHOD_NOT_ALLOWED')],
    [429, err('ERR_TOO_MANY_INTROSPECTIONS')],
    // Too many headers and headers too large are both 431: the status alone cannot tell them apart.
    [431, err('ERR_HEADERS_TOO_LARGE')],
    [502, err('ERR_INTROSPECTION_UNREACHABLE')],
    [503, err('ERR_INTROSPECTION_UNAVAILABLE')],
    [504, err('ERR_INTROSPECTION_TIMEOUT')],
  ];
  if (anyProtected) {
    w('# A request with a body is never a CORS preflight (the decision service sees no body).');
    w('map "$http_content_length$http_transfer_encoding" $phantom_origin {');
    w('  "" $http_origin;');
    w('  "0" $http_origin;');
    w('  default "";');
    w('}');
    w('# Refusals rendered as the gateway renders them: status, WWW-Authenticate,');
    w('# Retry-After, JSON body {"code","message"}, Cache-Control: no-store.');
    w('map $phantom_decision_status $phantom_refusal_status {');
    w('  "~(?<phantom_s>[1-5][0-9][0-9])$" $phantom_s;');
    w('  default 500;');
    w('}');
    w('map $phantom_challenge $phantom_401_body {');
    w(`  ${q(TOKEN_MISSING.challenge!)} ${refusalBody(TOKEN_MISSING)};`);
    w(`  ${q(TOKEN_MALFORMED.challenge!)} ${refusalBody(TOKEN_MALFORMED)};`);
    // DPoP challenges (RFC 9449 §7.1) carry the route's algs: told apart by their error.
    w(`  ${qre('~^DPoP error=.invalid_dpop_proof.')} ${refusalBody(err('ERR_DPOP_PROOF_INVALID'))};`);
    w(`  ${qre('~^DPoP error=.use_dpop_nonce.')} ${refusalBody(err('ERR_DPOP_NONCE'))};`);
    w(`  ${qre('~^DPoP error=.invalid_request.')} ${refusalBody(TOKEN_MALFORMED)};`);
    w(`  ${qre('~^(?:Bearer, )?DPoP algs=')} ${refusalBody(TOKEN_MISSING)};`);
    w(`  default ${refusalBody(TOKEN_INACTIVE)};`);
    w('}');
    w('map "$phantom_refusal_status $phantom_challenge" $phantom_refusal_body {');
    w(`  ${q(`400 ${TOKEN_IN_QUERY.challenge}`)} ${refusalBody(TOKEN_IN_QUERY)};`);
    for (const [status, e] of statusBodies) w(`  "~^${status} " ${refusalBody(e)};`);
    w(`  default ${refusalBody(err('ERR_INTERNAL'))};`);
    w('}');
    w('');
  }

  if (cache && anyProtected) {
    const maxTtl = Math.max(60, ...routes0.map((r) => (r.phantom_token === false ? 0 : Math.max(r.phantom_token.token_cache_seconds, r.phantom_token.negative_cache_seconds))));
    w('# The decision cache: one small file per (route requirements, token hash), kept');
    w('# for the X-Accel-Expires the decision service gives (never longer than its own');
    w('# cache entry). Files hold the decision\'s headers, the JWT included: put the');
    w('# directory on tmpfs, readable by the NGINX user only.');
    w(`proxy_cache_path ${cachePath} levels=1:2 keys_zone=${zone}:10m max_size=256m inactive=${maxTtl}s use_temp_path=off;`);
    w('');
  }

  // Upstreams: the decision service, and one per upstream origin.
  // Shorter than the listener's own idle timeout, so NGINX never reuses a connection the listener is closing.
  const keepaliveTimeout = Math.max(1, Math.min(60, Math.floor((fa?.keep_alive_timeout_ms ?? 75_000) / 1000) - 1));
  if (fa?.listen !== undefined) {
    w('upstream phantom_forward_auth {');
    w(`  server ${hostPort(fa.listen.host, fa.listen.port)};`);
    w('  # idle connections kept per worker: at least the decision requests in flight at once, or NGINX opens and closes connections under load');
    w('  keepalive 128;');
    w('  keepalive_requests 100000;');
    w('  # shorter than the listener\'s forward_auth.keep_alive_timeout_ms, so NGINX never reuses a connection it is closing');
    w(`  keepalive_timeout ${keepaliveTimeout}s;`);
    w('}');
  }
  const origins = new Map<string, string>();
  for (const r of routes0) {
    const u = new URL(upstreamOfRoute(r));
    const origin = originOf(upstreamOfRoute(r));
    if (origins.has(origin)) continue;
    const name = `phantom_upstream_${origins.size}`;
    origins.set(origin, name);
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    w(`upstream ${name} {`);
    w(`  server ${hostPort(host, Number(port))};`);
    w(`  keepalive ${Math.min(config.upstream.connections, 1024)};`);
    w(`  keepalive_timeout ${Math.max(1, Math.floor(config.upstream.idle_timeout_ms / 1000))}s;`);
    w('}');
  }
  w('');

  // NGINX's own TLS with client certificates (listen.tls.request_client_certificates): the certificate, URL-encoded PEM.
  const tls = config.listen?.tls;
  const clientCerts = (tls as { request_client_certificates?: boolean } | undefined)?.request_client_certificates === true;
  const clientCertVar = clientCerts ? '$ssl_client_escaped_cert' : '""';
  const timeoutS = Math.ceil(Math.max(1000, ...routes0.map((r) => (r.phantom_token === false ? 0 : r.phantom_token.timeout_ms))) / 1000) + 1;

  w('server {');
  if (tls === undefined) w(`  listen ${listenAddress(listen.host, listen.port)};`);
  else {
    w(`  listen ${listenAddress(listen.host, listen.port)} ssl;`);
    w(`  ssl_certificate ${confPath(tls.cert_file, 'listen.tls.cert_file')};`);
    w(`  ssl_certificate_key ${confPath(tls.key_file, 'listen.tls.key_file')};`);
    if (clientCerts) {
      w('  # Certificate-bound tokens (RFC 8705): ask every client for a certificate, not');
      w('  # checked against a CA (a bound token names it by its thumbprint); the decision');
      w('  # service gets it in Client-Cert.');
      w('  ssl_verify_client optional_no_ca;');
    }
  }
  w(`  client_max_body_size ${config.server.max_body_bytes === 0 ? '1' : String(config.server.max_body_bytes)};`);
  w('  # A header with _ or another invalid character is dropped, whatever http {} says:');
  w('  # X_User_Id would reach a CGI/WSGI/PHP upstream as the identity header X-User-Id.');
  w('  underscores_in_headers off;');
  w('  ignore_invalid_headers on;');
  w('  # Refusals of NGINX itself, of the target checks and of the decisions, as JSON.');
  w('  # NGINX\'s own refusals of a request it could not read (no URI yet: a named location');
  w('  # cannot take them) go to internal locations by URI.');
  w('  error_page 400 = /_phantom-gateway/error/400;');
  if (anyProtected) {
    w('  error_page 401 = @phantom_401;');
    w('  error_page 403 = @phantom_403;');
  }
  w('  error_page 404 = @phantom_404;');
  w('  error_page 405 = @phantom_405;');
  w('  error_page 408 = /_phantom-gateway/error/408;');
  w('  error_page 411 505 = /_phantom-gateway/error/malformed;');
  w('  error_page 413 = @phantom_413;');
  w('  error_page 414 494 = /_phantom-gateway/error/431;');
  w('  error_page 501 = @phantom_501;');
  w('  error_page 500 = @phantom_500;');
  w('  error_page 502 = @phantom_502;');
  w('  error_page 504 = @phantom_504;');
  w('');
  const named = (name: string, lines: string[]) => {
    w(`  location @${name} {`);
    w('    default_type application/json;');
    w('    add_header Cache-Control no-store always;');
    for (const l of lines) w(`    ${l}`);
    w('  }');
  };
  const byUri = (name: string, lines: string[]) => {
    w(`  location = /_phantom-gateway/error/${name} {`);
    w('    internal;');
    w('    default_type application/json;');
    w('    add_header Cache-Control no-store always;');
    for (const l of lines) w(`    ${l}`);
    w('  }');
  };
  byUri('400', [`return 400 ${refusalBody(err('ERR_BAD_REQUEST_TARGET'))};`]);
  byUri('408', [`return 408 ${refusalBody(err('ERR_REQUEST_TIMEOUT'))};`]);
  // 411 (a body without a length) and 505 (an HTTP version NGINX does not speak): the proxy's malformed request.
  byUri('malformed', [`return 400 ${refusalBody(err('ERR_MALFORMED_REQUEST'))};`]);
  // 414 (a request line over large_client_header_buffers) and 494 (a header line over it): the proxy's 431.
  byUri('431', [`return 431 ${refusalBody(err('ERR_HEADERS_TOO_LARGE'))};`]);
  // auth_request passes a 401's WWW-Authenticate itself.
  if (anyProtected) {
    // A use_dpop_nonce refusal carries the nonce to use (empty otherwise: no header).
    named('phantom_401', ['add_header DPoP-Nonce $phantom_dpop_nonce always;', 'return 401 $phantom_401_body;']);
    named('phantom_403', ['add_header WWW-Authenticate $phantom_challenge always;', `return 403 ${refusalBody(insufficientScope(''))};`]);
  }
  named('phantom_404', [`return 404 ${refusalBody(err('ERR_NO_ROUTE'))};`]);
  named('phantom_405', [`return 405 ${refusalBody(err('ERR_METHOD_NOT_ALLOWED'))};`]);
  named('phantom_413', [`return 413 ${refusalBody(err('ERR_BODY_TOO_LARGE'))};`]);
  named('phantom_501', [`return 501 ${refusalBody(err('ERR_TRANSFER_CODING'))};`]);
  // auth_request turns every status of the decision but 2xx, 401 and 403 into
  // 500: the decision's own status, challenge and Retry-After were kept.
  named(
    'phantom_500',
    anyProtected
      ? [
          'add_header WWW-Authenticate $phantom_challenge always;',
          'add_header Retry-After $phantom_retry_after always;',
          ...statusBodies.map(([s]) => `if ($phantom_refusal_status = ${s}) { return ${s} $phantom_refusal_body; }`),
          `return 500 ${refusalBody(err('ERR_INTERNAL'))};`,
        ]
      : [`return 500 ${refusalBody(err('ERR_INTERNAL'))};`],
  );
  named('phantom_502', [`return 502 ${refusalBody(err('ERR_UPSTREAM_UNREACHABLE'))};`]);
  named('phantom_504', [`return 504 ${refusalBody(err('ERR_UPSTREAM_TIMEOUT'))};`]);
  w('');

  // One decision location per protected route: its cache key holds the route's requirements.
  for (const r of routes) {
    if (r.guard === undefined) continue;
    w(`  location = /_phantom-gateway/decide/${r.index} {`);
    w('    internal;');
    w('    proxy_pass http://phantom_forward_auth;');
    w('    proxy_http_version 1.1;');
    w('    proxy_set_header Connection "";');
    w('    proxy_pass_request_body off;');
    w('    proxy_set_header Content-Length "";');
    w('    proxy_set_header Transfer-Encoding "";');
    w('    # The decision is about the original request, as sent (X-Original-*). HEAD, for');
    w('    # every method: the answer has no body, so a refusal leaves the connection reusable.');
    w('    proxy_method HEAD;');
    w('    proxy_set_header X-Original-Method $request_method;');
    w('    proxy_set_header X-Original-URI $request_uri;');
    w('    proxy_set_header Origin $phantom_origin;');
    w('    # A client must not choose the request the decision is about (Traefik\'s and Caddy\'s headers).');
    w('    proxy_set_header X-Forwarded-Method "";');
    w('    proxy_set_header X-Forwarded-Uri "";');
    w('    proxy_set_header X-Forwarded-For $remote_addr;');
    w('    # The URL the client addressed (a DPoP proof\'s htu): scheme, and Host with its port.');
    w('    proxy_set_header X-Forwarded-Proto $scheme;');
    w('    proxy_set_header X-Forwarded-Host $http_host;');
    w('    # The client\'s DPoP proof goes with its other headers; a client certificate only');
    w('    # as NGINX itself received it (a client\'s own Client-Cert is never passed on).');
    w(`    proxy_set_header Client-Cert ${clientCertVar};`);
    w('    proxy_set_header Client-Cert-Chain "";');
    w(`    proxy_connect_timeout 2s;`);
    w(`    proxy_read_timeout ${timeoutS}s;`);
    if (cache) {
      w(`    set_sha1 $phantom_token_hash $http_authorization;`);
      w(`    proxy_cache ${zone};`);
      w(`    proxy_cache_key "${requirementsKey(r, fa?.identity_headers, mintingKey)} $phantom_token_hash";`);
      w('    # Only X-Accel-Expires says how long (what is left of the token\'s entry; the');
      w('    # negative TTL for an inactive token or a missing scope; nothing for a failure).');
      w('    proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;');
      w('    proxy_cache_methods HEAD;');
      w('    proxy_cache_convert_head off;');
      w('    # One decision call for a burst of requests with a new token.');
      w('    proxy_cache_lock on;');
      w('    proxy_cache_lock_timeout 5s;');
      if (openFiles > 0) {
        w('    # Cache files kept open: a hit costs no open()/fstat()/close() (10-25% less CPU per hit, measured).');
        w('    # Safe: validity is read from the file itself, and a key\'s file only ever holds that key\'s decision.');
        w('    # Each is a file descriptor of the worker: keep worker_rlimit_nofile above this plus 2 per connection.');
        w(`    open_file_cache max=${openFiles} inactive=20s;`);
        w('    open_file_cache_valid 30s;');
      }
      w('    # A request with a DPoP proof is decided every time: a proof is good once.');
      w('    proxy_cache_bypass $phantom_uncached_target$phantom_override$http_dpop;');
      w('    proxy_no_cache $phantom_uncached_target$phantom_override$http_dpop;');
    }
    w('  }');
  }
  w('');

  const upstreamOf = (r: RouteConfig) => origins.get(originOf(upstreamOfRoute(r)))!;

  /** The directives that carry a request to route `r`; `mode` says how NGINX's location matched. */
  const carry = (r: GuardedRoute, mode: 'prefix' | 'exact' | 'regex'): string[] => {
    const lines: string[] = [];
    const rc = r.config;
    const u = new URL(upstreamOfRoute(rc));
    const base = upstreamPath(upstreamOfRoute(rc));
    const scheme = u.protocol === 'https:' ? 'https' : 'http';
    const up = `${scheme}://${upstreamOf(rc)}`;
    if (r.guard !== undefined) {
      lines.push(`auth_request /_phantom-gateway/decide/${r.index};`);
      lines.push('auth_request_set $phantom_authorization $upstream_http_authorization;');
      lines.push('auth_request_set $phantom_decision_status $upstream_status;');
      lines.push('auth_request_set $phantom_challenge $upstream_http_www_authenticate;');
      lines.push('auth_request_set $phantom_retry_after $upstream_http_retry_after;');
      lines.push('auth_request_set $phantom_dpop_nonce $upstream_http_dpop_nonce;');
      lines.push('auth_request_set $phantom_dpop $upstream_http_dpop;');
      lines.push('auth_request_set $phantom_dpop_verified $upstream_http_x_dpop_verified;');
      identity.forEach((h, i) => lines.push(`auth_request_set $phantom_identity_${i} $upstream_http_${h.toLowerCase().replace(/-/g, '_')};`));
      // Replaced, never appended: proxy_set_header drops the client's field of the same name.
      lines.push('proxy_set_header Authorization $phantom_authorization;');
      // The proof and its key's thumbprint only as the decision gives them (dpop.forward: dpop); a client's never.
      lines.push('proxy_set_header DPoP $phantom_dpop;');
      lines.push('proxy_set_header X-DPoP-Verified $phantom_dpop_verified;');
      identity.forEach((h, i) => lines.push(`proxy_set_header ${h} $phantom_identity_${i};`));
    } else {
      // An open route, as with the gateway: the client's Authorization (an
      // opaque token) and DPoP proof are removed unless forward_authorization
      // is true; identity headers and X-DPoP-Verified never pass.
      if (!rc.forward_authorization) lines.push('proxy_set_header Authorization "";', 'proxy_set_header DPoP "";');
      lines.push('proxy_set_header X-DPoP-Verified "";');
      identity.forEach((h) => lines.push(`proxy_set_header ${h} "";`));
    }
    // A client's certificate headers never reach the API (NGINX does not forward its own).
    lines.push('proxy_set_header Client-Cert "";', 'proxy_set_header Client-Cert-Chain "";');
    lines.push(`proxy_set_header Host ${q(u.host)};`);
    lines.push('proxy_set_header X-Forwarded-For $remote_addr;');
    lines.push('proxy_set_header X-Forwarded-Proto $scheme;');
    lines.push('proxy_set_header X-Forwarded-Host $host;');
    lines.push('proxy_set_header Forwarded "";');
    lines.push('proxy_set_header X-Real-IP "";');
    lines.push('proxy_set_header Connection "";');
    // The upstream acts on NGINX's method, never on an override the decision (or a cached one) did not see.
    lines.push('proxy_set_header X-HTTP-Method-Override "";');
    lines.push('proxy_set_header X-HTTP-Method "";');
    lines.push('proxy_set_header X-Method-Override "";');
    lines.push('proxy_http_version 1.1;');
    if (scheme === 'https') lines.push('proxy_ssl_server_name on;', 'proxy_ssl_verify on;', 'proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;');
    lines.push(`proxy_connect_timeout ${Math.max(1, Math.ceil(config.upstream.connect_timeout_ms / 1000))}s;`);
    lines.push(`proxy_read_timeout ${Math.max(1, Math.ceil(config.upstream.response_timeout_ms / 1000))}s;`);
    if (!rc.request_buffering) lines.push('proxy_request_buffering off;');
    if (rc.max_body_bytes !== undefined) lines.push(`client_max_body_size ${rc.max_body_bytes === 0 ? 1 : rc.max_body_bytes};`);
    if (base === '') {
      // The target as the client sent it (checked above), as the gateway forwards it.
      lines.push(`proxy_pass ${up};`);
    } else if (mode === 'prefix') {
      lines.push(`proxy_pass ${up}${base.endsWith('/') ? base : `${base}/`};`);
    } else if (mode === 'exact') {
      // The route's own path: the upstream path as written; the name of a route
      // configured with a trailing / (/admin for /admin/): without it, as the gateway does.
      const own = rc.path === nameOf(rc.path);
      lines.push(`proxy_pass ${up}${own || base.length === 1 || !base.endsWith('/') ? base : base.slice(0, -1)};`);
    } else {
      // An extension spelling (/admin.json for /admin/ -> /v1/): the upstream path is spelled the same way (/v1.json).
      const name = nameOf(rc.path);
      const b = base.length > 1 && base.endsWith('/') ? base.slice(0, -1) : base;
      if (b.includes('$') || b.includes('"')) throw new NginxConfError(`routes: ${rc.path}: an upstream path with $ or " cannot be rewritten by NGINX`);
      lines.push(`rewrite ${qre(`^${pcreQuote(name)}(.*)$`)} "${b === '/' ? '' : b}$1" break;`);
      lines.push(`proxy_pass ${up};`);
    }
    return lines;
  };

  const refuse = (choice: GuardedRoute | undefined | typeof REFUSED): string[] | undefined =>
    choice === REFUSED ? ['return 400;'] : choice === undefined ? ['return 404;'] : undefined;

  // Every location a client can reach refuses a bad raw target first (in the
  // location, not the server: NGINX's error pages are internal redirects that
  // run the server's rewrites again, and the target would be refused again).
  const location = (match: string, lines: string[]) => {
    w(`  location ${match} {`);
    w('    if ($phantom_bad_target) { return 400; }');
    for (const l of lines) w(`    ${l}`);
    w('  }');
  };

  const names = new Map<string, GuardedRoute>();
  for (const r of routes) names.set(nameOf(r.config.path), r);
  const nameList = [...names.keys()].sort((a, b) => b.length - a.length);

  // Extension spellings first (longest name first), then case spellings: NGINX
  // checks regex locations in order, after the longest prefix is found.
  for (const n of nameList) {
    if (n === '/') continue;
    const lastSeg = n.slice(n.lastIndexOf('/') + 1);
    const sample = `${n}.phantom-sample`;
    const choice = guards.forRoute(sample);
    const plain = plainMatch(routes, sample);
    // A shorter name that is this one's stem (/a for /a.b) has a regex that /a.b.json would meet first otherwise.
    const hasStemAbove = lastSeg.indexOf('.') > 0 && nameList.some((m) => m !== n && n.startsWith(`${m}.`) && !n.slice(m.length + 1).includes('/'));
    if (choice === plain && !hasStemAbove) continue;
    // Route names spelled like this one's extension keep their own locations.
    const own = nameList.filter((m) => m.startsWith(`${n}.`) && !m.slice(n.length + 1).includes('/'));
    const exclude = own.length > 0 ? `(?!(?:${own.map(pcreQuote).join('|')})/?$)` : '';
    const re = `~ ${qre(`^${exclude}${pcreQuote(n)}\\.[^/]*/?$`)}`;
    w(`  # ${n} with an extension (${n}.json): the route the gateway's router picks for it`);
    location(re, refuse(choice) ?? carry(choice as GuardedRoute, 'regex'));
  }
  // The router compares a path with case ignored when the path has a capital,
  // or when some route prefix has one (then /admin/x must not take an open /
  // beside a protected /Admin).
  const upperPrefixes = routes0.some((r) => /[A-Z]/.test(r.path));
  for (const n of nameList) {
    if (!/[A-Za-z]/.test(n)) continue;
    const lower = n.toLowerCase();
    const exact = nameList.filter((m) => m.toLowerCase().startsWith(lower));
    const re = `^${upperPrefixes ? '' : '(?=[^A-Z]*[A-Z])'}(?!(?:${exact.map(pcreQuote).join('|')})(?:[/.]|$))(?i:${pcreQuote(n)})(?:[/.]|$)`;
    w(`  # ${n} in another case: refused, as an upstream that ignores case would serve it as ${n}`);
    location(`~ ${qre(re)}`, ['return 400;']);
  }
  w('');

  for (const r of routes) {
    const p = r.config.path;
    const n = nameOf(p);
    w(`  # ${p}${r.guard ? ` (scope "${r.config.phantom_token === false ? '' : r.config.phantom_token.scope}")` : ' (open)'}`);
    location(p === '/' ? '/' : q(`${n}/`), carry(r, 'prefix'));
    if (n !== '/') {
      const choice = guards.forRoute(n);
      location(`= ${q(n)}`, refuse(choice) ?? carry(choice as GuardedRoute, 'exact'));
    }
  }
  if (!names.has('/')) location('/', ['return 404;']);
  w('}');
  return `${out.join('\n')}\n`;
}
