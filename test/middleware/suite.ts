/*
 * One suite of the exchange's behaviours, run against every middleware
 * (hono runs one router suite against every router): the Express and the
 * Fastify test files each call `middlewareSuite` with their app.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import type { TokenEntry } from '../../src/cache/entry.js';
import type { TokenStore } from '../../src/cache/store.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { rawRequest } from '../helpers/raw.js';
import { capturedLogger, middlewareConfig, waitFor, type AppUnderTest, type StartApp } from './apps.js';

const MISSING = { code: 'unauthorized', message: 'Access token required' };
const INACTIVE = { code: 'unauthorized', message: 'Invalid or expired access token' };
const MALFORMED = { code: 'unauthorized', message: 'Malformed Authorization header' };
const FORBIDDEN = { code: 'forbidden', message: 'The access token does not have the required scope' };
const NO_ROUTE = { code: 'not_found', message: 'No route for this path' };

export function middlewareSuite(name: string, startApp: StartApp): void {
  describe(`${name}: the phantom token exchange as middleware`, { timeout: 20_000 }, () => {
    let as: ScriptedIntrospection;
    let guards: Guards;
    let app: AppUnderTest;
    let logs: string[];

    before(async () => {
      as = await startScriptedIntrospection();
      const { logger, lines } = capturedLogger();
      logs = lines;
      guards = createGuards(middlewareConfig(as.url, `  - path: /bounded\n    phantom_token:\n      connections: 1\n`), { logger });
      app = await startApp({ guards, logger });
    });
    after(async () => {
      await app.close();
      await guards.destroy();
      await as.close();
    });
    beforeEach(() => {
      as.calls.length = 0;
      app.seen.length = 0;
      app.appErrors.length = 0;
    });

    test('an active token: the handler gets the JWT in Authorization (headers and raw headers) and the claims; the next request is a cache hit', async () => {
      const jwt = await as.activate('opaque-ok', { name: 'Alice', scope: 'read write' });
      for (let i = 0; i < 2; i++) {
        const res = await request(`${app.url}/api/orders?page=2`, { headers: { authorization: 'Bearer opaque-ok' } });
        assert.equal(res.statusCode, 200);
        const seen = (await res.body.json()) as AppUnderTest['seen'][number];
        assert.equal(seen.url, '/api/orders?page=2');
        assert.equal(seen.authorization, `Bearer ${jwt}`);
        assert.deepEqual(seen.rawAuthorization, [`Bearer ${jwt}`]);
        assert.equal(seen.phantomToken?.jwt, jwt);
        assert.equal(seen.phantomToken?.scope, 'read write');
        assert.equal(seen.phantomToken?.claims.sub, 'user-1');
        assert.equal(seen.phantomToken?.claims.name, 'Alice');
        assert.equal(seen.phantomToken?.claims.iss, 'https://issuer.test');
      }
      assert.equal(as.callsFor('opaque-ok'), 1);
      assert.ok(!logs.join('\n').includes('opaque-ok') && !logs.join('\n').includes(jwt), 'tokens are never logged');
    });

    test('no token: 401, WWW-Authenticate: Bearer, the JSON body of the error table; the handler never runs', async () => {
      const res = await request(`${app.url}/api/orders`);
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(res.headers['cache-control'], 'no-store');
      assert.equal(await res.body.text(), JSON.stringify(MISSING));
      assert.equal(as.calls.length, 0);
      assert.equal(app.seen.length, 0);
    });

    test('a token the authorization server calls inactive: 401 invalid_token', async () => {
      const res = await request(`${app.url}/api/orders`, { headers: { authorization: 'Bearer opaque-dead' } });
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"');
      assert.equal(await res.body.text(), JSON.stringify(INACTIVE));
      assert.equal(as.callsFor('opaque-dead'), 1);
      assert.equal(app.seen.length, 0);
    });

    test('a malformed Authorization header: 401 invalid_request, no introspection', async () => {
      const res = await request(`${app.url}/api/orders`, { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
      assert.equal(res.statusCode, 401);
      assert.equal(await res.body.text(), JSON.stringify(MISSING));
      const res2 = await request(`${app.url}/api/orders`, { headers: { authorization: 'Bearer a b' } });
      assert.equal(res2.statusCode, 401);
      assert.equal(res2.headers['www-authenticate'], 'Bearer error="invalid_request"');
      assert.equal(await res2.body.text(), JSON.stringify(MALFORMED));
      assert.equal(as.calls.length, 0);
    });

    test('a token without the required scope: 403 insufficient_scope naming the scope', async () => {
      await as.activate('opaque-write-only', { scope: 'write' });
      const res = await request(`${app.url}/api/orders`, { headers: { authorization: 'Bearer opaque-write-only' } });
      assert.equal(res.statusCode, 403);
      assert.equal(res.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="read"');
      assert.equal(await res.body.text(), JSON.stringify(FORBIDDEN));
      assert.equal(app.seen.length, 0);
    });

    test('the same token is allowed on /api and refused on /admin (per-route scope), with one introspection', async () => {
      await as.activate('opaque-reader', { scope: 'read' });
      const ok = await request(`${app.url}/api/x`, { headers: { authorization: 'Bearer opaque-reader' } });
      assert.equal(ok.statusCode, 200);
      await ok.body.dump();
      const admin = await request(`${app.url}/admin/users`, { headers: { authorization: 'Bearer opaque-reader' } });
      assert.equal(admin.statusCode, 403);
      assert.equal(admin.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="admin"');
      assert.equal(await admin.body.text(), JSON.stringify(FORBIDDEN));
      assert.equal(as.callsFor('opaque-reader'), 1);
      assert.deepEqual(app.seen.map((s) => s.url), ['/api/x']);
    });

    test('scripted authorization server 503 with Retry-After: 503 with its Retry-After; its body never reaches the client', async () => {
      as.answers.set('opaque-as-down', { status: 503, headers: { 'retry-after': '7', 'content-type': 'text/plain' }, body: 'db connection pool exhausted at 10.0.0.5' });
      const res = await request(`${app.url}/api/orders`, { headers: { authorization: 'Bearer opaque-as-down' } });
      assert.equal(res.statusCode, 503);
      assert.equal(res.headers['retry-after'], '7');
      const body = await res.body.text();
      assert.equal(body, JSON.stringify({ code: 'server_error', message: 'Token validation is temporarily unavailable' }));
      assert.equal(app.seen.length, 0);
    });

    test('scripted authorization server failure (500 with a stack trace): 502 from the table, no internal detail', async () => {
      as.answers.set('opaque-as-broken', { status: 500, headers: { 'content-type': 'text/plain' }, body: 'Error: secret-internal-detail\n    at handler (/srv/as.js:1:1)' });
      const res = await request(`${app.url}/api/orders`, { headers: { authorization: 'Bearer opaque-as-broken' } });
      assert.equal(res.statusCode, 502);
      const body = await res.body.text();
      assert.equal(body, JSON.stringify({ code: 'server_error', message: 'Token validation is unavailable' }));
      assert.ok(!body.includes('secret-internal-detail'));
      assert.equal(res.headers['retry-after'], undefined);
    });

    test('two Authorization headers on a protected route: 401 malformed, no introspection', async () => {
      await as.activate('opaque-twice-a');
      const res = await rawRequest(app.port, 'GET /api/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer opaque-twice-a\r\nAuthorization: Bearer opaque-twice-b\r\nConnection: close\r\n\r\n');
      assert.equal(res.status, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_request"');
      assert.equal(res.body, JSON.stringify(MALFORMED));
      assert.equal(as.calls.length, 0);
      assert.equal(app.seen.length, 0);
    });

    test('concurrent requests with one new token cost one introspection', async () => {
      const jwt = await as.activate('opaque-burst', {}, { delayMs: 100 });
      const answers = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const res = await request(`${app.url}/api/burst`, { headers: { authorization: 'Bearer opaque-burst' } });
          return { status: res.statusCode, seen: (await res.body.json()) as AppUnderTest['seen'][number] };
        }),
      );
      assert.deepEqual(answers.map((a) => a.status), Array(8).fill(200));
      assert.ok(answers.every((a) => a.seen.authorization === `Bearer ${jwt}`));
      assert.equal(as.callsFor('opaque-burst'), 1);
    });

    test('an open route: the request passes untouched, its own Authorization included, without claims', async () => {
      const res = await request(`${app.url}/public/page`, { headers: { authorization: 'Bearer opaque-public' } });
      assert.equal(res.statusCode, 200);
      const seen = (await res.body.json()) as AppUnderTest['seen'][number];
      assert.equal(seen.authorization, 'Bearer opaque-public');
      assert.equal(seen.phantomToken, null);
      assert.equal(as.calls.length, 0);
    });

    test('a path no route covers: 404 from the error table by default', async () => {
      const res = await request(`${app.url}/elsewhere`, { headers: { authorization: 'Bearer opaque-x' } });
      assert.equal(res.statusCode, 404);
      assert.equal(await res.body.text(), JSON.stringify(NO_ROUTE));
      assert.equal(app.seen.length, 0);
      assert.equal(as.calls.length, 0);
    });

    test('the proxy\'s target checks and refusals apply: encoded dot segments 400, TRACE and method overrides 405, a token in the query 400', async () => {
      await as.activate('opaque-hostile');
      const auth = { authorization: 'Bearer opaque-hostile' };
      const dots = await rawRequest(app.port, 'GET /public/%2e%2e/api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.equal(dots.status, 400);
      const trace = await request(`${app.url}/api/x`, { method: 'TRACE', headers: auth });
      assert.equal(trace.statusCode, 405);
      await trace.body.dump();
      for (const name of ['x-http-method-override', 'X-HTTP-Method', 'X_Method_Override']) {
        const override = await request(`${app.url}/api/x`, { method: 'POST', headers: { ...auth, [name]: 'DELETE' } });
        assert.equal(override.statusCode, 405, name);
        await override.body.dump();
      }
      const query = await request(`${app.url}/api/x?access_token=opaque-hostile`);
      assert.equal(query.statusCode, 400);
      assert.equal(query.headers['www-authenticate'], 'Bearer error="invalid_request"');
      await query.body.dump();
      assert.equal(app.seen.length, 0);
      assert.equal(as.calls.length, 0);
    });

    test('a CORS preflight on a protected route passes without a token and without claims', async () => {
      const res = await request(`${app.url}/api/x`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'DELETE' } });
      assert.equal(res.statusCode, 200);
      const seen = (await res.body.json()) as AppUnderTest['seen'][number];
      assert.equal(seen.phantomToken, null);
      assert.equal(as.calls.length, 0);
    });

    test('a refused request that announced a body gets Connection: close (the body is never read)', async () => {
      const res = await request(`${app.url}/api/upload`, { method: 'POST', body: 'x'.repeat(1000), headers: { 'content-type': 'text/plain' } });
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers.connection, 'close');
      await res.body.dump();
    });

    test('an error thrown by a later handler is the app\'s: its own error handler gets it, after an introspection and on a cache hit', async () => {
      await as.activate('opaque-boom');
      for (let i = 0; i < 2; i++) {
        const res = await request(`${app.url}/api/boom`, { headers: { authorization: 'Bearer opaque-boom' } });
        assert.equal(res.statusCode, 418);
        assert.deepEqual(await res.body.json(), { appError: 'thrown by the app' });
      }
      assert.deepEqual(app.appErrors, ['thrown by the app', 'thrown by the app']);
      assert.equal(as.callsFor('opaque-boom'), 1);
    });

    test('a client that leaves while its token waits for a connection withdraws it: that introspection is never sent, the handler never runs', async () => {
      // /bounded has one connection to the authorization server: a slow token holds it.
      await as.activate('opaque-slow', {}, { delayMs: 400 });
      await as.activate('opaque-left');
      const slow = request(`${app.url}/bounded/a`, { headers: { authorization: 'Bearer opaque-slow' } });
      await waitFor(() => guards.introspectionLoad().running === 1);
      const abort = new AbortController();
      const left = request(`${app.url}/bounded/b`, { headers: { authorization: 'Bearer opaque-left' }, signal: abort.signal });
      await waitFor(() => guards.introspectionLoad().queued === 1);
      abort.abort();
      await assert.rejects(left);
      const res = await slow;
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      // Give a withdrawn call the time it would have needed to go out.
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(as.callsFor('opaque-left'), 0);
      assert.deepEqual(app.seen.map((s) => s.url), ['/bounded/a']);
    });
  });

  describe(`${name}: a bug inside the middleware`, { timeout: 20_000 }, () => {
    let as: ScriptedIntrospection;
    let guards: Guards;
    let app: AppUnderTest;
    let logs: string[];
    /** How the scripted broken store fails. */
    let mode: 'throw' | 'async-broken-entry' | 'throwing-entry' = 'throw';
    const broken: TokenStore = {
      get() {
        if (mode === 'throw') throw new Error('secret-internal-detail: store exploded');
        if (mode === 'async-broken-entry') return Promise.resolve({ active: true, expiresAt: Date.now() + 60_000 } as unknown as TokenEntry);
        return {
          active: true,
          scope: ' read ',
          expiresAt: Date.now() + 60_000,
          get authorization(): string {
            throw new Error('secret-internal-detail: entry exploded');
          },
          claims: {},
        };
      },
      set() {},
      delete() {},
    };

    before(async () => {
      as = await startScriptedIntrospection();
      const { logger, lines } = capturedLogger();
      logs = lines;
      guards = createGuards(middlewareConfig(as.url), { logger, store: broken });
      app = await startApp({ guards, logger });
    });
    after(async () => {
      await app.close();
      await guards.destroy();
      await as.close();
    });

    for (const m of ['throw', 'async-broken-entry', 'throwing-entry'] as const) {
      test(`scripted broken store (${m}): 500 from the error table, logged, never the error's message; the handler never runs`, async () => {
        mode = m;
        logs.length = 0;
        const res = await request(`${app.url}/api/x`, { headers: { authorization: 'Bearer opaque-any' } });
        assert.equal(res.statusCode, 500);
        assert.equal(res.headers['content-type'], 'application/json');
        const body = await res.body.text();
        assert.equal(body, JSON.stringify({ code: 'server_error', message: 'Internal error' }));
        assert.equal(app.seen.length, 0);
        assert.equal(app.appErrors.length, 0, 'never handed to the framework\'s error handler');
        assert.ok(logs.some((l) => l.includes('"level":"error"') && l.includes('internal error')), 'logged as an error');
      });
    }
  });
}
