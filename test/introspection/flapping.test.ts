/*
 * Issue 8, item 13a under load: an authorization server (or a proxy in front
 * of it) that flaps between proper answers and 200s that are not decisions
 * ({"error":"temporarily_unavailable"}, null, an empty body) and 503s, while
 * good and garbage tokens stream through the real gateway. A non-decision
 * must never become a 401 for a good token, and nothing from the flap may be
 * remembered once the server is healthy again. Bounded: 400 requests, 16 at a
 * time, over loopback.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { listen, signJwt, startEchoUpstream, type EchoUpstream, type Started } from '../helpers/servers.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call, gatewayConfig } from '../helpers/core.js';

const REQUESTS = 400;
const CONCURRENCY = 16;
/** Answers per phase before the server flips to the next one. */
const PHASE_LENGTH = 5;
type Mode = 'healthy' | 'error-json' | 'null' | 'empty' | 'unavailable';
const CYCLE: readonly Mode[] = ['healthy', 'error-json', 'healthy', 'null', 'empty', 'healthy', 'unavailable'];

describe('non-decision answers under load: a scripted flapping authorization server never turns good tokens into 401s', () => {
  let as: Started;
  let api: EchoUpstream;
  let gw: TestGateway;
  let answered = 0;
  let healthyOnly = false;
  const modesSeen = new Map<Mode, number>();
  /** Good tokens and their JWTs; the first half is answered with no-store, so they are introspected on every request. */
  const good = new Map<string, string>();
  const goodTokens = Array.from({ length: 12 }, (_, i) => `flap-good-${i}-${Math.random().toString(36).slice(2)}`);
  const volatile = new Set(goodTokens.slice(0, 6));

  before(async () => {
    for (const t of goodTokens) good.set(t, await signJwt({}));
    as = await listen(
      createServer(async (req, res) => {
        let body = '';
        for await (const c of req) body += String(c);
        const token = new URLSearchParams(body).get('token') ?? '';
        const mode = healthyOnly ? 'healthy' : CYCLE[Math.floor(answered++ / PHASE_LENGTH) % CYCLE.length]!;
        modesSeen.set(mode, (modesSeen.get(mode) ?? 0) + 1);
        if (mode === 'error-json') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"error":"temporarily_unavailable"}');
        if (mode === 'null') return void res.writeHead(200, { 'content-type': 'application/json' }).end('null');
        if (mode === 'empty') return void res.writeHead(200, { 'content-type': 'application/jwt' }).end();
        if (mode === 'unavailable') return void res.writeHead(503, { 'retry-after': '1' }).end();
        const jwt = good.get(token);
        if (jwt === undefined) return void res.writeHead(204).end();
        res.writeHead(200, { 'content-type': 'application/jwt', ...(volatile.has(token) ? { 'cache-control': 'no-store' } : {}) }).end(jwt);
      }),
    );
    api = await startEchoUpstream();
    gw = await startGateway(
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: '', token_cache_seconds: 300, negative_cache_seconds: 60, timeout_ms: 5000 },
        routes: [{ path: '/api' }],
        extra: { log: { level: 'error', access_log: false } },
      }),
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
  });

  test(`${REQUESTS} mixed requests during the flap: good tokens get 200 or 502/503/504, garbage 401 or 502/503/504; then every good token gets 200 at once`, { timeout: 60_000 }, async (t) => {
    const results: Array<{ good: boolean; status: number }> = [];
    let next = 0;
    const worker = async () => {
      while (next < REQUESTS) {
        const i = next++;
        const isGood = i % 2 === 0;
        // Good tokens in turn; garbage from a pool of 40, so some of it is remembered.
        const token = isGood ? goodTokens[(i / 2) % goodTokens.length]! : `flap-garbage-${i % 40}`;
        const res = await call(`${gw.url}/api`, `Bearer ${token}`);
        results.push({ good: isGood, status: res.status });
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    assert.equal(results.length, REQUESTS);
    const tally = (g: boolean) => {
      const counts: Record<number, number> = {};
      for (const r of results) if (r.good === g) counts[r.status] = (counts[r.status] ?? 0) + 1;
      return counts;
    };
    const goodCounts = tally(true);
    const garbageCounts = tally(false);
    const summary = JSON.stringify({ good: goodCounts, garbage: garbageCounts, modes: Object.fromEntries(modesSeen) });
    t.diagnostic(summary);
    for (const mode of CYCLE) assert.ok((modesSeen.get(mode) ?? 0) > 0, `the flap never answered ${mode}: ${summary}`);
    assert.equal(goodCounts[401] ?? 0, 0, `good tokens were refused as invalid: ${summary}`);
    assert.ok((goodCounts[200] ?? 0) > 0 && (goodCounts[502] ?? 0) > 0, `the flap reached good tokens both ways: ${summary}`);
    for (const status of Object.keys(goodCounts).map(Number)) assert.ok([200, 502, 503, 504].includes(status), `good token answered ${status}: ${summary}`);
    for (const status of Object.keys(garbageCounts).map(Number)) assert.ok([401, 502, 503, 504].includes(status), `garbage token answered ${status}: ${summary}`);

    healthyOnly = true;
    for (const token of goodTokens) {
      const res = await call(`${gw.url}/api`, `Bearer ${token}`);
      assert.equal(res.status, 200, `good token refused (${res.status}) after the server recovered: something from the flap was cached`);
    }
  });
});
