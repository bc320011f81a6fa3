/*
 * The token exchange through the real gateway: cache hits, the three TTL
 * bounds (token_cache_seconds, Cache-Control max-age, JWT exp) each tested
 * alone with a fake clock, uncacheable answers, the negative cache, failures
 * that must never be cached, scope on misses and hits, single-flight, the
 * LRU bound; then TokenExchange directly for what the gateway hides (cache
 * size and keys).
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError, TOKEN_INACTIVE } from '../../src/core/errors.js';
import { ScopePolicy } from '../../src/policy/scope.js';
import { jwtWithPayload, startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call, coreExchange, fakeClock, gatewayConfig, type CoreExchange, type Reply } from '../helpers/core.js';

let serial = 0;
/** A token no earlier test has used, so the gateway has not cached it. */
const fresh = (label: string) => `exch-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;
const forwardedAuthorization = (res: Reply) => (JSON.parse(res.body) as { headers: Record<string, string> }).headers.authorization;

describe('token exchange through the gateway', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  const clock = fakeClock();

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    gw = await startGateway(
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: 'read', token_cache_seconds: 60, negative_cache_seconds: 10 },
        routes: [
          { path: '/api' },
          { path: '/any', phantom_token: { scope: '' } },
          { path: '/write', phantom_token: { scope: 'write' } },
          { path: '/impatient', phantom_token: { timeout_ms: 150 } },
          { path: '/uncached', phantom_token: { token_cache_seconds: 0 } },
          { path: '/rotated', phantom_token: { client_secret: 'rotated-secret', connections: 4 } },
        ],
      }),
      { now: clock.now },
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
  });
  beforeEach(() => {
    clock.reset();
    as.calls.length = 0;
    api.received.length = 0;
  });

  const get = (path: string, token: string) => call(`${gw.url}${path}`, `Bearer ${token}`);

  describe('cache', () => {
    test('cache hit: the second request makes no introspection and forwards the same JWT', async () => {
      const t = fresh('hit');
      const jwt = await as.activate(t);
      const first = await get('/api', t);
      const second = await get('/api/other', t);
      assert.equal(first.status, 200);
      assert.equal(second.status, 200);
      assert.equal(as.callsFor(t), 1);
      assert.equal(forwardedAuthorization(second), `Bearer ${jwt}`);
      const access = gw.logs.filter((l) => l.msg === 'request').slice(-2);
      assert.deepEqual(access.map((l) => l.cache), ['miss', 'hit']);
    });

    test('TTL bound token_cache_seconds (60): hit at +59 s, introspected again at +60 s; reads do not extend it', async () => {
      const t = fresh('tcs');
      await as.activate(t, {}, { expiresIn: 3600 });
      assert.equal((await get('/api', t)).status, 200);
      clock.advance(59_000);
      assert.equal((await get('/api', t)).status, 200);
      assert.equal(as.callsFor(t), 1, 'still cached at +59 s');
      clock.advance(1_000);
      assert.equal((await get('/api', t)).status, 200);
      assert.equal(as.callsFor(t), 2, 'expired at +60 s although read at +59 s');
    });

    test('TTL bound Cache-Control max-age (30 < token_cache_seconds 60): hit at +29 s, introspected again at +30 s', async () => {
      const t = fresh('maxage');
      await as.activate(t, {}, { expiresIn: 3600, headers: { 'cache-control': 'private, max-age=30' } });
      await get('/api', t);
      clock.advance(29_000);
      assert.equal((await get('/api', t)).status, 200);
      assert.equal(as.callsFor(t), 1);
      clock.advance(1_000);
      assert.equal((await get('/api', t)).status, 200);
      assert.equal(as.callsFor(t), 2);
    });

    test('TTL bound JWT exp (20 s < max-age 40 < 60): hit at +18 s, at +20 s introspected again and the expired JWT refused', async () => {
      const t = fresh('exp');
      await as.activate(t, {}, { expiresIn: 20, headers: { 'cache-control': 'max-age=40' } });
      clock.reset(); // not before the JWT's (real-time) iat, so exp - now <= 20 s
      assert.equal((await get('/api', t)).status, 200);
      clock.advance(18_000);
      assert.equal((await get('/api', t)).status, 200);
      assert.equal(as.callsFor(t), 1);
      clock.advance(2_000);
      const res = await get('/api', t);
      assert.equal(as.callsFor(t), 2, 'the entry must not outlive the JWT');
      // The scripted server still answers with the same, now expired, JWT.
      assert.equal(res.status, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"');
    });

    for (const [name, cc] of [
      ['the first of two max-age directives wins', 'max-age=30, max-age=3000'],
      ['the first of two max-age lines wins', ['max-age=30', 'max-age=3000']],
      ['the quoted form is read too', 'max-age="30"'],
      ['a quoted argument is data, not directives', ['private="no-store, max-age=0", max-age=30', 'public']],
    ] as const) {
      test(`Cache-Control max-age (${name}): ${JSON.stringify(cc)} -> hit at +29 s, introspected again at +30 s`, async () => {
        const t = fresh('maxage-strict');
        await as.activate(t, {}, { expiresIn: 3600, headers: { 'cache-control': cc as string | string[] } });
        assert.equal((await get('/api', t)).status, 200);
        clock.advance(29_000);
        assert.equal((await get('/api', t)).status, 200);
        assert.equal(as.callsFor(t), 1);
        clock.advance(1_000);
        assert.equal((await get('/api', t)).status, 200);
        assert.equal(as.callsFor(t), 2);
      });
    }

    test('JWT without exp: cached at most token_cache_seconds (60), and one warning for the introspection endpoint, not one per answer', async () => {
      const tokens = [fresh('no-exp'), fresh('no-exp')];
      for (const t of tokens) as.answers.set(t, { status: 200, body: jwtWithPayload('{"sub":"u","scope":"read"}'), headers: { 'content-type': 'application/jwt' } });
      const mark = gw.logs.length;
      for (const t of tokens) assert.equal((await get('/api', t)).status, 200);
      clock.advance(59_000);
      for (const t of tokens) assert.equal((await get('/api', t)).status, 200);
      assert.deepEqual(tokens.map((t) => as.callsFor(t)), [1, 1], 'cached');
      clock.advance(1_000);
      for (const t of tokens) assert.equal((await get('/api', t)).status, 200);
      assert.deepEqual(tokens.map((t) => as.callsFor(t)), [2, 2], 'not beyond token_cache_seconds');
      const warnings = gw.logs.slice(mark).filter((l) => l.level === 'warn');
      assert.deepEqual(warnings.map((w) => w.code), ['WARN_JWT_WITHOUT_EXP']);
      assert.match(String(warnings[0]!.msg), /token_cache_seconds/);
    });

    test('cache namespace holds only what changes an answer: another client_secret, pool size or timeout shares the entry (rotating a secret keeps the cache)', async () => {
      const t = fresh('shared-namespace');
      await as.activate(t);
      assert.equal((await get('/api', t)).status, 200);
      assert.equal((await get('/rotated', t)).status, 200);
      assert.equal((await get('/impatient', t)).status, 200);
      assert.equal(as.callsFor(t), 1, 'one introspection for routes that differ only in secret, connections or timeout_ms');
    });

    test('a route with token_cache_seconds: 0 is never answered from another route\'s cache entry (a revoked token is refused at once)', async () => {
      const t = fresh('per-route-ttl');
      await as.activate(t);
      assert.equal((await get('/api', t)).status, 200);
      assert.equal((await get('/uncached', t)).status, 200);
      assert.equal(as.callsFor(t), 2, '/uncached introspected although /api had cached the token');
      as.answers.delete(t); // revoked: the endpoint now answers 204
      const res = await get('/uncached', t);
      assert.equal(as.callsFor(t), 3);
      assert.equal(res.status, 401);
      assert.equal((await get('/api', t)).status, 200, '/api keeps its own cached answer for up to its token_cache_seconds');
      assert.equal(as.callsFor(t), 3);
    });

    // Cache-Control read strictly: every line counts (RFC 9110 §5.3), and what
    // cannot be read for certain is not cached.
    for (const cc of [
      'no-store',
      'max-age=0',
      'no-cache',
      ['max-age=30', 'no-store'],
      ['private', 'max-age=30, no-cache="set-cookie"'],
      'max-age=0x10',
      'max-age=1e2',
      'max-age=-1',
      'max-age=30.5',
      'max-age=',
      'max-age',
      'max-age = 30',
      'max-age=0, max-age=30',
      'private="x, y, max-age=30',
    ]) {
      test(`Cache-Control: ${JSON.stringify(cc)} -> every request introspects`, async () => {
        const t = fresh('nostore');
        await as.activate(t, {}, { headers: { 'cache-control': cc } });
        for (let i = 0; i < 3; i++) assert.equal((await get('/api', t)).status, 200);
        assert.equal(as.callsFor(t), 3);
      });
    }

    test('inactive token (204): 401, remembered for negative_cache_seconds (10) only', async () => {
      const t = fresh('inactive');
      const first = await get('/api', t);
      assert.equal(first.status, 401);
      assert.equal(first.headers['www-authenticate'], 'Bearer error="invalid_token"');
      await as.activate(t); // the token becomes active at the authorization server
      clock.advance(9_000);
      assert.equal((await get('/api', t)).status, 401, 'still the remembered refusal at +9 s');
      assert.equal(as.callsFor(t), 1);
      clock.advance(1_000);
      assert.equal((await get('/api', t)).status, 200, 'asked again at +10 s');
      assert.equal(as.callsFor(t), 2);
    });

    for (const [name, path, answer, status] of [
      ['500', '/api', { status: 500, body: 'boom' }, 502],
      ['503', '/api', { status: 503 }, 503],
      ['timeout', '/impatient', { status: 200, body: 'x', delayMs: 400 }, 504],
      ['200 with a JSON error from a proxy', '/api', { status: 200, body: '{"error":"temporarily_unavailable"}', headers: { 'content-type': 'application/json' } }, 502],
      ['200 null', '/api', { status: 200, body: 'null', headers: { 'content-type': 'application/json' } }, 502],
    ] as const) {
      test(`failure (${name}) -> ${status}, never cached: the next request introspects again`, async () => {
        const t = fresh(`fail-${name.replace(/\W+/g, '-')}`);
        as.answers.set(t, answer);
        assert.equal((await get(path, t)).status, status);
        assert.equal((await get(path, t)).status, status);
        assert.equal(as.callsFor(t), 2);
        await as.activate(t);
        assert.equal((await get(path, t)).status, 200, 'once the server answers, the token works at once');
        assert.equal(as.callsFor(t), 3);
      });
    }
  });

  describe('scope', () => {
    test('token without the required scope: 403 forbidden with an insufficient_scope challenge, nothing forwarded', async () => {
      const t = fresh('noscope');
      await as.activate(t, { scope: 'profile email' });
      const res = await get('/api', t);
      assert.equal(res.status, 403);
      assert.equal(res.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="read"');
      assert.equal((JSON.parse(res.body) as { code: string }).code, 'forbidden');
      assert.equal(api.received.length, 0);
    });

    test('scope is checked on a cache hit: cached via a route without a requirement, then 403 on the route requiring write', async () => {
      const t = fresh('hitscope');
      await as.activate(t, { scope: 'read' });
      assert.equal((await get('/any', t)).status, 200);
      const res = await get('/write', t);
      assert.equal(as.callsFor(t), 1, 'the second request was a cache hit');
      assert.equal(res.status, 403);
      assert.equal(res.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="write"');
      assert.deepEqual(JSON.parse(res.body), { code: 'forbidden', message: 'The access token does not have the required scope' });
      assert.equal((await get('/api', t)).status, 200, 'the same cached token still passes where its scope suffices');
      assert.equal(api.received.length, 2);
    });

    test('a refusal is not cached as a decision: a 403 token still passes on a route it is allowed on', async () => {
      const t = fresh('deny-then-allow');
      await as.activate(t, { scope: 'read' });
      assert.equal((await get('/write', t)).status, 403);
      assert.equal((await get('/api', t)).status, 200);
      assert.equal(as.callsFor(t), 1);
    });

    test('scp (array) claim grants scopes too', async () => {
      const t = fresh('scp');
      await as.activate(t, { scope: 'read', scp: ['write'] });
      assert.equal((await get('/write', t)).status, 200);
    });

    test('concurrent requests sharing one introspection each get their own route policy', async () => {
      const t = fresh('sf-scope');
      await as.activate(t, { scope: 'read' }, { delayMs: 50 });
      const [a, w] = await Promise.all([get('/any', t), get('/write', t)]);
      assert.equal(as.callsFor(t), 1);
      assert.equal(a.status, 200);
      assert.equal(w.status, 403);
    });
  });

  describe('single-flight', () => {
    test('50 concurrent requests with the same uncached token: exactly 1 introspection, 50 x 200 with its JWT', async () => {
      const t = fresh('sf');
      const jwt = await as.activate(t, {}, { delayMs: 100 });
      const replies = await Promise.all(Array.from({ length: 50 }, () => get('/api', t)));
      assert.equal(as.callsFor(t), 1);
      assert.deepEqual(replies.map((r) => r.status), Array(50).fill(200));
      for (const r of replies) assert.equal(forwardedAuthorization(r), `Bearer ${jwt}`);
      assert.equal(api.received.length, 50);
    });

    test('different tokens concurrently: one introspection each', async () => {
      const tokens = Array.from({ length: 5 }, () => fresh('sf-multi'));
      for (const t of tokens) await as.activate(t, {}, { delayMs: 50 });
      const replies = await Promise.all(tokens.flatMap((t) => Array.from({ length: 10 }, () => get('/api', t))));
      assert.ok(replies.every((r) => r.status === 200));
      assert.deepEqual(tokens.map((t) => as.callsFor(t)), [1, 1, 1, 1, 1]);
      assert.equal(as.calls.length, 5);
    });

    test('a failed flight is shared by its waiters but not remembered', async () => {
      const t = fresh('sf-fail');
      as.answers.set(t, { status: 500, delayMs: 100 });
      const replies = await Promise.all(Array.from({ length: 20 }, () => get('/api', t)));
      assert.deepEqual(replies.map((r) => r.status), Array(20).fill(502));
      assert.equal(as.callsFor(t), 1);
      await get('/api', t);
      assert.equal(as.callsFor(t), 2);
    });
  });
});

describe('cache bound through the gateway (cache.max_entries: 3)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    gw = await startGateway(
      gatewayConfig({ introspection: as.url, upstream: api.url, phantom: { scope: '' }, routes: [{ path: '/api' }], extra: { cache: { max_entries: 3 } } }),
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
  });

  test('5 tokens: the least recently used are evicted and introspected again, the recent ones stay', async () => {
    const tokens = ['lru-1', 'lru-2', 'lru-3', 'lru-4', 'lru-5'];
    for (const t of tokens) await as.activate(t);
    const get = async (t: string) => assert.equal((await call(`${gw.url}/api`, `Bearer ${t}`)).status, 200);
    for (const t of tokens) await get(t);
    assert.deepEqual(tokens.map((t) => as.callsFor(t)), [1, 1, 1, 1, 1]);
    // Cache now holds 3, 4, 5.
    await get('lru-5');
    await get('lru-4');
    await get('lru-3');
    assert.equal(as.calls.length, 5, '3, 4 and 5 are still cached');
    await get('lru-1');
    assert.equal(as.callsFor('lru-1'), 2, 'the first token was evicted');
    // 1 evicted the least recently used of 3, 4, 5: that is 5.
    await get('lru-3');
    await get('lru-4');
    assert.equal(as.calls.length, 6);
    await get('lru-5');
    assert.equal(as.callsFor('lru-5'), 2);
  });
});

describe('garbage tokens cannot evict valid ones (cache.max_entries: 200, max_negative_entries: 100)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;

  before(async () => {
    as = await startScriptedIntrospection(); // unknown tokens: 204 (inactive)
    api = await startEchoUpstream();
    gw = await startGateway(
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: '' },
        routes: [{ path: '/api' }],
        extra: { cache: { max_entries: 200, max_negative_entries: 100 } },
      }),
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
  });

  test('a cached valid token is still a cache hit after 260 distinct garbage tokens; the garbage evicts only garbage', async () => {
    const valid = fresh('valid-under-flood');
    await as.activate(valid);
    assert.equal((await call(`${gw.url}/api`, `Bearer ${valid}`)).status, 200);
    const garbage = Array.from({ length: 260 }, (_, i) => `garbage-${i}-${Math.random().toString(36).slice(2)}`);
    // 10 at a time: quick, and no burst a loaded machine would choke on.
    for (let i = 0; i < garbage.length; i += 10) {
      const replies = await Promise.all(garbage.slice(i, i + 10).map((g) => call(`${gw.url}/api`, `Bearer ${g}`)));
      assert.ok(replies.every((r) => r.status === 401));
    }
    const calls = as.calls.length;
    assert.equal((await call(`${gw.url}/api`, `Bearer ${valid}`)).status, 200);
    assert.equal(as.callsFor(valid), 1, 'the valid token was evicted by garbage');
    assert.equal((await call(`${gw.url}/api`, `Bearer ${garbage.at(-1)}`)).status, 401);
    assert.equal(as.calls.length, calls, 'the most recent garbage token is remembered');
    assert.equal((await call(`${gw.url}/api`, `Bearer ${garbage[0]}`)).status, 401);
    assert.equal(as.callsFor(garbage[0]!), 2, 'the negative store is bounded by max_negative_entries');
  });
});

describe('TokenExchange directly', () => {
  let as: ScriptedIntrospection;
  let core: CoreExchange;
  const open = new ScopePolicy('');

  before(async () => {
    as = await startScriptedIntrospection();
  });
  after(async () => {
    await core?.close();
    await as.close();
  });

  test('the cache never holds more than max_entries (3) while 5 tokens pass', async () => {
    core = coreExchange(as.url, { maxEntries: 3 });
    for (let i = 1; i <= 5; i++) {
      const t = `unit-bound-${i}`;
      await as.activate(t);
      const v = await core.exchange.authorize(`Bearer ${t}`, open);
      assert.ok(!(v instanceof GatewayError), `token ${i} refused`);
      assert.ok(core.cache.size <= 3, `size ${core.cache.size} after ${i} tokens`);
    }
    assert.equal(core.cache.stored.length, 5);
    assert.equal(core.cache.maxSize, 3);
    assert.equal(core.cache.size, 3);
    await core.close();
  });

  test('cache keys are hashes: no key equals or contains the token, and no entry holds it', async () => {
    core = coreExchange(as.url);
    const active = ['unit-key-AbCdEfGhIjKlMnOp', 'unit-key-2bQ9xZ'];
    const inactive = 'unit-key-inactive-0123456789'; // the endpoint answers 204
    for (const t of active) await as.activate(t);
    for (const t of [...active, inactive]) await core.exchange.authorize(`Bearer ${t}`, open);
    assert.equal(core.cache.stored.length, 3, 'two positive entries and one negative entry');
    assert.deepEqual(core.cache.stored.map((s) => s.entry.active), [true, true, false]);
    for (const { key, entry } of core.cache.stored) {
      assert.match(key, /^[A-Za-z0-9+/]{43}=$/, 'a base64 SHA-256 digest');
      const serialised = JSON.stringify(entry);
      for (const t of [...active, inactive]) {
        assert.ok(!key.includes(t), `key contains ${t}`);
        assert.ok(!serialised.includes(t), `entry contains ${t}`);
      }
    }
    assert.equal(new Set(core.cache.stored.map((s) => s.key)).size, 3, 'distinct tokens, distinct keys');
    await core.close();
  });

  test('the same token under another namespace (endpoint, client) gets another key', async () => {
    const a = coreExchange(as.url, { namespace: 'https://a.example/introspect\nclient' });
    const b = coreExchange(as.url, { namespace: 'https://b.example/introspect\nclient' });
    await as.activate('unit-ns');
    await a.exchange.authorize('Bearer unit-ns', open);
    await b.exchange.authorize('Bearer unit-ns', open);
    assert.notEqual(a.cache.stored[0]!.key, b.cache.stored[0]!.key);
    await Promise.all([a.close(), b.close()]);
  });

  test('a cache hit is answered synchronously; a miss is a promise shared by concurrent callers', async () => {
    core = coreExchange(as.url);
    await as.activate('unit-sync', {}, { delayMs: 30 });
    const p1 = core.exchange.authorize('Bearer unit-sync', open);
    const p2 = core.exchange.authorize('Bearer  unit-sync', open);
    assert.ok(p1 instanceof Promise && p2 instanceof Promise);
    assert.equal(core.exchange.inflight, 1);
    const [v1, v2] = await Promise.all([p1, p2]);
    assert.equal(v1, v2, 'both callers get the same entry');
    assert.equal(core.exchange.inflight, 0);
    const hit = core.exchange.authorize('Bearer unit-sync', open);
    assert.ok(!(hit instanceof Promise));
    assert.equal(hit, v1);
    assert.equal(as.callsFor('unit-sync'), 1);
    await core.close();
  });

  test('a JWT already expired at introspection is refused and not stored as active', async () => {
    const clock = fakeClock();
    core = coreExchange(as.url, { now: clock.now });
    await as.activate('unit-expired', {}, { expiresIn: -5 });
    assert.equal(await core.exchange.authorize('Bearer unit-expired', open), TOKEN_INACTIVE);
    assert.ok(core.cache.stored.every((s) => s.entry.active === false));
    await core.close();
  });
});
