import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Guards } from '../core/guards.js';
import type { RenderedRefusal } from '../core/render.js';
import { addressedUrl, createEngine, guardRequest, plainAddress, type MiddlewareOptions, type PhantomToken } from './common.js';

export type { MiddlewareOptions, PhantomToken } from './common.js';

declare global {
  // Express's own augmentation point: `req.phantomToken` is typed in every handler.
  namespace Express {
    interface Request {
      /** The token of a request the phantom token middleware let through; undefined on an open route, a CORS preflight or an unmatched path passed on. */
      phantomToken?: PhantomToken | undefined;
    }
  }
}

/** An Express or Connect middleware, with the guards it runs on. */
export interface PhantomTokenMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void;
  readonly guards: Guards;
  /** Closes the guards when they were built from `config` (connections to the authorization servers); nothing on shared guards. */
  close(): Promise<void>;
}

/**
 * The phantom token exchange as Express (4, 5) or Connect middleware. Each
 * request's path and query as Express routes them (`req.baseUrl + req.url`:
 * the whole path, so mounting under a path changes nothing, after any
 * rewrite before the guard; 400 when `req.originalUrl` falls under another
 * route) go through the configuration's routes: a protected route
 * needs a bearer token (or a DPoP-bound one and its proof, per the route's
 * `scheme`), which is introspected (cached, one introspection per token at
 * a time) and replaced in `Authorization` by the JWT; the handler finds the
 * token's claims in `req.phantomToken`, and, with a verified DPoP proof,
 * `DPoP` and `X-DPoP-Verified` in `req.headers`. A DPoP proof's `htu` is
 * `req.protocol`, the host (`X-Forwarded-Host` only as `trust proxy`
 * allows) and `req.originalUrl`; a certificate-bound token needs the app's
 * own TLS connection to carry that client certificate. Refusals are sent here,
 * with the gateway's statuses, `WWW-Authenticate` and JSON bodies; they never
 * go through `next(err)`, whose default handler would send an error's
 * message.
 *
 * @example
 * import express from 'express';
 * import { phantomToken } from 'phantom-gateway/express';
 *
 * const app = express();
 * app.use(phantomToken({ config: 'gateway.yaml' }));
 * app.get('/api/me', (req, res) => res.json({ sub: req.phantomToken?.claims.sub }));
 */
export function phantomToken(options: MiddlewareOptions): PhantomTokenMiddleware {
  const engine = createEngine(options, 'phantomToken');
  const middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void => {
    const r = req as ExpressRequest;
    // Express's req.ip follows the app's `trust proxy` setting; Connect has none.
    const address = typeof r.ip === 'string' ? r.ip : req.socket.remoteAddress;
    const original = typeof r.originalUrl === 'string' ? r.originalUrl : undefined;
    const addressed = () => addressedUrl(schemeOf(r), hostOf(r), original ?? req.url ?? '');
    guardRequest(engine, req, res, routedUrl(r.baseUrl, req.url ?? '', original), plainAddress(address), addressed, {
      proceed(token) {
        r.phantomToken = token;
        next();
      },
      refuse: (refusal, close) => send(req, res, refusal, close),
      appError: (err) => next(err),
    }, original);
  };
  return Object.assign(middleware, { guards: engine.guards, close: engine.close });
}

type ExpressRequest = IncomingMessage & {
  originalUrl?: string;
  baseUrl?: string;
  ip?: string;
  protocol?: string;
  app?: { get?(setting: string): unknown };
  phantomToken?: PhantomToken | undefined;
};

/** `req.protocol` (Express: `X-Forwarded-Proto` from a peer its `trust proxy` trusts); Connect: the connection's own. */
function schemeOf(r: ExpressRequest): string {
  if (typeof r.protocol === 'string') return r.protocol;
  return (r.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http';
}

/**
 * The host and port the client addressed, as Express 5's `req.host` reads
 * it (Express 4's drops the port): `X-Forwarded-Host` from a peer the app's
 * `trust proxy` trusts, else `Host`. Connect: `Host`.
 */
function hostOf(r: ExpressRequest): string | undefined {
  const trust = r.app?.get?.('trust proxy fn');
  const xfh = r.headers['x-forwarded-host'];
  if (typeof xfh === 'string' && xfh !== '' && typeof trust === 'function' && (trust as (addr: string | undefined, i: number) => boolean)(r.socket.remoteAddress, 0)) {
    const comma = xfh.indexOf(',');
    return (comma === -1 ? xfh : xfh.slice(0, comma)).trim();
  }
  return r.headers.host;
}

/**
 * What Express routes the request on: `req.baseUrl` (the paths of the
 * routers and `app.use(path)` mounts it went through) + `req.url` (the rest,
 * as rewritten by any middleware before this one). Express gives a mounted
 * middleware `/` for an empty rest (`/v1` mounted at `/v1` reads `/v1/`):
 * that is the client's own path, given back as sent. Connect has no
 * `baseUrl`: `req.url` alone.
 */
function routedUrl(baseUrl: string | undefined, url: string, original: string | undefined): string {
  if (typeof baseUrl !== 'string' || baseUrl === '') return url;
  const routed = baseUrl + url;
  if (original !== undefined && routed !== original && url.startsWith('/') && original === baseUrl + url.slice(1)) return original;
  return routed;
}

function send(req: IncomingMessage, res: ServerResponse, r: RenderedRefusal, close: boolean): void {
  if (res.headersSent || res.destroyed) return;
  const headers: OutgoingHttpHeaders = close ? { ...r.headers, connection: 'close' } : r.headers;
  res.writeHead(r.status, headers);
  res.end(req.method === 'HEAD' ? undefined : r.body);
}
