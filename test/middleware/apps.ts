/*
 * Real Express and Fastify apps on loopback port 0 with the phantom token
 * middleware in front of a handler that reports what it was given, for the
 * shared middleware suite and the framework-specific tests.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express from 'express';
import Fastify from 'fastify';
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { phantomToken as expressPhantomToken } from '../../src/middleware/express.js';
import { phantomToken as fastifyPhantomToken } from '../../src/middleware/fastify.js';
import type { MiddlewareOptions, PhantomToken } from '../../src/middleware/common.js';

/** What a handler saw, as it answers it. */
export interface Seen {
  method: string;
  url: string;
  /** `req.headers.authorization`. */
  authorization: string | undefined;
  /** Every `Authorization` value in `req.rawHeaders`. */
  rawAuthorization: string[];
  /** `req.phantomToken` / `request.phantomToken` (null when absent). */
  phantomToken: { jwt: string; claims: Record<string, unknown>; scope: string } | null;
  /** `req.headers.dpop`, `req.headers['x-dpop-verified']`. */
  dpop?: string | undefined;
  dpopVerified?: string | undefined;
}

export interface AppUnderTest {
  url: string;
  port: number;
  /** Requests that reached a handler, in order. */
  seen: Seen[];
  /** Errors the app's own error handler received. */
  appErrors: string[];
  close(): Promise<void>;
}

/** Starts an app with the middleware built from `options`; `/…/boom` handlers throw, the app's error handler answers 418. */
export type StartApp = (options: MiddlewareOptions) => Promise<AppUnderTest>;

function describeToken(t: PhantomToken | null | undefined): Seen['phantomToken'] {
  return t == null ? null : { jwt: t.jwt, claims: { ...t.claims }, scope: t.scope };
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

function rawAuthorization(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === 'authorization') out.push(raw[i + 1]!);
  return out;
}

export const startExpressApp: StartApp = async (options) => {
  const seen: Seen[] = [];
  const appErrors: string[] = [];
  const app = express();
  const mw = expressPhantomToken(options);
  app.use(mw);
  app.all('/{*rest}', (req, res) => {
    if (req.path.endsWith('/boom')) throw new Error('thrown by the app');
    const s: Seen = {
      method: req.method,
      url: req.originalUrl,
      authorization: req.headers.authorization,
      rawAuthorization: rawAuthorization(req.rawHeaders),
      phantomToken: describeToken(req.phantomToken),
      dpop: one(req.headers.dpop),
      dpopVerified: one(req.headers['x-dpop-verified']),
    };
    seen.push(s);
    res.json(s);
  });
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    appErrors.push(err.message);
    res.status(418).json({ appError: err.message });
  });
  const server: Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    appErrors,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await mw.close();
    },
  };
};

export const startFastifyApp: StartApp = async (options) => {
  const seen: Seen[] = [];
  const appErrors: string[] = [];
  const app = Fastify();
  await app.register(fastifyPhantomToken, options);
  app.all('/*', async (request) => {
    if (request.url.split('?')[0]!.endsWith('/boom')) throw new Error('thrown by the app');
    const s: Seen = {
      method: request.method,
      url: request.url,
      authorization: request.headers.authorization,
      rawAuthorization: rawAuthorization(request.raw.rawHeaders),
      phantomToken: describeToken(request.phantomToken),
      dpop: one(request.headers.dpop),
      dpopVerified: one(request.headers['x-dpop-verified']),
    };
    seen.push(s);
    return s;
  });
  app.setErrorHandler(async (err: Error, _request, reply) => {
    appErrors.push(err.message);
    return reply.code(418).send({ appError: err.message });
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    appErrors,
    close: async () => {
      app.server.closeAllConnections();
      await app.close();
    },
  };
};

/**
 * The suite's configuration: `/api` (scope `read`), `/admin` (scope
 * `admin`), `/public` open, no upstreams (parsed for a caller that runs no
 * proxy listener). `extra` is appended (more routes, options).
 */
export function middlewareConfig(introspectionUrl: string, extra = ''): GatewayConfig {
  return parseConfig(
    `
phantom_token:
  introspection_endpoint: ${introspectionUrl}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
routes:
  - path: /api
  - path: /admin
    phantom_token:
      scope: admin
  - path: /public
    phantom_token: false
${extra}`,
    { file: 'test.yaml', env: {}, proxy: false },
  );
}

/** A logger whose lines the test can read. */
export function capturedLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(l);
      cb();
    },
  });
  return { logger: createLogger('info', sink), lines };
}

/** Waits until `condition` holds, polling; fails the test after `ms` instead of hanging. */
export async function waitFor(condition: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
