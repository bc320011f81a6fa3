/*
 * The API of the demo, doing what the tutorial's API should have done: it
 * trusts nothing the gateway says, and validates the JWT itself (signature
 * against the authorization server's JWKS, issuer, audience, expiry, `typ`)
 * before authorizing with the token's scope.
 */
import { listen } from '../net/listen.js';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';

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
  const unauthorized = (res: ServerResponse, message: string) =>
    send(res, 401, { code: 'unauthorized', message }, { 'www-authenticate': 'Bearer error="invalid_token"' });

  const server: Server = createServer(async (req, res) => {
    try {
      const path = (req.url ?? '/').split('?')[0]!;
      if (path !== prefix && !path.startsWith(`${prefix}/`)) return send(res, 404, { code: 'not_found', message: 'Not found' });
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'access-control-allow-origin': '*', 'access-control-allow-headers': 'authorization', 'access-control-allow-methods': 'GET, POST' });
        return res.end();
      }
      const m = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '');
      if (!m) return send(res, 401, { code: 'unauthorized', message: 'Missing access token' }, { 'www-authenticate': 'Bearer' });
      let payload;
      try {
        ({ payload } = await jwtVerify(m[1]!, keys, {
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
        return unauthorized(res, 'The access token is not a valid JWT for this API');
      }
      const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
      if (!scopes.includes(requiredScope)) {
        return send(res, 403, { code: 'forbidden', message: `The ${requiredScope} scope is required` }, {
          'www-authenticate': `Bearer error="insufficient_scope", scope="${requiredScope}"`,
        });
      }
      for await (const _chunk of req); // drain any request body
      send(res, 200, { message: 'API called with a valid JWT', method: req.method, path, tokenPayload: payload });
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
