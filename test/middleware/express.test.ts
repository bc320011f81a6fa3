import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { request } from 'undici';
import { ConfigError } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { phantomToken } from '../../src/middleware/express.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { capturedLogger, middlewareConfig, startExpressApp, waitFor } from './apps.js';
import { middlewareSuite } from './suite.js';

middlewareSuite('Express', startExpressApp);

async function listen(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('Express middleware: options and framework details', { timeout: 20_000 }, () => {
  let as: ScriptedIntrospection;
  let guards: Guards;
  let dir: string;

  before(async () => {
    as = await startScriptedIntrospection();
    const { logger } = capturedLogger();
    guards = createGuards(
      middlewareConfig(
        as.url,
        `  - path: /queued
    phantom_token:
      connections: 1
      max_queued_per_client: 1
`,
      ),
      { logger },
    );
    dir = mkdtempSync(join(tmpdir(), 'pg-mw-'));
  });
  after(async () => {
    await guards.destroy();
    await as.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('options are checked when the middleware is built: a TypeError names the option', () => {
    assert.throws(() => phantomToken({}), { name: 'TypeError', message: /exactly one of the "guards" and "config" options/ });
    assert.throws(() => phantomToken({ guards, config: 'x.yaml' }), { name: 'TypeError', message: /exactly one/ });
    assert.throws(() => phantomToken({ guards, unmatched: 'allow' as 'pass' }), { name: 'TypeError', message: /"unmatched" option must be 'refuse' or 'pass'/ });
    assert.throws(() => phantomToken({ guards: {} as Guards }), { name: 'TypeError', message: /"guards" option must come from createGuards\(\)/ });
    // A hand-built object was never validated nor given its defaults.
    assert.throws(() => phantomToken({ config: { routes: [] } as never }), { name: 'TypeError', message: /"config" option must be a file path or a configuration from loadConfigFile\(\) or parseConfig\(\)/ });
  });

  test('a configuration file with a mistake: ConfigError naming the line, when the middleware is built', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, `phantom_token:\n  introspection_endpoint: ${as.url}/introspect\n  client_id: c\n  client_secret: s\n  scop: read\nroutes:\n  - path: /api\n    upstream: http://127.0.0.1:9\n`);
    assert.throws(() => phantomToken({ config: file }), (err: unknown) => err instanceof ConfigError && /bad\.yaml:5: phantom_token\.scop/.test(err.message));
    // Routes need no upstream for the middleware, unless the file also has a proxy listener.
    const proxied = join(dir, 'proxied.yaml');
    writeFileSync(proxied, `listen: { port: 8080 }\nphantom_token:\n  introspection_endpoint: ${as.url}/introspect\n  client_id: c\n  client_secret: s\nroutes:\n  - path: /api\n`);
    assert.throws(() => phantomToken({ config: proxied }), (err: unknown) => err instanceof ConfigError && /proxied\.yaml:7: routes\[0\]\.upstream: is required for the proxy listener/.test(err.message));
  });

  test('built from a configuration file: the middleware owns its guards and close() closes them', async () => {
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, `log:\n  level: silent\nphantom_token:\n  introspection_endpoint: ${as.url}/introspect\n  client_id: c\n  client_secret: s\n  scope: read\nroutes:\n  - path: /api\n`);
    const jwt = await as.activate('opaque-owned');
    const mw = phantomToken({ config: file });
    assert.notEqual(mw.guards, guards);
    const app = express();
    app.use(mw);
    app.get('/api/me', (req, res) => {
      res.json({ authorization: req.headers.authorization, sub: req.phantomToken?.claims.sub });
    });
    const srv = await listen(app.listen(0, '127.0.0.1'));
    try {
      const res = await request(`${srv.url}/api/me`, { headers: { authorization: 'Bearer opaque-owned' } });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(await res.body.json(), { authorization: `Bearer ${jwt}`, sub: 'user-1' });
    } finally {
      await srv.close();
      await mw.close();
    }
  });

  test('unmatched: "pass" hands a path no route covers to the app untouched; covered paths are still guarded', async () => {
    const app = await startExpressApp({ guards, unmatched: 'pass' });
    try {
      const res = await request(`${app.url}/home?x=1`, { headers: { authorization: 'Bearer opaque-not-ours' } });
      assert.equal(res.statusCode, 200);
      const seen = (await res.body.json()) as { authorization: string; phantomToken: unknown };
      assert.equal(seen.authorization, 'Bearer opaque-not-ours');
      assert.equal(seen.phantomToken, null);
      const guarded = await request(`${app.url}/api/x`);
      assert.equal(guarded.statusCode, 401);
      await guarded.body.dump();
      assert.equal(as.callsFor('opaque-not-ours'), 0);
    } finally {
      await app.close();
    }
  });

  test('mounted under a path, the middleware decides on req.originalUrl (the whole path), not the mount-relative req.url', async () => {
    const app = express();
    app.use('/api', phantomToken({ guards }));
    app.use('/admin', phantomToken({ guards }));
    app.all('/{*rest}', (req, res) => {
      res.json({ url: req.originalUrl });
    });
    const srv = await listen(app.listen(0, '127.0.0.1'));
    try {
      await as.activate('opaque-mounted', { scope: 'read' });
      const ok = await request(`${srv.url}/api/x`, { headers: { authorization: 'Bearer opaque-mounted' } });
      assert.equal(ok.statusCode, 200);
      await ok.body.dump();
      // req.url is /users under the mount; /users is no route, /admin requires scope admin.
      const admin = await request(`${srv.url}/admin/users`, { headers: { authorization: 'Bearer opaque-mounted' } });
      assert.equal(admin.statusCode, 403);
      await admin.body.dump();
    } finally {
      await srv.close();
    }
  });

  test('headers set by earlier middleware (CORS) are kept on a refusal, which still has the table\'s headers', async () => {
    const app = express();
    app.use((_req, res, next) => {
      res.setHeader('access-control-allow-origin', 'https://app.example');
      next();
    });
    app.use(phantomToken({ guards }));
    const srv = await listen(app.listen(0, '127.0.0.1'));
    try {
      const res = await request(`${srv.url}/api/x`);
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers['access-control-allow-origin'], 'https://app.example');
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(await res.body.text(), '{"code":"unauthorized","message":"Access token required"}');
      const head = await request(`${srv.url}/api/x`, { method: 'HEAD' });
      assert.equal(head.statusCode, 401);
      assert.equal(await head.body.text(), '');
    } finally {
      await srv.close();
    }
  });

  test('an earlier middleware that built req.headersDistinct does not keep the opaque token there', async () => {
    const app = express();
    app.use((req, _res, next) => {
      assert.ok(req.headersDistinct.authorization);
      next();
    });
    app.use(phantomToken({ guards }));
    app.get('/api/x', (req, res) => {
      res.json({ distinct: req.headersDistinct.authorization, raw: req.rawHeaders.filter((_v, i) => req.rawHeaders[i - 1]?.toLowerCase() === 'authorization') });
    });
    const srv = await listen(app.listen(0, '127.0.0.1'));
    try {
      const jwt = await as.activate('opaque-distinct');
      const res = await request(`${srv.url}/api/x`, { headers: { authorization: 'Bearer opaque-distinct' } });
      assert.deepEqual(await res.body.json(), { distinct: [`Bearer ${jwt}`], raw: [`Bearer ${jwt}`] });
    } finally {
      await srv.close();
    }
  });

  test('Connect style: a plain node:http server calling the middleware with (req, res, next)', async () => {
    const mw = phantomToken({ guards });
    const jwt = await as.activate('opaque-connect');
    const srv = await listen(
      createServer((req, res) =>
        mw(req, res, (err) => {
          res.writeHead(err === undefined ? 200 : 500, { 'content-type': 'text/plain' });
          res.end(String(req.headers.authorization));
        }),
      ),
    );
    try {
      const res = await request(`${srv.url}/api/x`, { headers: { authorization: 'Bearer opaque-connect' } });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), `Bearer ${jwt}`);
      const refused = await request(`${srv.url}/api/x`);
      assert.equal(refused.statusCode, 401);
      await refused.body.dump();
    } finally {
      await srv.close();
    }
  });

  test('with `trust proxy`, the per-client bound on waiting introspections counts the client address Express computes (req.ip)', async () => {
    const app = express();
    app.set('trust proxy', 'loopback');
    app.use(phantomToken({ guards }));
    app.all('/{*rest}', (_req, res) => {
      res.json({});
    });
    const srv = await listen(app.listen(0, '127.0.0.1'));
    try {
      // /queued: one connection to the authorization server, one waiting introspection per client.
      await as.activate('opaque-hold', {}, { delayMs: 300 });
      for (const t of ['opaque-q1', 'opaque-q2', 'opaque-q3']) await as.activate(t);
      const call = (token: string, client: string) =>
        request(`${srv.url}/queued/x`, { headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': client } }).then(async (r) => {
          await r.body.dump();
          return r.statusCode;
        });
      const hold = call('opaque-hold', '10.0.0.9');
      await waitFor(() => guards.introspectionLoad().running === 1);
      const first = call('opaque-q1', '10.0.0.1');
      await waitFor(() => guards.introspectionLoad().queued === 1);
      const other = call('opaque-q2', '10.0.0.2');
      await waitFor(() => guards.introspectionLoad().queued === 2);
      // A second new token from 10.0.0.1 while its first waits: 429.
      assert.equal(await call('opaque-q3', '10.0.0.1'), 429);
      assert.deepEqual(await Promise.all([hold, first, other]), [200, 200, 200]);
    } finally {
      await srv.close();
    }
  });
});
