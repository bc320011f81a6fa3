import type { FastifyInstance, FastifyReply } from 'fastify';
import type { RenderedRefusal } from '../core/render.js';
import { addressedUrl, createEngine, guardRequest, plainAddress, type MiddlewareOptions, type PhantomToken } from './common.js';

export type { MiddlewareOptions, PhantomToken } from './common.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The token of a request the phantom token plugin let through; null on an open route, a CORS preflight or an unmatched path passed on. */
    phantomToken: PhantomToken | null;
  }
}

/** The Fastify plugin: `app.register(phantomToken, options)`. */
export interface PhantomTokenPlugin {
  (app: FastifyInstance, options: MiddlewareOptions, done: (err?: Error) => void): void;
}

/**
 * The phantom token exchange as a Fastify (5) plugin: an `onRequest` hook on
 * the whole app (not only the context it is registered in, as with
 * fastify-plugin), so it runs before routing's 404, body parsing and every
 * handler. Each request's own path and query (`request.url`) go through the
 * configuration's routes: a protected route needs a bearer token, which is
 * introspected (cached, one introspection per token at a time) and replaced
 * in `Authorization` by the JWT; handlers find the token in
 * `request.phantomToken`. DPoP routes and certificate-bound tokens work as
 * with the Express middleware (`htu` from `request.protocol`,
 * `request.host` and `request.originalUrl`, following `trustProxy`). Refusals are sent by the hook itself (the app's
 * `onSend` hooks, such as CORS, still apply), never thrown into the error
 * handler, which would send an error's message. Guards built from `config`
 * are closed when the app closes.
 *
 * @example
 * import Fastify from 'fastify';
 * import { phantomToken } from 'phantom-gateway/fastify';
 *
 * const app = Fastify();
 * await app.register(phantomToken, { config: 'gateway.yaml' });
 * app.get('/api/me', async (request) => ({ sub: request.phantomToken?.claims.sub }));
 */
export const phantomToken: PhantomTokenPlugin = function phantomToken(app, options, done) {
  let engine;
  try {
    engine = createEngine(options, 'phantomToken');
  } catch (err) {
    done(err as Error);
    return;
  }
  const e = engine;
  app.decorateRequest('phantomToken', null);
  app.addHook('onRequest', (request, reply, next) => {
    // Fastify's protocol and host follow its trustProxy setting for X-Forwarded-Proto/-Host; the path as the client sent it.
    const addressed = () => addressedUrl(request.protocol, request.host, request.originalUrl);
    guardRequest(e, request.raw, reply.raw, request.url, plainAddress(request.ip), addressed, {
      proceed(token) {
        if (token !== undefined) request.phantomToken = token;
        next();
      },
      refuse: (refusal, close) => send(reply, refusal, close),
      appError: (err) => next(err as Error),
    });
  });
  app.addHook('onClose', (_app, closed) => {
    e.close().then(() => closed(), closed);
  });
  done();
};

// What fastify-plugin does: the hook and the decorator belong to the app
// that registers the plugin, not to an encapsulated child context.
Object.assign(phantomToken, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: 'phantom-gateway' });

/** The body as bytes, so that Fastify sends it as rendered (a string would get `; charset=utf-8` added to its type). */
const bodies = new WeakMap<RenderedRefusal, Buffer>();

function send(reply: FastifyReply, r: RenderedRefusal, close: boolean): void {
  if (reply.sent || reply.raw.destroyed) return;
  let body = bodies.get(r);
  if (body === undefined) bodies.set(r, (body = Buffer.from(r.body)));
  reply.code(r.status);
  // Fastify sets Content-Length itself, after any onSend hook of the app.
  for (const name in r.headers) if (name !== 'content-length') reply.header(name, r.headers[name]);
  if (close) reply.header('connection', 'close');
  reply.send(body);
}
