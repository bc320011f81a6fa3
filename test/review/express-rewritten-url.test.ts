import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { request } from 'undici';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { phantomToken } from '../../src/middleware/express.js';
import { createLogger } from '../../src/observability/logger.js';
import { middlewareConfig } from '../middleware/apps.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';

/*
 * Review finding (security): the Express middleware decides on
 * req.originalUrl, Express routes on req.url (under req.baseUrl). Any
 * middleware before the guard that rewrites req.url (express-urlrewrite,
 * i18n or version prefixes, connect-history-api-fallback) makes the two
 * differ: the decision is taken for one path, the handler of another runs.
 * Fastify's plugin decides on request.url (after rewriteUrl), so the two
 * front doors disagree too.
 */

describe('review: Express decides on originalUrl, routes on url', { timeout: 20_000 }, () => {
  let as: ScriptedIntrospection;
  let guards: Guards;
  let server: Server;
  let url: string;
  const reached: string[] = [];

  before(async () => {
    as = await startScriptedIntrospection();
    // /api (read), /admin (admin), /public open; unmatched paths passed to the app.
    guards = createGuards(middlewareConfig(as.url), { logger: createLogger('silent') });
    const app = express();
    // A legacy prefix rewritten before anything else runs.
    app.use((req, _res, next) => {
      if (req.url.startsWith('/v1/')) req.url = req.url.slice(3);
      next();
    });
    app.use(phantomToken({ guards, unmatched: 'pass' }));
    app.get('/admin/users', (req, res) => {
      reached.push(req.originalUrl);
      res.json({ admin: true });
    });
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await guards.close();
    await as.close();
  });

  test('sanity: /admin/users without a token is 401', async () => {
    const res = await request(`${url}/admin/users`);
    await res.body.text();
    assert.equal(res.statusCode, 401);
  });

  test('/v1/admin/users (rewritten to /admin/users before the guard) without a token never reaches the admin handler', async () => {
    const res = await request(`${url}/v1/admin/users`);
    await res.body.text();
    assert.deepEqual(reached, [], 'the /admin handler ran without a token: the guard decided on /v1/admin/users (unmatched, passed)');
    assert.equal(res.statusCode, 401);
  });
});
