/*
 * What the logs say, through the real gateway: the access-log fields on a
 * hit, a miss, a refusal from the cache and one after an introspection;
 * `sub` only with `log.access_log_sub`; labels and ISO time; the debug
 * line on each cache decision (TTL and why); never a token or a JWT.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { gatewayConfig } from '../helpers/core.js';

let serial = 0;
const fresh = (label: string) => `opaque-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

describe('access log fields', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  let withSub: TestGateway;
  const tokens: string[] = [];
  const jwts: string[] = [];

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const config = (log: Record<string, unknown>) =>
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: 'read', token_cache_seconds: 60 },
        routes: [{ path: '/api' }],
        extra: { log: { level: 'debug', ...log }, trusted_proxies: ['127.0.0.1'] },
      });
    gw = await startGateway(config({}));
    withSub = await startGateway(config({ access_log_sub: true }));
  });
  after(async () => {
    await gw.close();
    await withSub.close();
    await as.close();
    await api.close();
  });

  const lineFor = (g: TestGateway, id: string) => {
    const l = g.logs.find((x) => x.msg === 'request' && x.request_id === id);
    assert.ok(l, `an access-log line for ${id}`);
    return l;
  };

  test('a miss then a hit: request id, client address (after trusted_proxies), route, upstream, introspection ms on the miss only, client_id; no sub by default', async () => {
    const t = fresh('ok');
    tokens.push(t);
    jwts.push(await as.activate(t, { client_id: 'app-7', scope: 'read' }));
    const miss = await get(`${gw.url}/api/orders?page=2`, { authorization: `Bearer ${t}`, 'x-forwarded-for': '203.0.113.9' });
    assert.equal(miss.status, 200);
    const hit = await get(`${gw.url}/api/orders`, { authorization: `Bearer ${t}`, 'x-forwarded-for': '203.0.113.9' });
    assert.equal(hit.status, 200);
    const m = lineFor(gw, miss.headers['x-request-id'] as string);
    const h = lineFor(gw, hit.headers['x-request-id'] as string);
    assert.equal(m.cache, 'miss');
    assert.equal(h.cache, 'hit');
    for (const l of [m, h]) {
      assert.equal(l.level, 'info');
      assert.match(l.time as string, ISO);
      assert.equal(l.method, 'GET');
      assert.equal(l.path, '/api/orders', 'the path, never the query');
      assert.equal(l.status, 200);
      assert.equal(l.client_address, '203.0.113.9');
      assert.equal(l.route, '/api');
      assert.equal(l.upstream, api.url);
      assert.equal(l.client_id, 'app-7');
      assert.equal('sub' in l, false, 'sub is personal data: off by default');
    }
    assert.equal(typeof m.introspection_ms, 'number');
    assert.ok((m.introspection_ms as number) >= 0);
    assert.equal('introspection_ms' in h, false);
  });

  test('refusals: from the cache is a hit, after an introspection a miss (issue 11: both were "-")', async () => {
    const inactive = fresh('inactive');
    tokens.push(inactive);
    as.answers.set(inactive, { status: 204 });
    const first = await get(`${gw.url}/api/x`, { authorization: `Bearer ${inactive}` });
    const again = await get(`${gw.url}/api/x`, { authorization: `Bearer ${inactive}` });
    assert.deepEqual([first.status, again.status], [401, 401]);
    assert.equal(lineFor(gw, first.headers['x-request-id'] as string).cache, 'miss');
    assert.equal(lineFor(gw, again.headers['x-request-id'] as string).cache, 'hit');
    // 403 (a scope the token lacks) from the cache.
    const noScope = fresh('noscope');
    tokens.push(noScope);
    jwts.push(await as.activate(noScope, { scope: 'write' }));
    const a = await get(`${gw.url}/api/x`, { authorization: `Bearer ${noScope}` });
    const b = await get(`${gw.url}/api/x`, { authorization: `Bearer ${noScope}` });
    assert.deepEqual([a.status, b.status], [403, 403]);
    assert.equal(lineFor(gw, a.headers['x-request-id'] as string).cache, 'miss');
    assert.equal(lineFor(gw, b.headers['x-request-id'] as string).cache, 'hit');
    const none = await get(`${gw.url}/api/x`);
    assert.equal(lineFor(gw, none.headers['x-request-id'] as string).cache, '-', 'no token: nothing looked up');
  });

  test('sub only with log.access_log_sub: true', async () => {
    const t = fresh('sub');
    tokens.push(t);
    // The scripted server's JWTs name sub "user-1".
    jwts.push(await as.activate(t, { client_id: 'app-8', scope: 'read' }));
    const res = await get(`${withSub.url}/api/x`, { authorization: `Bearer ${t}` });
    assert.equal(res.status, 200);
    const l = lineFor(withSub, res.headers['x-request-id'] as string);
    assert.equal(l.sub, 'user-1');
    assert.equal(l.client_id, 'app-8');
  });

  test('debug: each cache decision with its TTL and why, keyed by 8 hex digits of the cache key', async () => {
    const shortLived = fresh('exp');
    tokens.push(shortLived);
    jwts.push(await as.activate(shortLived, { scope: 'read' }, { expiresIn: 20 }));
    const maxAge = fresh('maxage');
    tokens.push(maxAge);
    jwts.push(await as.activate(maxAge, { scope: 'read' }, { headers: { 'cache-control': 'max-age=7' } }));
    const noStore = fresh('nostore');
    tokens.push(noStore);
    jwts.push(await as.activate(noStore, { scope: 'read' }, { headers: { 'cache-control': 'no-store' } }));
    for (const t of [shortLived, maxAge, noStore]) assert.equal((await get(`${gw.url}/api/x`, { authorization: `Bearer ${t}` })).status, 200);
    const cached = gw.logs.filter((l) => l.msg === 'token cached');
    const reasons = cached.map((l) => l.reason);
    for (const r of ['token_cache_seconds', 'negative', 'exp', 'max-age', 'no-store']) assert.ok(reasons.includes(r), `reason ${r} in ${JSON.stringify(reasons)}`);
    for (const l of cached) {
      assert.equal(l.level, 'debug');
      assert.match(l.key as string, /^[0-9a-f]{8}$/);
      assert.equal(typeof l.ttl_s, 'number');
    }
    const byReason = (r: string) => cached.find((l) => l.reason === r)!;
    assert.ok((byReason('exp').ttl_s as number) <= 20);
    assert.equal(byReason('max-age').ttl_s, 7);
    assert.equal(byReason('no-store').ttl_s, 0);
  });

  test('no line in any of it holds an opaque token, a JWT or a part of one', () => {
    for (const g of [gw, withSub]) {
      const raw = g.rawLogs();
      assert.ok(raw.length > 0);
      for (const t of tokens) assert.ok(!raw.includes(t), 'an opaque token appears in the logs');
      for (const jwt of jwts) {
        const [, payload, signature] = jwt.split('.');
        assert.ok(!raw.includes(payload!) && !raw.includes(signature!), 'a JWT appears in the logs');
      }
      assert.ok(!raw.includes('page=2'), 'a query string appears in the logs');
    }
  });
});
