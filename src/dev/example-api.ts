/*
 * The API of the demo, doing what the tutorial's API should have done: it
 * trusts nothing the gateway says, and validates the JWT itself (signature
 * against the authorization server's JWKS, issuer, audience, expiry, `typ`)
 * before authorizing with the token's scope.
 *
 * A JWT forwarded as `Authorization: DPoP <jwt>` (the gateway's default for
 * DPoP routes) is checked as RFC 9449 asks of a resource server with what an
 * API behind the gateway still has: the forwarded proof's signature and
 * `typ`, its method, and its key's thumbprint against the JWT's `cnf.jkt`.
 * What only the gateway can check (`ath` against the opaque token, `htu`
 * against the public URL, `jti` once, `iat`) it did, and says so in
 * `X-DPoP-Verified`; the API shows that header, it does not rely on it.
 */
import { listen } from '../net/listen.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';

/** Asymmetric algorithms a forwarded DPoP proof may use. */
const PROOF_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'];

/** What the API found of a DPoP request (shown in its answer). */
interface DpopSeen {
  /** The JWT's `cnf.jkt`: the key the token is bound to. */
  jkt: string;
  /** The gateway's `X-DPoP-Verified` as received (the thumbprint it checked), or null. */
  verifiedByGateway: string | null;
}

/**
 * The forwarded proof is signed by the key the JWT is bound to, for this
 * method; otherwise why the request is refused.
 */
async function checkForwardedProof(req: IncomingMessage, payload: JWTPayload): Promise<DpopSeen | string> {
  const jkt = (payload.cnf as { jkt?: unknown } | undefined)?.jkt;
  if (typeof jkt !== 'string') return 'The access token is not DPoP-bound';
  const header = req.headersDistinct.dpop;
  if (header === undefined || header.length !== 1) return 'Exactly one DPoP proof is required';
  try {
    const { payload: claims, protectedHeader } = await jwtVerify(header[0]!, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: PROOF_ALGORITHMS });
    if (claims.htm !== req.method) return 'The DPoP proof is for another method';
    if ((await calculateJwkThumbprint(protectedHeader.jwk!, 'sha256')) !== jkt) return 'The DPoP proof is signed by another key than the token is bound to';
  } catch {
    return 'The DPoP proof is not valid';
  }
  const verified = req.headers['x-dpop-verified'];
  return { jkt, verifiedByGateway: typeof verified === 'string' ? verified : null };
}

export interface ExampleApiOptions {
  port: number;
  host?: string;
  issuer: string;
  audience: string;
  /** Where to fetch the signing keys; or give `keys` directly. */
  jwksUri?: string;
  keys?: JWTVerifyGetKey;
  /** Scope every call must carry; default `read`. */
  requiredScope?: string;
  /** Path prefix served; default `/api`. */
  path?: string;
}

export interface ExampleApi {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startExampleApi(opts: ExampleApiOptions): Promise<ExampleApi> {
  const keys = opts.keys ?? createRemoteJWKSet(new URL(opts.jwksUri!), { timeoutDuration: 5000, cooldownDuration: 30_000 });
  const requiredScope = opts.requiredScope ?? 'read';
  const prefix = opts.path ?? '/api';

  const send = (res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body, null, 2);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };
  const unauthorized = (res: ServerResponse, message: string, scheme = 'Bearer') =>
    send(res, 401, { code: 'unauthorized', message }, { 'www-authenticate': `${scheme} error="invalid_token"` });

  const server: Server = createServer(async (req, res) => {
    try {
      const path = (req.url ?? '/').split('?')[0]!;
      if (path !== prefix && !path.startsWith(`${prefix}/`)) return send(res, 404, { code: 'not_found', message: 'Not found' });
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'access-control-allow-origin': '*', 'access-control-allow-headers': 'authorization', 'access-control-allow-methods': 'GET, POST' });
        return res.end();
      }
      const m = /^(Bearer|DPoP) +(\S+)$/i.exec(req.headers.authorization ?? '');
      if (!m) return send(res, 401, { code: 'unauthorized', message: 'Missing access token' }, { 'www-authenticate': 'Bearer, DPoP' });
      const scheme = m[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
      let payload;
      try {
        ({ payload } = await jwtVerify(m[2]!, keys, {
          issuer: opts.issuer,
          audience: opts.audience,
          typ: 'at+jwt',
          algorithms: ['ES256', 'EdDSA', 'RS256', 'PS256'],
          requiredClaims: ['exp', 'iat', 'sub', 'client_id'],
        }));
      } catch (err) {
        if (err instanceof errors.JWKSTimeout || err instanceof errors.JOSEError && err.code === 'ERR_JWKS_INVALID') {
          return send(res, 503, { code: 'server_error', message: 'Cannot fetch signing keys' });
        }
        // Opaque tokens land here too: they are not JWTs at all.
        return unauthorized(res, 'The access token is not a valid JWT for this API', scheme);
      }
      let dpop: DpopSeen | undefined;
      if (scheme === 'DPoP') {
        const seen = await checkForwardedProof(req, payload);
        if (typeof seen === 'string') return unauthorized(res, seen, 'DPoP');
        dpop = seen;
      }
      const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
      if (!scopes.includes(requiredScope)) {
        return send(res, 403, { code: 'forbidden', message: `The ${requiredScope} scope is required` }, {
          'www-authenticate': `Bearer error="insufficient_scope", scope="${requiredScope}"`,
        });
      }
      for await (const _chunk of req); // drain any request body
      send(res, 200, { message: 'API called with a valid JWT', method: req.method, path, tokenPayload: payload, ...(dpop ? { dpop } : {}) });
    } catch {
      if (!res.headersSent) send(res, 500, { code: 'server_error', message: 'Internal error' });
      else res.destroy();
    }
  });
  const { port } = await listen(server, opts.port, opts.host ?? '127.0.0.1');
  return {
    port,
    url: `http://localhost:${port}${prefix}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
