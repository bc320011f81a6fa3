import { statSync } from 'node:fs';
import { BlockList, isIP, isIPv4 } from 'node:net';
import { loggableRedisUrl } from '../cache/redis/options.js';
import type { GatewayConfig } from './schema.js';

/** A setting that is valid but unsafe: logged as a warning when the gateway starts. */
export interface StartupWarning {
  readonly message: string;
  readonly fields: Record<string, unknown>;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

// Private networks (RFC 1918, RFC 4193, link-local, CGNAT): a decision
// listener bound there is a deliberate choice of a network only gateways reach.
const PRIVATE = new BlockList();
for (const [net, bits] of [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['169.254.0.0', 16], ['100.64.0.0', 10]] as const) PRIVATE.addSubnet(net, bits, 'ipv4');
PRIVATE.addSubnet('fc00::', 7, 'ipv6');
PRIVATE.addSubnet('fe80::', 10, 'ipv6');

/** Whether a listener bound to `host` is reachable only from this machine or a private network. */
function isPrivateHost(host: string): boolean {
  if (isLoopbackHost(host)) return true;
  const family = isIP(host);
  return family !== 0 && PRIVATE.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/** Whether a URL host names this machine only: `localhost`, 127.0.0.0/8 or ::1. */
function isLoopbackHost(hostname: string): boolean {
  const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  if (host.toLowerCase() === 'localhost') return true;
  if (isIPv4(host)) return LOOPBACK.check(host, 'ipv4');
  try {
    return LOOPBACK.check(host, 'ipv6');
  } catch {
    return false; // a name, not an address
  }
}

// Wider than any private range (10.0.0.0/8, fc00::/7): such an entry trusts
// public addresses, so anyone there can set X-Forwarded-* and the rest.
const WIDEST_PRIVATE = { 4: 8, 6: 7 } as const;

/**
 * The start-up warnings of a validated configuration, each once: a plain
 * `http://` introspection endpoint off loopback (tokens and the client secret
 * travel in clear; RFC 7662 §4 requires TLS), and `trusted_proxies` entries
 * wider than any private range (`0.0.0.0/0`, `::/0` trust everyone), and open
 * routes that are an extension spelling of a protected one, a decision
 * listener (forward-auth, gRPC) bound off loopback and private networks, and
 * routes whose upstream no proxy listener uses; before them, the file's own
 * warnings (`sourceWarnings`: an unexpanded `$NAME`, an unclosed `${NAME`).
 */
export function startupWarnings(config: GatewayConfig): StartupWarning[] {
  // The file's own first (an unexpanded $NAME...), in line order.
  const out: StartupWarning[] = config.sourceWarnings?.map((w) => ({ message: w.message, fields: { ...w.fields } })) ?? [];
  // A private key every local user can read (OpenSSH refuses such a key; the gateway says so).
  // Group access is left alone: Debian's ssl-cert group (0640) is a deliberate choice.
  const keyFile = config.listen?.tls?.key_file;
  if (keyFile !== undefined) {
    try {
      const mode = statSync(keyFile).mode & 0o777;
      if ((mode & 0o006) !== 0) {
        out.push({
          message: `listen.tls.key_file "${keyFile}" is readable or writable by every local user (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 (or 640 with a group only the gateway is in)`,
          fields: { option: 'listen.tls.key_file', mode: mode.toString(8).padStart(4, '0') },
        });
      }
    } catch {
      // Unreadable files are configuration errors, reported by the loader.
    }
  }
  const endpoints = new Set<string>();
  for (const route of config.routes) {
    const pt = route.phantom_token;
    if (pt === false) continue;
    for (const [endpoint, what] of [
      [pt.introspection_endpoint, 'the introspection endpoint is plain http:// on another host: access tokens and the client secret cross the network unencrypted (RFC 7662 §4 requires TLS); use https://'],
      [pt.issuer, "the issuer is plain http:// on another host: its discovery metadata (which names the introspection endpoint) and keys can be changed on the way; use https://"],
      [pt.jwks_uri, "jwks_uri is plain http:// on another host: the keys that sign introspection answers can be changed on the way; use https://"],
    ] as const) {
      if (endpoint === undefined || endpoints.has(endpoint)) continue;
      endpoints.add(endpoint);
      const url = new URL(endpoint);
      if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) out.push({ message: what, fields: { endpoint: `${url.origin}${url.pathname}` } });
    }
  }
  // A route configured for a path is taken for it (see Router): an open
  // `/admin.json` beside a protected `/admin/` serves what an upstream with
  // format suffixes (Rails, Spring) answers as `/admin`, without a token.
  const guarded = new Set(config.routes.filter((r) => r.phantom_token !== false).map((r) => nameOf(r.path)));
  for (const route of config.routes) {
    if (route.phantom_token !== false) continue;
    const name = nameOf(route.path);
    const seg = name.lastIndexOf('/') + 1;
    for (let k = name.indexOf('.', seg + 1); k !== -1; k = name.indexOf('.', k + 1)) {
      const stem = name.slice(0, k);
      if (!guarded.has(stem)) continue;
      out.push({
        message: `the open route ${route.path} is an extension spelling of the protected route for ${stem}: upstreams that read format suffixes (Rails, Spring) serve it as ${stem}, without a token`,
        fields: { route: route.path, protected: stem },
      });
      break;
    }
  }
  // The decision listeners hand a route's JWT to whoever shows its opaque
  // token (the gRPC one in plaintext): only the gateways that ask may reach them.
  const fa = config.forward_auth;
  for (const [option, where] of [['forward_auth.listen.host', fa?.listen], ['forward_auth.grpc.host', fa?.grpc]] as const) {
    if (where !== undefined && !isPrivateHost(where.host)) {
      out.push({
        message: `${option} is ${where.host}, not loopback or a private address: whoever reaches it can trade an opaque token for its JWT; make sure only your gateway can (a firewall, a private network)`,
        fields: { [option]: where.host },
      });
    }
  }
  // Health and metrics answer without a token (route paths, endpoints, traffic): operators only.
  const admin = config.admin;
  if (admin !== undefined && !isPrivateHost(admin.listen.host)) {
    out.push({
      message: `admin.listen.host is ${admin.listen.host}, not loopback or a private address: /readyz and /metrics answer anyone who reaches it without a token (route paths, authorization servers, traffic); keep the port unpublished or firewalled`,
      fields: { 'admin.listen.host': admin.listen.host },
    });
  }
  // The shared cache: sealed entries, but whoever reaches Redis can delete them, fill it, or read traffic patterns.
  const redis = config.cache.redis;
  if (redis !== undefined) {
    const u = new URL(redis.url);
    const where = loggableRedisUrl(redis.url);
    if (!isLoopbackHost(u.hostname) && u.protocol === 'redis:') {
      out.push({
        message: `cache.redis.url is plain redis:// to another host: entries are sealed, but the Redis password and the traffic cross the network unencrypted; use rediss:// (TLS)`,
        fields: { redis: where },
      });
    }
    if (!isLoopbackHost(u.hostname) && u.password === '') {
      out.push({ message: 'cache.redis.url has no password: anyone who reaches this Redis can delete or fill the shared cache; use a Redis user with a password (ACL)', fields: { redis: where } });
    }
    if (!redis.verify_ssl) out.push({ message: "cache.redis.verify_ssl is false: Redis's TLS certificate is NOT verified; never do this in production", fields: { redis: where } });
  }
  if (fa !== undefined && fa.listen === undefined && fa.path_prefix !== undefined) {
    out.push({ message: 'forward_auth.path_prefix is set but only the gRPC service runs (no forward_auth.listen): it is not used', fields: { path_prefix: fa.path_prefix } });
  }
  // With forward_auth and no listen there is no proxy: upstreams are unused.
  if (fa !== undefined && config.listen === undefined) {
    const unused = config.routes.filter((r) => r.upstream !== undefined).map((r) => r.path);
    if (unused.length > 0) {
      out.push({
        message: 'routes have an upstream but no proxy listener runs (forward_auth is set and listen is not): their upstreams are not used; add listen to run the proxy too',
        fields: { routes: unused },
      });
    }
  }
  // Certificates to forward that the gateway can never receive.
  const certificates = config.listen?.tls?.request_client_certificates === true || config.trusted_proxies.length > 0 || fa !== undefined;
  const blind = config.routes.filter((r) => r.phantom_token !== false && r.phantom_token.forward_client_cert).map((r) => r.path);
  if (blind.length > 0 && !certificates) {
    out.push({
      message: 'forward_client_cert is set but the gateway never receives a client certificate: set listen.tls.request_client_certificates, or trusted_proxies for a TLS-terminating proxy that sends Client-Cert',
      fields: { routes: blind },
    });
  }
  // htu from the request's Host binds a proof to whatever host the client names.
  const hostBound = config.routes.filter((r) => r.phantom_token !== false && r.phantom_token.scheme !== 'Bearer' && r.phantom_token.dpop.public_base_url === undefined).map((r) => r.path);
  if (hostBound.length > 0) {
    out.push({
      message:
        "DPoP routes without dpop.public_base_url check a proof's htu against the URL rebuilt from the request (its Host, or a trusted proxy's X-Forwarded-Host), which the client chooses: a proof and token captured at another API that accepts the same tokens, under another host name, pass here too. Set dpop.public_base_url to the URL clients use",
      fields: { routes: hostBound },
    });
  }
  for (const entry of config.trusted_proxies) {
    const [ip, bits] = entry.split('/') as [string, string | undefined];
    if (bits === undefined) continue;
    const family = isIPv4(ip) ? 4 : 6;
    const n = Number(bits);
    if (n === 0) {
      out.push({ message: `trusted_proxies entry ${entry} trusts every address: any client can set X-Forwarded-* and the other proxy headers`, fields: { entry } });
    } else if (n < WIDEST_PRIVATE[family]) {
      out.push({ message: `trusted_proxies entry ${entry} is wider than any private range: clients on public addresses can set X-Forwarded-* and the other proxy headers`, fields: { entry } });
    }
  }
  return out;
}

/** A route path without its trailing `/`. */
function nameOf(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}
