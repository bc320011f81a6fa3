/*
 * A development authorization server: the certified `oidc-provider` package,
 * configured like the Curity tutorial (same clients, same endpoint paths), plus
 * the one thing it lacks: the phantom token answer. A POST to the
 * introspection endpoint with `Accept: application/jwt` gets the access token
 * as an RFC 9068 JWT (200, `Cache-Control: max-age=<seconds left>`) or 204 for
 * an inactive token; every other introspection request is oidc-provider's own
 * RFC 7662 JSON.
 *
 * For development and tests only: in-memory state, fixed client secrets, keys
 * made at start. It refuses to start with NODE_ENV=production.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual, X509Certificate } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { listen } from '../net/listen.js';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { ClientMetadata, Configuration, Provider as ProviderType } from 'oidc-provider';

/** Endpoint paths, as in Curity's tutorial so its commands carry over. */
export const DEV_ROUTES = Object.freeze({
  token: '/oauth/v2/oauth-token',
  introspection: '/oauth/v2/oauth-introspect',
  revocation: '/oauth/v2/oauth-revoke',
  jwks: '/oauth/v2/oauth-anonymous/jwks',
});

/**
 * The tutorial's clients, and one whose access tokens are bound to the TLS
 * client certificate of its token request (RFC 8705 §3; registered only when
 * the server runs https with a `ca`, the only way it sees certificates).
 */
export const DEV_CLIENTS = Object.freeze({
  client: { id: 'test-client', secret: 'Password1' },
  introspection: { id: 'introspection-client', secret: 'Password1' },
  certificateBound: { id: 'certificate-bound-client', secret: 'Password1' },
});

/**
 * Algorithms the token endpoint accepts in a DPoP proof: oidc-provider's
 * default (ES256, Ed25519, EdDSA) and the RSA ones, so a client with any key
 * the gateway may be configured for gets a bound token.
 */
export const DEV_DPOP_ALGORITHMS = Object.freeze(['ES256', 'ES384', 'ES512', 'Ed25519', 'EdDSA', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512']);

export interface DevAuthorizationServerOptions {
  port: number;
  /** Interface to bind; default 127.0.0.1. */
  host?: string;
  /** Host name in the issuer URL; default `localhost`. */
  publicHost?: string;
  /** `aud` of the access tokens; default `api.example.com`. */
  audience?: string;
  /** Access token lifetime in seconds; default 900. */
  accessTokenTtl?: number;
  /**
   * Registration metadata merged into the introspection client's (tests of
   * other client authentication methods and answer formats:
   * `token_endpoint_auth_method`, `jwks`, `introspection_signed_response_alg`,
   * `tls_client_auth_subject_dn`...).
   */
  introspectionClient?: Record<string, unknown>;
  /**
   * oidc-provider features merged over the defaults below (`jwtIntrospection`,
   * `mTLS`...); `mTLS` and `dPoP` are merged member by member, so a test that
   * turns `tlsClientAuth` on keeps certificate-bound tokens.
   */
  features?: Record<string, unknown>;
  /**
   * Serve https with this key and certificate. With a `ca`, client
   * certificates are asked for (not rejected at the handshake: oidc-provider
   * decides what one is worth), certificate-bound access tokens are on and
   * `DEV_CLIENTS.certificateBound` is registered.
   */
  https?: { key: string | Buffer; cert: string | Buffer; ca?: string | Buffer };
  /**
   * `false`: no Curity-style answer to `Accept: application/jwt`; every
   * introspection is oidc-provider's own, which negotiates JSON or RFC 9701
   * by q-value (tests of `introspection_response: auto`). Default true.
   */
  phantomAnswer?: boolean;
}

export interface DevAuthorizationServer {
  readonly issuer: string;
  readonly url: string;
  readonly port: number;
  readonly tokenEndpoint: string;
  readonly introspectionEndpoint: string;
  readonly revocationEndpoint: string;
  readonly jwksUri: string;
  readonly audience: string;
  /** Introspection answers given in JWT form (for tests and the demo's summary); `introspections`: every introspection request, any form. */
  readonly stats: { jwtIntrospections: number; introspections: number };
  close(): Promise<void>;
}

type OidcModule = typeof import('oidc-provider');

let oidc: Promise<OidcModule> | undefined;

/** Terminal colour and style sequences (ESC [ ... m). */
const SGR = /\x1b\[[0-9;]*m/g;

/**
 * oidc-provider 9 prints "Unsupported runtime" on Node 20 (it only checks the
 * LTS name; it runs on 20) and notices about its development defaults. Those
 * lines are dropped while it loads and is configured; the gateway's own demo
 * prints what matters, louder. On a terminal oidc-provider wraps them in
 * colour codes, so the prefix is looked for with those removed.
 */
async function quietly<T>(fn: () => Promise<T> | T): Promise<T> {
  const { warn, info } = console;
  const filter =
    (orig: (...a: unknown[]) => void) =>
    (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].replace(SGR, '').startsWith('oidc-provider ')) return;
      orig.apply(console, args);
    };
  console.warn = filter(warn);
  console.info = filter(info);
  try {
    return await fn();
  } finally {
    console.warn = warn;
    console.info = info;
  }
}

export async function startDevAuthorizationServer(opts: DevAuthorizationServerOptions): Promise<DevAuthorizationServer> {
  if (process.env.NODE_ENV === 'production') {
    throw new Error('the development authorization server refuses to run with NODE_ENV=production: use a real authorization server');
  }
  oidc ??= quietly(() => import('oidc-provider'));
  const { default: Provider } = await oidc;

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.writeHead(503).end();
  };
  const server: Server = opts.https
    ? createHttpsServer(
        { key: opts.https.key, cert: opts.https.cert, ...(opts.https.ca ? { ca: opts.https.ca, requestCert: true, rejectUnauthorized: false } : {}) },
        (req, res) => handler(req, res),
      )
    : createServer((req, res) => handler(req, res));
  const { port } = await listen(server, opts.port, opts.host ?? '127.0.0.1');
  const issuer = `${opts.https ? 'https' : 'http'}://${opts.publicHost ?? 'localhost'}:${port}`;
  const audience = opts.audience ?? 'api.example.com';
  const ttl = opts.accessTokenTtl ?? 900;

  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = randomUUID();
  const jwk = { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };

  // A client certificate can only be seen when the server asks for one.
  const mutualTls = opts.https?.ca !== undefined;
  const { mTLS, dPoP, ...otherFeatures } = (opts.features ?? {}) as { mTLS?: Record<string, unknown>; dPoP?: Record<string, unknown> };
  const features = {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The introspection client may look at any token; a client at its own.
      allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) =>
        client.clientId === DEV_CLIENTS.introspection.id || token.clientId === client.clientId,
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) => token.clientId === client.clientId,
    },
    // A token request with a DPoP proof gets a token bound to the proof's key
    // (cnf.jkt); one without gets a bearer token, as before.
    dPoP: { enabled: true, ...dPoP },
    mTLS: {
      enabled: mutualTls,
      certificateBoundAccessTokens: mutualTls,
      getCertificate: (ctx: { socket: TLSSocket }) => peerCertificate(ctx.socket),
      ...mTLS,
    },
    ...otherFeatures,
  } as Record<string, unknown> as NonNullable<Configuration['features']>;

  const provider: ProviderType = await quietly(
    () =>
      new Provider(issuer, {
        clients: [
          ...(mutualTls
            ? [
                {
                  client_id: DEV_CLIENTS.certificateBound.id,
                  client_secret: DEV_CLIENTS.certificateBound.secret,
                  grant_types: ['client_credentials'],
                  response_types: [],
                  redirect_uris: [],
                  scope: 'read write',
                  token_endpoint_auth_method: 'client_secret_post',
                  tls_client_certificate_bound_access_tokens: true,
                } as ClientMetadata,
              ]
            : []),
          {
            client_id: DEV_CLIENTS.client.id,
            client_secret: DEV_CLIENTS.client.secret,
            grant_types: ['client_credentials'],
            response_types: [],
            redirect_uris: [],
            scope: 'read write',
            // The tutorial's curl sends the secret in the form body.
            token_endpoint_auth_method: 'client_secret_post',
          },
          {
            client_id: DEV_CLIENTS.introspection.id,
            client_secret: DEV_CLIENTS.introspection.secret,
            grant_types: [],
            response_types: [],
            redirect_uris: [],
            token_endpoint_auth_method: 'client_secret_basic',
            ...opts.introspectionClient,
          },
        ],
        // Only an ES256 key exists, so that is what clients get by default.
        // (Defaults apply only to metadata a feature enables: jwtIntrospection's alg.)
        clientDefaults: { id_token_signed_response_alg: 'ES256', introspection_signed_response_alg: 'ES256' },
        scopes: ['read', 'write'],
        // oidc-provider accepts tls_client_auth registrations only when it is listed too.
        ...((features.mTLS as { tlsClientAuth?: boolean }).tlsClientAuth
          ? { clientAuthMethods: ['client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none', 'tls_client_auth'] }
          : {}),
        routes: DEV_ROUTES,
        jwks: { keys: [jwk] },
        cookies: { keys: [randomBytes(32).toString('base64url')] },
        ttl: { ClientCredentials: ttl },
        enabledJWA: { dPoPSigningAlgValues: [...DEV_DPOP_ALGORITHMS] as NonNullable<Configuration['enabledJWA']>['dPoPSigningAlgValues'] },
        features,
      }),
  );

  const stats = { jwtIntrospections: 0, introspections: 0 };
  const providerCallback = provider.callback();
  const jwtIntrospection = phantomIntrospection(provider, privateKey, kid, issuer, audience, stats);
  handler = (req, res) => {
    const accept = req.headers.accept;
    if (req.method === 'POST' && pathOf(req.url) === DEV_ROUTES.introspection) stats.introspections++;
    if (opts.phantomAnswer !== false && req.method === 'POST' && accept !== undefined && /(^|,)\s*application\/jwt\s*(;|,|$)/i.test(accept) && pathOf(req.url) === DEV_ROUTES.introspection) {
      jwtIntrospection(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"server_error"}');
      });
      return;
    }
    providerCallback(req, res);
  };

  return {
    issuer,
    url: issuer,
    port,
    audience,
    stats,
    tokenEndpoint: `${issuer}${DEV_ROUTES.token}`,
    introspectionEndpoint: `${issuer}${DEV_ROUTES.introspection}`,
    revocationEndpoint: `${issuer}${DEV_ROUTES.revocation}`,
    jwksUri: `${issuer}${DEV_ROUTES.jwks}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The certificate the TLS client presented, or undefined (plain http, none sent). */
function peerCertificate(socket: TLSSocket): X509Certificate | undefined {
  const raw = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(false)?.raw : undefined;
  return raw === undefined ? undefined : new X509Certificate(raw);
}

function pathOf(url: string | undefined): string {
  const q = (url ?? '').indexOf('?');
  return q === -1 ? (url ?? '') : url!.slice(0, q);
}

/** The Curity-style phantom token answer: the access token as a signed JWT. */
function phantomIntrospection(
  provider: ProviderType,
  key: CryptoKey,
  kid: string,
  issuer: string,
  audience: string,
  stats: { jwtIntrospections: number },
) {
  const json = (res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
    res.end(JSON.stringify(body));
  };

  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > 16384) return json(res, 413, { error: 'invalid_request', error_description: 'request too large' });
      chunks.push(chunk as Buffer);
    }
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));

    // Client authentication: client_secret_basic (RFC 6749 §2.3.1: id and
    // secret are form-encoded inside Basic) or client_secret_post.
    let id = form.get('client_id');
    let secret = form.get('client_secret');
    const auth = req.headers.authorization;
    if (auth !== undefined && /^basic /i.test(auth)) {
      const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon !== -1) {
        const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
        try {
          id = decode(decoded.slice(0, colon));
          secret = decode(decoded.slice(colon + 1));
        } catch {
          id = null;
        }
      }
    }
    const client = id ? await provider.Client.find(id) : undefined;
    if (!client || id !== DEV_CLIENTS.introspection.id || secret === null || !sameSecret(client.clientSecret ?? '', secret)) {
      return json(res, 401, { error: 'invalid_client' }, { 'www-authenticate': 'Basic realm="introspection"' });
    }
    const value = form.get('token');
    if (!value) return json(res, 400, { error: 'invalid_request', error_description: 'token is required' });

    const token = (await provider.ClientCredentials.find(value)) ?? (await provider.AccessToken.find(value));
    const now = Math.floor(Date.now() / 1000);
    if (!token || !token.exp || token.exp <= now) {
      res.writeHead(204, { 'cache-control': 'no-store' });
      res.end();
      return;
    }
    const accountId = (token as { accountId?: string }).accountId;
    // The token's binding, as oidc-provider's own JSON answer gives it (RFC 9449 §6.2, RFC 8705 §3.2).
    const { jkt, 'x5t#S256': x5t } = token as { jkt?: string; 'x5t#S256'?: string };
    const cnf = jkt !== undefined || x5t !== undefined ? { cnf: { ...(jkt !== undefined ? { jkt } : {}), ...(x5t !== undefined ? { 'x5t#S256': x5t } : {}) } } : {};
    const jwt = await new SignJWT({ client_id: token.clientId, scope: token.scope ?? '', ...cnf })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
      .setIssuer(issuer)
      .setSubject(accountId ?? token.clientId!)
      .setAudience(audience)
      .setIssuedAt(token.iat ?? now)
      .setExpirationTime(token.exp)
      // oidc-provider's opaque token value *is* its jti: putting it in the JWT
      // would hand the API a usable opaque token. A digest names it instead.
      .setJti(createHash('sha256').update(token.jti).digest('base64url'))
      .sign(key);
    stats.jwtIntrospections++;
    res.writeHead(200, { 'content-type': 'application/jwt', 'cache-control': `max-age=${token.exp - now}` });
    res.end(jwt);
  };
}

function sameSecret(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
