/*
 * Several gateway instances (real `phantom-gateway` processes) sharing one
 * real redis-server: an answer introspected by one is served by the others,
 * a new token seen by all at once is introspected once, a purge on one
 * reaches the others, inactive answers are shared, failures never are.
 * The introspection endpoint is the scripted peer (it counts calls per
 * token and injects faults); the route /real goes to the development
 * authorization server (oidc-provider) and the example API, which verifies
 * the JWT it receives.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { total } from '../admin/prometheus.js';
import { ensureBuilt, freePort, scratchDir } from '../helpers/cli.js';
import { DEV_CLIENTS, startDevAuthorizationServer, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { startExampleApi, type ExampleApi } from '../../src/dev/example-api.js';
import { eventually, skip, startInstance, startRedis, type GatewayInstance, type RedisInstance } from '../helpers/redis.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

/** Every instance drops a purged entry within a second (pub/sub); twice that for a loaded machine. */
const PURGED_WITHIN_MS = 2000;
const inactive = { status: 200, body: JSON.stringify({ active: false }), headers: { 'content-type': 'application/json' } };
let serial = 0;
const fresh = (label: string) => `inst-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;

describe('shared cache across gateway instances (real redis-server, the real command line)', { skip }, () => {
  let redis: RedisInstance;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let realAs: DevAuthorizationServer;
  let realApi: ExampleApi;
  let scratch: ReturnType<typeof scratchDir>;
  let a: GatewayInstance;
  let b: GatewayInstance;
  /** Seven more single processes and one with two workers: with a and b, ten processes serving. */
  let others: GatewayInstance[] = [];

  before(async () => {
    ensureBuilt();
    [redis, as, api, realAs] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream(), startDevAuthorizationServer({ port: await freePort(), publicHost: '127.0.0.1' })]);
    realApi = await startExampleApi({ port: 0, host: '127.0.0.1', issuer: realAs.issuer, audience: realAs.audience, jwksUri: realAs.jwksUri });
    scratch = scratchDir();
    const base = {
      introspection: as.url,
      upstream: api.url,
      redisUrl: redis.url,
      // Short enough that a failed holder's lock does not slow the failure tests much,
      // long enough for ten processes on two cores to wait out one introspection.
      redis: { lock_wait_ms: 4000 },
      phantom: { timeout_ms: 1000 },
      routes: [
        {
          path: '/real',
          upstream: `http://127.0.0.1:${realApi.port}/api`,
          phantom_token: { introspection_endpoint: realAs.introspectionEndpoint, client_id: DEV_CLIENTS.introspection.id, client_secret: DEV_CLIENTS.introspection.secret },
        },
      ],
    };
    const started = await Promise.all([
      startInstance('a', scratch, base),
      startInstance('b', scratch, base),
      ...Array.from({ length: 7 }, (_, i) => startInstance(`single-${i}`, scratch, base)),
      startInstance('workers', scratch, { ...base, workers: 2 }),
    ]);
    [a, b, ...others] = started as [GatewayInstance, GatewayInstance, ...GatewayInstance[]];
    await Promise.all(started.map((g) => g.waitSharedCache('up', 15_000)));
  });

  after(async () => {
    await Promise.all([a, b, ...others].filter((g) => g !== undefined).map((g) => g.stop()));
    await Promise.all([redis?.close(), as?.close(), api?.close(), realAs?.close(), realApi?.close()]);
    scratch?.cleanup();
  });

  test('scripted: two instances, one token: one introspection; the second instance forwards the same JWT', async () => {
    const token = fresh('two');
    const jwt = await as.activate(token, { sub: 'alice' });
    const first = await a.get(token);
    assert.equal(first.status, 200, first.body);
    assert.equal(first.jwt, jwt);
    const second = await b.get(token);
    assert.equal(second.status, 200, second.body);
    assert.equal(second.jwt, jwt, 'instance b forwarded the JWT instance a introspected');
    assert.equal(as.callsFor(token), 1, 'instance b found the answer in Redis');
    // And b's own cache now has it: no more introspections either way.
    for (const g of [a, b, a, b]) assert.equal((await g.get(token)).jwt, jwt);
    assert.equal(as.callsFor(token), 1);
  });

  test('scripted: ten processes (eight instances and a two-worker cluster) see a new token at once: one introspection', async () => {
    const token = fresh('ten');
    // Slow enough that every request arrives while the first introspection is under way.
    const jwt = await as.activate(token, { sub: 'bob' }, { delayMs: 600 });
    const all = [a, b, ...others];
    const cluster = others.find((g) => g.name === 'workers')!;
    const locks = async (outcome: string) => (await Promise.all(all.map(async (g) => total(await g.scrape(), 'phantom_gateway_shared_cache_locks_total', { outcome })))).reduce((x, y) => x + y, 0);
    const wonBefore = await locks('won');
    // Two connections to the cluster: one for each worker.
    const replies = await Promise.all([...all, cluster].map((g) => g.get(token)));
    for (const r of replies) {
      assert.equal(r.status, 200, r.body);
      assert.equal(r.jwt, jwt);
    }
    assert.equal(as.callsFor(token), 1, `${as.callsFor(token)} introspections for one token seen by ten processes`);
    assert.equal((await locks('won')) - wonBefore, 1, 'phantom_gateway_shared_cache_locks_total{outcome="won"} over the ten processes');
    // The waiters did not fall back to their own introspection afterwards either.
    for (const g of all) assert.equal((await g.get(token)).status, 200);
    assert.equal(as.callsFor(token), 1);
  });

  test('scripted: a purge by token on instance a: the next request on instance b introspects again', async () => {
    const token = fresh('purge');
    const jwt = await as.activate(token, { sub: 'carol' });
    const cluster = others.find((g) => g.name === 'workers')!;
    assert.equal((await a.get(token)).jwt, jwt);
    assert.equal((await b.get(token)).jwt, jwt);
    // New connections go to the cluster's workers in turn: both have it cached.
    for (let i = 0; i < 4; i++) assert.equal((await cluster.get(token)).jwt, jwt);
    assert.equal(as.callsFor(token), 1);
    // Revoked at the authorization server, then purged: nobody may serve the old answer.
    as.answers.set(token, inactive);
    const purged = await a.purge({ token });
    assert.equal(purged.status, 200, purged.text);
    assert.equal(purged.json?.instances, 'notified', purged.text);
    assert.ok(((purged.json?.removed as { shared?: number } | undefined)?.shared ?? 0) >= 1, purged.text);
    // Within a second every instance has dropped it (pub/sub; the bound allows for a loaded machine).
    assert.ok(await eventually(async () => (await b.get(token)).status === 401, PURGED_WITHIN_MS), 'instance b still serves the purged token');
    assert.equal((await a.get(token)).status, 401);
    assert.equal((await b.get(token)).status, 401);
    // Every worker of the cluster dropped its copy too (a worker still holding it would answer 200).
    const refusedByCluster = async () => (await Promise.all([0, 1, 2, 3].map(() => cluster.get(token)))).every((r) => r.status === 401);
    assert.ok(await eventually(refusedByCluster, PURGED_WITHIN_MS), 'a worker of the cluster still serves the purged token');
    // b introspected once after the purge, and shared the inactive answer with a and the workers.
    assert.equal(as.callsFor(token), 2);
  });

  test('scripted: a purge by sub on instance a: every token of that sub is introspected again on instance b, others stay cached', async () => {
    const sub = `dave-${Math.random().toString(36).slice(2)}`;
    const [t1, t2, other] = [fresh('sub1'), fresh('sub2'), fresh('other')];
    await as.activate(t1, { sub });
    await as.activate(t2, { sub });
    const otherJwt = await as.activate(other, { sub: 'erin' });
    for (const t of [t1, t2, other]) {
      assert.equal((await a.get(t)).status, 200);
      assert.equal((await b.get(t)).status, 200);
      assert.equal(as.callsFor(t), 1);
    }
    as.answers.set(t1, inactive);
    as.answers.set(t2, inactive);
    const purged = await a.purge({ sub });
    assert.equal(purged.status, 200, purged.text);
    assert.equal(purged.json?.instances, 'notified', purged.text);
    assert.ok(await eventually(async () => (await b.get(t1)).status === 401, PURGED_WITHIN_MS), 'instance b still serves a purged token of the sub');
    assert.equal((await b.get(t2)).status, 401);
    assert.equal((await a.get(t1)).status, 401);
    assert.equal((await a.get(t2)).status, 401);
    assert.equal(as.callsFor(t1), 2);
    assert.equal(as.callsFor(t2), 2);
    // Another sub's token is untouched: still served from the caches.
    assert.equal((await b.get(other)).jwt, otherJwt);
    assert.equal((await a.get(other)).jwt, otherJwt);
    assert.equal(as.callsFor(other), 1);
  });

  test('scripted: an inactive token is shared as negative: instance b does not introspect it again', async () => {
    const token = fresh('inactive');
    as.answers.set(token, inactive);
    const reached = api.received.length;
    assert.equal((await a.get(token)).status, 401);
    assert.equal(as.callsFor(token), 1);
    const r = await b.get(token);
    assert.equal(r.status, 401, r.body);
    assert.equal(r.jwt, undefined);
    assert.equal(as.callsFor(token), 1, 'instance b introspected an inactive token instance a had already asked about');
    assert.equal(api.received.length, reached, 'a request with an inactive token reached the upstream');
  });

  test('scripted: an introspection that fails (500) is never shared: instance b introspects itself', async () => {
    const token = fresh('fail');
    as.answers.set(token, { status: 500, body: 'boom' });
    const failed = await a.get(token);
    assert.ok(failed.status >= 500, `${failed.status} ${failed.body}`);
    assert.equal(as.callsFor(token), 1);
    // The server is back: b asks it rather than repeating a's failure.
    const jwt = await as.activate(token, { sub: 'frank' });
    const r = await b.get(token);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.jwt, jwt);
    assert.equal(as.callsFor(token), 2);
  });

  test('scripted: an introspection that times out is never shared: instance b introspects itself', async () => {
    const token = fresh('timeout');
    // Past timeout_ms (1000): instance a gives up.
    as.answers.set(token, { status: 200, body: JSON.stringify({ active: false }), headers: { 'content-type': 'application/json' }, delayMs: 2500 });
    const failed = await a.get(token);
    assert.ok(failed.status >= 500, `${failed.status} ${failed.body}`);
    assert.equal(as.callsFor(token), 1);
    const jwt = await as.activate(token, { sub: 'grace' });
    const r = await b.get(token);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.jwt, jwt);
    assert.equal(as.callsFor(token), 2);
  });

  /** A client-credentials access token (opaque) from the development authorization server. */
  const realToken = async (): Promise<string> => {
    const r = await request(realAs.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret, grant_type: 'client_credentials', scope: 'read' }).toString(),
    });
    assert.equal(r.statusCode, 200);
    return ((await r.body.json()) as { access_token: string }).access_token;
  };

  test('real authorization server: a token introspected by instance a is served by instance b; the API verifies both JWTs', async () => {
    const token = await realToken();
    const before = realAs.stats.introspections;
    for (const g of [a, b]) {
      const r = await g.call('/real/x', token);
      assert.equal(r.status, 200, `${g.name}: ${r.body}`);
      assert.equal((JSON.parse(r.body) as { message: string }).message, 'API called with a valid JWT');
    }
    assert.equal(realAs.stats.introspections - before, 1, 'instance b introspected a token instance a had shared');
  });

  test('real authorization server: revoked there, purged on instance a: instance b refuses it', async () => {
    const token = await realToken();
    assert.equal((await a.call('/real/x', token)).status, 200);
    assert.equal((await b.call('/real/x', token)).status, 200);
    const revoke = await request(realAs.revocationEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret }).toString(),
    });
    await revoke.body.dump();
    assert.equal(revoke.statusCode, 200);
    // Revoked, but still cached everywhere until purged.
    assert.equal((await b.call('/real/x', token)).status, 200);
    const purged = await a.purge({ token });
    assert.equal(purged.status, 200, purged.text);
    assert.ok(await eventually(async () => (await b.call('/real/x', token)).status === 401, PURGED_WITHIN_MS), 'instance b still serves the revoked token');
    assert.equal((await a.call('/real/x', token)).status, 401);
  });
});
