import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Guards } from '../core/guards.js';
import type { RenderedRefusal } from '../core/render.js';
import { createEngine, guardRequest, plainAddress, type MiddlewareOptions, type PhantomToken } from './common.js';

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
 * request's own path and query (`req.originalUrl`, so mounting under a path
 * changes nothing) go through the configuration's routes: a protected route
 * needs a bearer token, which is introspected (cached, one introspection per
 * token at a time) and replaced in `Authorization` by the JWT; the handler
 * finds the token's claims in `req.phantomToken`. Refusals are sent here,
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
    const r = req as IncomingMessage & { originalUrl?: string; ip?: string; phantomToken?: PhantomToken | undefined };
    // Express's req.ip follows the app's `trust proxy` setting; Connect has none.
    const address = typeof r.ip === 'string' ? r.ip : req.socket.remoteAddress;
    guardRequest(engine, req, res, r.originalUrl ?? req.url ?? '', plainAddress(address), {
      proceed(token) {
        r.phantomToken = token;
        next();
      },
      refuse: (refusal, close) => send(req, res, refusal, close),
      appError: (err) => next(err),
    });
  };
  return Object.assign(middleware, { guards: engine.guards, close: engine.close });
}

function send(req: IncomingMessage, res: ServerResponse, r: RenderedRefusal, close: boolean): void {
  if (res.headersSent || res.destroyed) return;
  const headers: OutgoingHttpHeaders = close ? { ...r.headers, connection: 'close' } : r.headers;
  res.writeHead(r.status, headers);
  res.end(req.method === 'HEAD' ? undefined : r.body);
}
