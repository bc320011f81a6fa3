import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import type { UpstreamTls } from '../net/tls.js';

/*
 * The one source of defaults and limits. The README's configuration reference
 * documents these; names of the phantom token options are those of Curity's
 * plugins so configurations move over unchanged.
 */

// ${VAR} substitution yields strings; numbers and booleans are accepted in
// their YAML spelling too.
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.preprocess(
    (v) => (typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v),
    // the message also covers the wrong type (e.g. `port: eighty`), which zod words for programmers
    z.number('must be a whole number').int('must be a whole number').min(min, `must be at least ${min}`).max(max, `must be at most ${max}`),
  );
const bool = () =>
  z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean('must be true or false'));

// One message per rule, so the user knows which one failed; `continue:
// false`: nothing refined on after it (an upstream's "no query string") is
// checked on a value that already failed.
const httpUrl = (what: string) =>
  z.string(`must be a URL`).check((ctx) => {
    const fail = (message: string): void => {
      ctx.issues.push({ code: 'custom', message, input: ctx.value, continue: false });
    };
    let u: URL;
    try {
      u = new URL(ctx.value);
    } catch {
      return fail(`is not a URL (the ${what} URL must be absolute, such as https://host/path)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return fail(`must be an http:// or https:// ${what} URL, not ${u.protocol}//`);
    if (u.username !== '' || u.password !== '') return fail(`must not contain credentials (user:password@)${what === 'introspection endpoint' ? ': give them as client_id and client_secret' : ''}`);
    if (ctx.value.includes('#')) return fail(`must not have a fragment (#...): it is never sent`);
  });

/**
 * The path of an upstream URL as written, or '' when it has none. `new URL()`
 * cannot tell `http://h` from `http://h/` (both have pathname `/`), and the
 * two mean different things: keep the client's path, or replace the prefix.
 */
export function upstreamPath(upstream: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*(\/[^?#]*)?/i.exec(upstream)?.[1] ?? '';
}

/** Defaults of the phantom token options (the Curity plugin's names first). */
export const PHANTOM_TOKEN_DEFAULTS = Object.freeze({
  token_cache_seconds: 300,
  scope: '',
  verify_ssl: true,
  negative_cache_seconds: 10,
  timeout_ms: 5000,
  max_token_length: 4096,
  max_answer_bytes: 65536,
  connections: 32,
  max_queued: 1024,
  max_queued_per_client: 32,
  introspection_response: 'jwt' as const,
  client_auth_method: 'client_secret_basic' as const,
  access_tokens_only: true,
  scheme: 'Bearer' as const,
  forward_client_cert: false,
});

/** `phantom_token.scheme` (Curity's option): the authorization scheme a route accepts; `any` takes both. */
export const SCHEMES = ['Bearer', 'DPoP', 'any'] as const;
export type Scheme = (typeof SCHEMES)[number];

/** Asymmetric JWS algorithms a DPoP proof may use (RFC 9449 §4.2: never `none` or a MAC). */
export const DPOP_ALGORITHMS = Object.freeze(['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const);

/** Defaults of `phantom_token.dpop`. */
export const DPOP_DEFAULTS = Object.freeze({
  algorithms: Object.freeze(['ES256', 'EdDSA', 'Ed25519', 'PS256', 'RS256']) as readonly (typeof DPOP_ALGORITHMS)[number][],
  max_age_seconds: 60,
  clock_skew_seconds: 5,
  nonce: false,
  forward: 'dpop' as const,
});

/** `introspection_response`: how the authorization server answers (see the README's compatibility table). */
export const INTROSPECTION_RESPONSES = ['jwt', 'jwt_claim', 'json', 'token_introspection_jwt', 'auto'] as const;
/** Dialects whose active answers may carry no JWT: the gateway then mints one. */
export const MINTING_RESPONSES: ReadonlySet<string> = new Set(['json', 'token_introspection_jwt', 'auto']);
export const CLIENT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth'] as const;

const filePath = () => z.string('must be a file path').min(1, 'must not be empty');

const dpopShape = {
  algorithms: z.array(z.enum(DPOP_ALGORITHMS, `must be one of ${DPOP_ALGORITHMS.join(', ')} (asymmetric algorithms only)`), 'must be a list of algorithms').min(1, 'must not be empty'),
  // How old a proof's iat may be, and how far ahead of this clock.
  max_age_seconds: int(1, 3600),
  clock_skew_seconds: int(0, 300),
  // Proofs must carry a nonce the gateway issued (DPoP-Nonce, use_dpop_nonce).
  nonce: bool(),
  // dpop: Authorization: DPoP <jwt> with the client's proof and X-DPoP-Verified; bearer: Authorization: Bearer <jwt> alone.
  forward: z.enum(['dpop', 'bearer'], 'must be dpop or bearer'),
  // The URL clients address the gateway at (htu): its origin and path prefix, before the request path.
  public_base_url: httpUrl('public base').refine((v) => !v.includes('?'), 'must not contain a query string'),
};

export const phantomTokenShape = {
  // One of the two: the endpoint itself, or the issuer whose discovery
  // metadata (RFC 8414 / OpenID) names it. With both, the issuer is checked.
  introspection_endpoint: httpUrl('introspection endpoint'),
  issuer: httpUrl('issuer'),
  // The authorization server's JWKS, for RFC 9701 signed answers (discovered from `issuer` when absent).
  jwks_uri: httpUrl('JWKS'),
  introspection_response: z.enum(INTROSPECTION_RESPONSES),
  client_id: z.string('must be a string').min(1, 'must not be empty'),
  client_auth_method: z.enum(CLIENT_AUTH_METHODS),
  client_secret: z.string('must be a string').min(1, 'must not be empty'),
  // Mounted secrets (Kubernetes): read at start.
  client_secret_file: filePath(),
  // private_key_jwt: the key assertions are signed with; tls_client_auth: the certificate's key.
  client_key_file: filePath(),
  // tls_client_auth: the client certificate (PEM).
  client_cert_file: filePath(),
  // private_key_jwt: the assertion's aud when the server wants a fixed value (default: the issuer, else the endpoint called).
  client_assertion_audience: z.string('must be a string').min(1, 'must not be empty'),
  // The token's aud must contain this (one of these, for a list) (RFC 9700 §2.3).
  audience: z.union([z.string().min(1, 'must not be empty'), z.array(z.string().min(1, 'must not be empty')).min(1, 'must not be empty')], 'must be a string or a list of strings'),
  // Refuse answers that describe a refresh token, an ID token or another non-access token.
  access_tokens_only: bool(),
  token_cache_seconds: int(0),
  // RFC 6749 §3.3 scope tokens, space-separated. Trimmed first: a YAML block
  // scalar (`scope: |`) ends in a newline.
  scope: z.preprocess(
    (v) => (typeof v === 'string' ? v.trim() : v),
    z
      .string('must be a string of space-separated scopes')
      .regex(/^(?:[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*)?$/, 'must be scopes separated by single spaces, without quotes, backslashes or control characters'),
  ),
  verify_ssl: bool(),
  ca_file: z.string('must be a file path').min(1),
  negative_cache_seconds: int(0),
  timeout_ms: int(1, 600_000),
  max_token_length: int(16, 65_536),
  max_answer_bytes: int(1024, 16 * 1024 * 1024),
  connections: int(1, 4096),
  max_queued: int(0, 1_000_000),
  max_queued_per_client: int(0, 1_000_000),
  // Bearer (default), DPoP (Authorization: DPoP <opaque> with a DPoP proof), or any of the two. Any case, as Curity's plugin reads it.
  scheme: z.preprocess(
    (v) => (typeof v === 'string' ? SCHEMES.find((s) => s.toLowerCase() === v.trim().toLowerCase()) ?? v : v),
    z.enum(SCHEMES, 'must be Bearer, DPoP or any'),
  ),
  // How DPoP proofs are checked and what the upstream gets (merged member by member with the top-level block's).
  dpop: z.strictObject(dpopShape, 'must be a mapping of DPoP options (algorithms, max_age_seconds, clock_skew_seconds, nonce, forward, public_base_url)').partial(),
  // Send the client's TLS certificate to the upstream (RFC 9440 Client-Cert).
  forward_client_cert: bool(),
};

/** Every option optional: the top-level block and per-route overrides. */
export const phantomTokenPartial = z.strictObject(phantomTokenShape, 'must be a mapping of phantom token options (or false, on a route only)').partial();

/** The merged, complete options that one protected route runs with. */
export const phantomTokenComplete = z.strictObject({
  ...phantomTokenShape,
  introspection_endpoint: phantomTokenShape.introspection_endpoint.optional(),
  issuer: phantomTokenShape.issuer.optional(),
  jwks_uri: phantomTokenShape.jwks_uri.optional(),
  client_secret: phantomTokenShape.client_secret.optional(),
  client_secret_file: phantomTokenShape.client_secret_file.optional(),
  client_key_file: phantomTokenShape.client_key_file.optional(),
  client_cert_file: phantomTokenShape.client_cert_file.optional(),
  client_assertion_audience: phantomTokenShape.client_assertion_audience.optional(),
  audience: phantomTokenShape.audience.optional(),
  ca_file: phantomTokenShape.ca_file.optional(),
  dpop: z.strictObject({ ...dpopShape, public_base_url: dpopShape.public_base_url.optional() }),
});
export type PhantomTokenOptions = z.infer<typeof phantomTokenComplete>;

// The client's query string is forwarded as is; one in the upstream URL
// would be dropped or merged ambiguously, so it is refused up front.
const upstreamUrl = httpUrl('upstream')
  .refine((v) => !v.includes('?'), 'must not contain a query string (the client\'s query string is forwarded)')
  // The path is forwarded as written: it must already be what a URL
  // parser makes of it (no dot segments, no spaces, encoded as needed).
  .refine((v) => {
    const written = upstreamPath(v);
    return written === '' || (written === new URL(v).pathname && !written.includes('//'));
  }, 'must have a normalized path (no . or .. segments, no //, spaces and other special characters percent-encoded)');

const routePath = z
  .string('must be a path')
  .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/, 'must start with / and contain only path characters (no query, fragment or percent-encoding)')
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'must not contain . or .. segments')
  .refine((p) => !p.includes('//'), 'must not contain //');

const cidr = z.string('must be an IP address or CIDR').refine((v) => {
  const [ip, bits, extra] = v.split('/');
  if (extra !== undefined || ip === undefined) return false;
  const family = isIP(ip);
  if (family === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n >= 0 && n <= (family === 4 ? 32 : 128);
}, 'must be an IP address or CIDR such as 10.0.0.0/8');

/** Defaults of `forward_auth`. */
export const FORWARD_AUTH_DEFAULTS = Object.freeze({ host: '127.0.0.1', port: 8081, keep_alive_timeout_ms: 75_000 });

/*
 * Headers an allow never carries as an identity header: the decision's own
 * (Authorization, X-Accel-*, caching, framing), hop-by-hop fields, and the
 * request-describing headers gateways send to the listener.
 */
const RESERVED_HEADERS = new Set([
  'authorization', 'proxy-authorization', 'www-authenticate', 'proxy-authenticate', 'host', 'cookie', 'set-cookie',
  'cache-control', 'expires', 'pragma', 'vary', 'age', 'date', 'etag', 'last-modified', 'retry-after', 'location', 'server',
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
]);
const RESERVED_PREFIXES = /^(?:content-|x-accel-|x-forwarded-|x-original-|forwarded$|x-real-ip$|access-control-)/;

const identityHeaderName = z
  .string('must be a header name')
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/, 'must be a header name (1 to 64 letters, digits and !#$%&\'*+.^_`|~-)')
  .refine((h) => !RESERVED_HEADERS.has(h.toLowerCase()) && !RESERVED_PREFIXES.test(h.toLowerCase()), {
    message: 'must not be a header the decision itself sets, a hop-by-hop, caching, Content-*, CORS or forwarding header',
  });

/** Defaults of `admin`. */
export const ADMIN_DEFAULTS = Object.freeze({ host: '127.0.0.1', port: 8082 });

/**
 * An admin token: what a client can send as `Authorization: Bearer` (RFC 6750
 * b64token), long enough not to be guessed (16 characters and more; `openssl
 * rand -hex 32` gives 64), bounded so comparing it costs nothing.
 */
export const ADMIN_TOKEN = /^[A-Za-z0-9\-._~+/]{16,1024}=*$/;
export const ADMIN_TOKEN_RULE = 'must be 16 to 1024 characters: letters, digits and -._~+/ (a b64token, as in Authorization: Bearer), e.g. the output of openssl rand -hex 32';
const adminToken = z.string('must be a string').regex(ADMIN_TOKEN, ADMIN_TOKEN_RULE);

/** Defaults of `cache.redis`. */
export const REDIS_DEFAULTS = Object.freeze({
  key_prefix: 'phantom-gateway:',
  connect_timeout_ms: 1000,
  command_timeout_ms: 250,
});

/**
 * The key secret of `cache.redis`: what Redis keys are HMACs under, shared by
 * every instance. Long enough not to be guessed (32 characters and more;
 * `openssl rand -hex 32` gives 64).
 */
export const REDIS_KEY_SECRET = /^[\x21-\x7e]{32,1024}$/;
export const REDIS_KEY_SECRET_RULE = 'must be 32 to 1024 printable characters without spaces, e.g. the output of openssl rand -hex 32';

/** `cache.redis`: the shared second-level cache (see src/cache/redis). */
const redisCache = z.strictObject({
  // redis://[user:password@]host[:port][/db], or rediss:// for TLS.
  url: z.string('must be a redis:// or rediss:// URL').check((ctx) => {
    let u: URL | undefined;
    try {
      u = new URL(ctx.value);
    } catch {
      u = undefined;
    }
    if (u === undefined || (u.protocol !== 'redis:' && u.protocol !== 'rediss:') || u.hostname === '') {
      ctx.issues.push({ code: 'custom', message: 'must be a redis:// or rediss:// URL with a host (redis://[user:password@]host[:port][/db])', input: '(not shown)', continue: false });
      return;
    }
    if (u.search !== '' || u.hash !== '') ctx.issues.push({ code: 'custom', message: 'must not have a query string or fragment', input: '(not shown)', continue: false });
    else if (u.pathname !== '' && u.pathname !== '/' && !/^\/\d{1,5}$/.test(u.pathname)) ctx.issues.push({ code: 'custom', message: 'the path must be a database number (e.g. /0)', input: '(not shown)', continue: false });
  }),
  // Every key starts with this (several gateways, or other applications, may share one Redis).
  key_prefix: z.string('must be a string').regex(/^[\x21-\x7e]{0,64}$/, 'must be at most 64 printable characters without spaces').default(REDIS_DEFAULTS.key_prefix),
  // Redis keys are HMAC-SHA256 of the token under this secret; the same on every instance.
  key_secret: z.string('must be a string').regex(REDIS_KEY_SECRET, REDIS_KEY_SECRET_RULE).optional(),
  key_secret_file: filePath().optional(),
  connect_timeout_ms: int(1, 60_000).default(REDIS_DEFAULTS.connect_timeout_ms),
  // Every command: past it the command counts as failed (a miss, never a refusal).
  command_timeout_ms: int(1, 60_000).default(REDIS_DEFAULTS.command_timeout_ms),
  // How long an instance waits for another instance's introspection of the same token before making its own.
  // Absent: as long as that introspection may take (the route's timeout_ms + 1 s). 0: never wait.
  lock_wait_ms: int(0, 600_000).optional(),
  // rediss:// only: the CA to trust instead of Node's roots, and whether to verify the server's certificate at all.
  ca_file: filePath().optional(),
  verify_ssl: bool().default(true),
});

/** `listen.tls`: the listener serves HTTPS with this certificate chain and key (PEM), read again on SIGHUP. */
const listenerTls = z.strictObject(
  {
    cert_file: filePath(),
    key_file: filePath(),
    // Ask clients for a TLS certificate (RFC 8705 certificate-bound tokens). Not verified against a CA: a bound token names the certificate by its thumbprint.
    request_client_certificates: bool().default(false),
  },
  'must be a mapping with cert_file and key_file',
);

/** TLS options towards upstreams: in `upstream` (every route's default) and in a route's upstream mapping. */
const upstreamTlsShape = {
  // PEM CA certificates trusted instead of Node's bundled roots (a private CA).
  ca_file: filePath().optional(),
  verify_ssl: bool().optional(),
  // A client certificate (PEM) for upstreams that require one, with its key.
  client_cert_file: filePath().optional(),
  client_key_file: filePath().optional(),
};

/** The proxy listener when `listen` is absent and `forward_auth` is too (configurations from before forward-auth keep their meaning). */
export const LISTEN_DEFAULTS = Object.freeze({ host: '0.0.0.0', port: 8080 });

export const configSchema = z.strictObject({
  // Absent with `forward_auth` set: no proxy listener (see load.ts).
  listen: z
    .strictObject({
      host: z.string('must be a host name or IP address').min(1).default(LISTEN_DEFAULTS.host),
      port: int(0, 65535).default(LISTEN_DEFAULTS.port),
      tls: listenerTls.optional(),
    })
    .optional(),
  phantom_token: phantomTokenPartial.default({}),
  routes: z
    .array(
      z.strictObject({
        path: routePath,
        // The client's query string is forwarded as is; one in the upstream URL
        // would be dropped or merged ambiguously, so it is refused up front.
        // Optional only without a proxy listener (forward-auth alone); checked in load.ts.
        // A URL, or a mapping of the URL and this route's upstream TLS options
        // (normalized by load.ts into `upstream` and `upstream_tls`).
        upstream: z.union([upstreamUrl, z.strictObject({ url: upstreamUrl, ...upstreamTlsShape }, 'must be an upstream URL or a mapping with url')]).optional(),
        // false, or overrides of the top-level phantom_token block; checked
        // after merging so a missing client_id is reported once, clearly.
        phantom_token: z.unknown().optional(),
        // Read the whole body before taking an upstream connection (NGINX's
        // proxy_request_buffering); false streams it, for large uploads.
        request_buffering: bool().default(true),
        // Streaming routes: longest pause in the client's body while an
        // upstream connection waits for it.
        body_idle_timeout_ms: int(100, 3_600_000).default(10_000),
        // This route's bound instead of server.max_body_bytes.
        max_body_bytes: int(0).optional(),
        // Open routes (phantom_token: false) drop the client's Authorization:
        // the opaque token is no business of a public service. true keeps it
        // (an upstream with its own authentication); refused on a protected
        // route, where the JWT always replaces it (see load.ts).
        forward_authorization: bool().optional(),
      }),
      'must be a list of routes',
    )
    .min(1, 'must have at least one route'),
  upstream: z
    .strictObject({
      connect_timeout_ms: int(1, 600_000).default(5000),
      response_timeout_ms: int(1, 3_600_000).default(30_000),
      idle_timeout_ms: int(1, 3_600_000).default(30_000),
      connections: int(1, 65_536).default(128),
      ...upstreamTlsShape,
      verify_ssl: bool().default(true),
    })
    .default({ connect_timeout_ms: 5000, response_timeout_ms: 30_000, idle_timeout_ms: 30_000, connections: 128, verify_ssl: true }),
  server: z
    .strictObject({
      max_headers: int(8, 1000).default(100),
      max_header_bytes: int(1024, 1024 * 1024).default(16384),
      headers_timeout_ms: int(100, 600_000).default(10_000),
      request_timeout_ms: int(100, 3_600_000).default(60_000),
      keep_alive_timeout_ms: int(100, 600_000).default(5000),
      shutdown_timeout_ms: int(0, 600_000).default(10_000),
      send_timeout_ms: int(100, 3_600_000).default(60_000),
      max_body_bytes: int(0).default(10 * 1024 * 1024),
      body_buffer_bytes: int(1024, 64 * 1024 * 1024).default(65_536),
      body_temp_dir: z.string('must be a directory path').min(1, 'must not be empty').optional(),
      min_body_rate_bytes: int(0, 1024 * 1024 * 1024).default(240),
      min_body_rate_window_ms: int(100, 600_000).default(5000),
      // NGINX's option of the same name: request headers whose name contains
      // `_` are dropped unless this is true (CGI-style upstreams read
      // `X_Forwarded_For` as `X-Forwarded-For`).
      underscores_in_headers: bool().default(false),
    })
    // Node refuses to start a server otherwise; say so here, with the line.
    .refine((s) => s.headers_timeout_ms <= s.request_timeout_ms, {
      message: 'headers_timeout_ms must not be larger than request_timeout_ms',
      path: ['headers_timeout_ms'],
    })
    .default({
      max_headers: 100,
      max_header_bytes: 16384,
      headers_timeout_ms: 10_000,
      request_timeout_ms: 60_000,
      keep_alive_timeout_ms: 5000,
      shutdown_timeout_ms: 10_000,
      send_timeout_ms: 60_000,
      max_body_bytes: 10 * 1024 * 1024,
      body_buffer_bytes: 65_536,
      min_body_rate_bytes: 240,
      min_body_rate_window_ms: 5000,
      underscores_in_headers: false,
    }),
  trusted_proxies: z.array(cidr, 'must be a list of IP addresses or CIDRs').default([]),
  // Believe a trusted proxy's RFC 9440 Client-Cert as the client's TLS certificate (certificate-bound tokens):
  // only when every trusted proxy sets it from its own TLS connection and removes a client's copy.
  trust_client_cert_header: bool().default(false),
  cache: z
    // lru-cache reserves its index for the bound up front (~15 bytes an entry).
    // Inactive tokens have their own bound, so garbage cannot evict valid tokens.
    .strictObject({
      max_entries: int(1, 10_000_000).default(10_000),
      max_negative_entries: int(1, 10_000_000).default(10_000),
      // A second level shared by every instance (and every worker): Redis or Valkey.
      redis: redisCache.optional(),
      // DPoP proofs remembered against replay (each for max_age_seconds + clock_skew_seconds); shared through Redis too when set.
      max_dpop_proofs: int(1, 10_000_000).default(100_000),
    })
    .default({ max_entries: 10_000, max_negative_entries: 10_000, max_dpop_proofs: 100_000 }),
  // Processes serving requests: a number, or `auto` for one per core. Each
  // worker is a whole gateway with its own cache; only the socket is shared.
  workers: z.preprocess((v) => (v === 'auto' ? availableParallelism() : v), int(1, 256)).default(1),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      access_log: bool().default(true),
      // The token's `sub` in the access log: personal data, so off unless asked for.
      access_log_sub: bool().default(false),
    })
    .default({ level: 'info', access_log: true, access_log_sub: false }),
  // Minting (routes with introspection_response json, token_introspection_jwt
  // or auto): the key the gateway signs RFC 9068 tokens with, and what they carry.
  minting: z
    .strictObject({
      // `iss` of minted tokens: the gateway's public URL (default: derived from the listener, with a warning).
      issuer: httpUrl('issuer').optional(),
      // PEM or JWK private key: EC P-256 (ES256), Ed25519 (EdDSA) or RSA (RS256). Absent: a key made at start (development only).
      signing_key_file: filePath().optional(),
      // Other public keys to publish: the previous signer until its tokens expire, the next one ahead of use.
      published_key_files: z.array(filePath(), 'must be a list of file paths').default([]),
      max_lifetime_seconds: int(1, 86_400).default(300),
      // Introspection members copied into minted tokens besides the RFC 9068 ones.
      copy_claims: z.array(z.string().regex(/^[\x21-\x7E]{1,256}$/, 'claim names must be 1 to 256 visible ASCII characters'), 'must be a list of claim names').default([]),
      // `aud` of minted tokens whose introspection answer has none (RFC 9068 requires one); the answer's own aud wins.
      audience: z.union([z.string().min(1, 'must not be empty'), z.array(z.string().min(1, 'must not be empty')).min(1, 'must not be empty')], 'must be a string or a list of strings').optional(),
    })
    .default({ published_key_files: [], max_lifetime_seconds: 300, copy_claims: [] }),
  // The forward-auth decision listener (NGINX auth_request, Caddy, Traefik,
  // APISIX, Envoy HTTP ext_authz); off when absent.
  // `forward_auth:` with nothing under it (YAML null) means the block with its defaults.
  forward_auth: z
    .preprocess((v) => (v === null ? {} : v), z.strictObject({
      // It hands a JWT to whoever shows an opaque token: loopback by default, never public.
      listen: z
        .strictObject({
          host: z.string('must be a host name or IP address').min(1).default(FORWARD_AUTH_DEFAULTS.host),
          port: int(0, 65535).default(FORWARD_AUTH_DEFAULTS.port),
        })
        // Absent with only `grpc` set: no HTTP listener (see load.ts).
        .optional(),
      // Envoy HTTP ext_authz puts its `path_prefix` before the original path.
      path_prefix: z
        .string('must be a path')
        .regex(/^(?:\/|(?:\/[A-Za-z0-9\-._~!$&'()*+,;=:@]+)+)$/, 'must be / or start with / and contain only path characters, without a trailing / (no query, fragment, percent-encoding or empty segments)')
        .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'must not contain . or .. segments')
        .optional(),
      // Idle connections from the gateway are kept this long (longer than NGINX's upstream keepalive_timeout, 60 s).
      keep_alive_timeout_ms: int(100, 3_600_000).default(FORWARD_AUTH_DEFAULTS.keep_alive_timeout_ms),
      // claim -> response header added to an allow.
      identity_headers: z
        .record(
          z.string().regex(/^[\x21-\x7E]{1,256}$/, 'claim names must be 1 to 256 visible ASCII characters'),
          identityHeaderName,
          'must be a mapping of claim name to header name',
        )
        .superRefine((map, ctx) => {
          const seen = new Map<string, string>();
          for (const [claim, header] of Object.entries(map)) {
            const prev = seen.get(header.toLowerCase());
            if (prev !== undefined) ctx.addIssue({ code: 'custom', path: [claim], message: `header "${header}" is already given to claim "${prev}"` });
            else seen.set(header.toLowerCase(), claim);
          }
        })
        .optional(),
      // Envoy's ext_authz over gRPC (envoy.service.auth.v3.Authorization/Check),
      // plaintext: loopback by default, since its answers carry JWTs.
      grpc: z
        .strictObject({
          host: z.string('must be a host name or IP address').min(1).default('127.0.0.1'),
          port: int(0, 65535),
        })
        .optional(),
    }))
    .optional(),
  // The admin listener (health, readiness, Prometheus metrics, reload); off when absent.
  // `admin:` with nothing under it (YAML null) means the block with its defaults.
  admin: z
    .preprocess((v) => (v === null ? {} : v), z.strictObject({
      // Metrics and health answer without a token: loopback by default.
      listen: z
        .strictObject({
          host: z.string('must be a host name or IP address').min(1).default(ADMIN_DEFAULTS.host),
          port: int(0, 65535).default(ADMIN_DEFAULTS.port),
        })
        .default({ host: ADMIN_DEFAULTS.host, port: ADMIN_DEFAULTS.port }),
      // Required by the endpoints that change state (POST /reload); without one they answer 403.
      token: adminToken.optional(),
      // The token from a file (a mounted secret), read at start and on reload.
      token_file: filePath().optional(),
    }))
    .optional(),
});

type Parsed = z.infer<typeof configSchema>;

export interface RouteConfig {
  readonly path: string;
  /** Absent only when there is no proxy listener (forward-auth alone). */
  readonly upstream?: string;
  /**
   * TLS options towards an https upstream: the route's own over `upstream`'s
   * defaults; absent when they are all defaults (Node's roots, verified, no
   * client certificate).
   */
  readonly upstream_tls?: Readonly<UpstreamTls>;
  readonly request_buffering: boolean;
  readonly body_idle_timeout_ms: number;
  readonly max_body_bytes?: number;
  /**
   * Open routes only: pass the client's `Authorization` on (false, the
   * default: it is removed). Always false on a protected route.
   */
  readonly forward_authorization: boolean;
  /** Merged options, or false for an unprotected route. */
  readonly phantom_token: Readonly<PhantomTokenOptions> | false;
}

/** The validated, merged, frozen configuration the gateway runs with. */
export interface GatewayConfig extends Omit<Parsed, 'routes' | 'phantom_token'> {
  readonly routes: readonly RouteConfig[];
  /**
   * The proxy listener; undefined when there is none (`forward_auth` set
   * and `listen` absent). Without `forward_auth` it is always set
   * (`LISTEN_DEFAULTS`).
   */
  readonly listen?: Parsed['listen'];
  /**
   * Warnings about the file itself (an unexpanded `$NAME`, an unclosed
   * `${NAME`), with their line; absent when there are none.
   */
  readonly sourceWarnings?: ReadonlyArray<{ readonly message: string; readonly fields: Readonly<Record<string, unknown>> }>;
}

/** The forward-auth listener's validated options. */
export type ForwardAuthConfig = NonNullable<Parsed['forward_auth']>;

/** The admin listener's validated options. */
export type AdminConfig = NonNullable<Parsed['admin']>;

/** The shared cache's validated options (`cache.redis`). */
export type RedisCacheConfig = NonNullable<Parsed['cache']['redis']>;
