import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { request } from 'undici';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { phantomToken } from '../../src/middleware/fastify.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { capturedLogger, middlewareConfig, startFastifyApp } from './apps.js';
import { middlewareSuite } from './suite.js';

middlewareSuite('Fastify', startFastifyApp);

describe('Fastify plugin: options and framework details', { timeout: 20_000 }, () => {
  let as: ScriptedIntrospection;
  let guards: Guards;

  before(async () => {
    as = await startScriptedIntrospection();
    guards = createGuards(middlewareConfig(as.url), { logger: capturedLogger().logger });
  });
  after(async () => {
    await guards.destroy();
    await as.close();
  });

  test('registered on the app, the hook guards every route, those of encapsulated plugins too (skip-override, as fastify-plugin does)', async () => {
    const app = Fastify();
    await app.register(phantomToken, { guards });
    await app.register(async (child) => {
      child.get('/api/inner', async (request) => ({ sub: request.phantomToken?.claims.sub }));
    });
    app.get('/api/outer', async (request) => ({ authorization: request.headers.authorization, sub: request.phantomToken?.claims.sub }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      const refused = await request(`${url}/api/outer`);
      assert.equal(refused.statusCode, 401);
      await refused.body.dump();
      const jwt = await as.activate('opaque-outer');
      const ok = await request(`${url}/api/outer`, { headers: { authorization: 'Bearer opaque-outer' } });
      assert.equal(ok.statusCode, 200);
      assert.deepEqual(await ok.body.json(), { authorization: `Bearer ${jwt}`, sub: 'user-1' });
      const innerRefused = await request(`${url}/api/inner`);
      assert.equal(innerRefused.statusCode, 401);
      await innerRefused.body.dump();
      const inner = await request(`${url}/api/inner`, { headers: { authorization: 'Bearer opaque-outer' } });
      assert.deepEqual(await inner.body.json(), { sub: 'user-1' });
      // Fastify's own 404 (no Fastify route) runs the hook too: the table's answer, not Fastify's.
      const none = await request(`${url}/nowhere`);
      assert.equal(none.statusCode, 404);
      assert.equal(await none.body.text(), '{"code":"not_found","message":"No route for this path"}');
    } finally {
      await app.close();
    }
  });

  test('a refusal goes through the app\'s onSend hooks (CORS headers) and keeps the table\'s content type, challenge and body', async () => {
    const app = Fastify();
    app.addHook('onSend', async (_request, reply) => {
      reply.header('access-control-allow-origin', 'https://app.example');
    });
    await app.register(phantomToken, { guards });
    app.get('/api/x', async () => ({}));
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const res = await request(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/api/x`);
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers['access-control-allow-origin'], 'https://app.example');
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(res.headers['cache-control'], 'no-store');
      const body = '{"code":"unauthorized","message":"Access token required"}';
      assert.equal(res.headers['content-length'], String(body.length));
      assert.equal(await res.body.text(), body);
      const head = await request(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/api/x`, { method: 'HEAD' });
      assert.equal(head.statusCode, 401);
      assert.equal(head.headers['www-authenticate'], 'Bearer');
      assert.equal(await head.body.text(), '');
    } finally {
      await app.close();
    }
  });

  test('bad options fail registration with a TypeError naming the option', async () => {
    const app = Fastify();
    app.register(phantomToken, { guards, unmatched: 'skip' as 'pass' });
    await assert.rejects(async () => void (await app.ready()), { name: 'TypeError', message: /"unmatched" option must be 'refuse' or 'pass'/ });
    const app2 = Fastify();
    app2.register(phantomToken, {});
    await assert.rejects(async () => void (await app2.ready()), { name: 'TypeError', message: /exactly one of the "guards" and "config" options/ });
  });

  test('built from a configuration, the plugin owns its guards and closes them when the app closes; unmatched: "pass" reaches the app', async () => {
    const app = Fastify();
    await app.register(phantomToken, { config: middlewareConfig(as.url, 'log:\n  level: silent\n'), unmatched: 'pass' });
    app.get('/home', async (request) => ({ authorization: request.headers.authorization ?? null, token: request.phantomToken }));
    app.get('/api/x', async (request) => ({ sub: request.phantomToken?.claims.sub }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    await as.activate('opaque-own');
    const home = await request(`${url}/home`, { headers: { authorization: 'Bearer not-checked' } });
    assert.deepEqual(await home.body.json(), { authorization: 'Bearer not-checked', token: null });
    const api = await request(`${url}/api/x`, { headers: { authorization: 'Bearer opaque-own' } });
    assert.deepEqual(await api.body.json(), { sub: 'user-1' });
    assert.equal(as.callsFor('not-checked'), 0);
    await app.close();
  });
});
