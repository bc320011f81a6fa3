import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { Gateway } from '../../src/proxy/server.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { capturedLogger, startExpressApp, startFastifyApp, type AppUnderTest } from './apps.js';

describe('one Guards shared by the Express middleware, the Fastify plugin and the proxy', { timeout: 20_000 }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let guards: Guards;
  let gateway: Gateway;
  let proxyUrl: string;
  let ex: AppUnderTest;
  let fa: AppUnderTest;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const config = parseConfig(
      `
log: { level: silent }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
routes:
  - path: /api
    upstream: ${api.url}
`,
      { file: 'test.yaml', env: {} },
    );
    const { logger } = capturedLogger();
    guards = createGuards(config, { logger });
    gateway = new Gateway(config, { logger, guards });
    proxyUrl = `http://127.0.0.1:${(await gateway.listen(0, '127.0.0.1')).port}`;
    ex = await startExpressApp({ guards, logger });
    fa = await startFastifyApp({ guards, logger });
  });
  after(async () => {
    await ex.close();
    await fa.close();
    await gateway.close();
    await guards.close();
    await as.close();
    await api.close();
  });

  const call = async (base: string, token: string) => {
    const res = await request(`${base}/api/x`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await res.body.json()) as { headers?: { authorization?: string }; authorization?: string };
    return { status: res.statusCode, authorization: body.headers?.authorization ?? body.authorization };
  };

  test('a token introspected through one front door is a cache hit at the others', async () => {
    const jwt = await as.activate('opaque-shared');
    assert.deepEqual(await call(proxyUrl, 'opaque-shared'), { status: 200, authorization: `Bearer ${jwt}` });
    assert.deepEqual(await call(ex.url, 'opaque-shared'), { status: 200, authorization: `Bearer ${jwt}` });
    assert.deepEqual(await call(fa.url, 'opaque-shared'), { status: 200, authorization: `Bearer ${jwt}` });
    assert.equal(as.callsFor('opaque-shared'), 1);
  });

  test('one new token arriving at all three front doors at once costs one introspection (one single-flight)', async () => {
    const jwt = await as.activate('opaque-together', {}, { delayMs: 100 });
    const answers = await Promise.all([proxyUrl, ex.url, fa.url, proxyUrl, ex.url, fa.url].map((u) => call(u, 'opaque-together')));
    assert.ok(answers.every((a) => a.status === 200 && a.authorization === `Bearer ${jwt}`));
    assert.equal(as.callsFor('opaque-together'), 1);
  });

  test('an inactive token remembered by one front door is refused by the others without asking again', async () => {
    for (const u of [ex.url, fa.url, proxyUrl]) {
      const res = await request(`${u}/api/x`, { headers: { authorization: 'Bearer opaque-dead-shared' } });
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"');
      await res.body.dump();
    }
    assert.equal(as.callsFor('opaque-dead-shared'), 1);
  });
  test('a refusal looks the same from every front door: status, content type, challenge, cache-control, body', async () => {
    await as.activate('opaque-writer', { scope: 'write' });
    for (const headers of [{}, { authorization: 'Bearer opaque-writer' }, { authorization: 'Bearer a b' }]) {
      const seen = [];
      for (const u of [proxyUrl, ex.url, fa.url]) {
        const res = await request(`${u}/api/x`, { headers });
        const h = res.headers;
        seen.push({ status: res.statusCode, type: h['content-type'], challenge: h['www-authenticate'], cache: h['cache-control'], body: await res.body.text() });
      }
      assert.ok(seen[0]!.status >= 401 && seen[0]!.status <= 403);
      assert.deepEqual(seen[1], seen[0]);
      assert.deepEqual(seen[2], seen[0]);
    }
  });
});
