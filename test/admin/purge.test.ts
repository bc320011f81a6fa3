/*
 * POST /cache/purge on the admin listener: a token, or every token of a
 * subject or a client, removed from the cache before its time, so the next
 * request introspects again. Against a real gateway with the scripted
 * introspection endpoint (it counts introspections and can turn a token
 * inactive); with `workers: 2` through the real command line (every
 * worker's cache is purged). Most need no Redis: the local cache is purged
 * the same way with or without one; the last suites add a real
 * redis-server (the purge reaches the other instances, and a Redis down
 * turns it into a 503).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { AdminListener } from '../../src/admin/server.js';
import { combinePurges } from '../../src/admin/start.js';
import { createLogger } from '../../src/observability/logger.js';
import { GatewayMetrics } from '../../src/observability/metrics.js';
import { call } from '../helpers/core.js';
import { ensureBuilt, freePort, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { sharedUp, skip as noRedis, startRedis, TEST_KEY_SECRET, type RedisInstance } from '../helpers/redis.js';
import { adminCall, startAdminStack, type AdminStack } from './helpers.js';

const ADMIN_TOKEN = 'b7e1c0d2f3a4958677665544332211ff';
const AUTH = `Bearer ${ADMIN_TOKEN}`;
const JSON_TYPE = 'application/json';
const FORM = 'application/x-www-form-urlencoded';

function stackYaml(as: ScriptedIntrospection, api: EchoUpstream, token: string | undefined, extra = ''): string {
  return `${extra}
admin: { listen: { host: 127.0.0.1, port: 0 }${token === undefined ? '' : `, token: ${token}`} }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: ${api.url}
`;
}

function inactive(as: ScriptedIntrospection, token: string): void {
  as.answers.set(token, { status: 200, body: '{"active":false}', headers: { 'content-type': 'application/json' } });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 25 ms until it holds or `ms` have passed; whether it held. */
async function until(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
}

function redisYaml(redis: RedisInstance): string {
  return `cache:\n  redis:\n    url: ${redis.url}\n    key_secret: ${TEST_KEY_SECRET}\n    command_timeout_ms: 200\n`;
}

/** One request over a connection of its own (a cluster hands each new connection to the next worker). */
function fresh(url: string, authorization: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, headers: { authorization, connection: 'close' } }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode!));
    });
    req.once('error', reject);
  });
}

/** A raw request on its own socket; resolves with everything the server sent once it closes the connection. */
function raw(port: number, head: string, body: string | Buffer = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8').on('data', (d: string) => (text += d));
    socket.once('error', reject);
    socket.once('close', () => resolve(text));
    socket.write(head);
    if (body.length > 0) socket.write(body);
  });
}

/** The JSON log lines whose message starts with `msg`. */
function logLines(text: string, msg: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => typeof l.msg === 'string' && l.msg.startsWith(msg));
}

describe('POST /cache/purge on a gateway (scripted introspection)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let stack: AdminStack;
  let purgeUrl: string;
  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    stack = await startAdminStack(stackYaml(as, api, ADMIN_TOKEN));
    purgeUrl = `${stack.adminUrl}/cache/purge`;
  });
  after(async () => {
    await stack?.close();
    await api?.close();
    await as?.close();
  });

  const use = async (token: string, expected = 200) => assert.equal((await call(`${stack.url}/api/x`, `Bearer ${token}`)).status, expected, token);

  test('a token purged by JSON, then by form: each time the next request introspects again', async () => {
    const token = 'opaque-purge-token-alpha-7c1d';
    await as.activate(token, { sub: 'subject-alpha-91', client_id: 'client-alpha-91' });
    await use(token);
    await use(token);
    assert.equal(as.callsFor(token), 1, 'the second request is a cache hit');

    let r = await adminCall(purgeUrl, { method: 'POST', authorization: AUTH, contentType: JSON_TYPE, body: JSON.stringify({ token }) });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { status: 'purged', removed: { local: 1, shared: 0 }, instances: 'not_configured' });
    assert.equal(r.headers.connection, 'keep-alive', 'the body was read: the connection may carry another request');
    await use(token);
    assert.equal(as.callsFor(token), 2);
    await use(token);
    assert.equal(as.callsFor(token), 2);

    r = await adminCall(purgeUrl, { method: 'POST', authorization: AUTH, contentType: `${FORM}; charset=UTF-8`, body: new URLSearchParams({ token }).toString() });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { status: 'purged', removed: { local: 1, shared: 0 }, instances: 'not_configured' });
    // Revoked at the authorization server meanwhile: the purge is what makes the gateway see it now.
    inactive(as, token);
    await use(token, 401);
    assert.equal(as.callsFor(token), 3);

    // A token not cached: nothing removed, still a 200.
    r = await adminCall(purgeUrl, { method: 'POST', authorization: AUTH, contentType: JSON_TYPE, body: '{"token":"never-seen-token-0000"}' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'purged', removed: { local: 0, shared: 0 }, instances: 'not_configured' });

    const lines = logLines(stack.rawLogs(), 'cache purged');
    assert.equal(lines.length, 3);
    const { time: _t, pid: _p, hostname: _h, level: _l, ...fields } = lines[0]!;
    assert.deepEqual(fields, { by: 'token', local: 1, shared: 0, instances: 'not_configured', client: '127.0.0.1', msg: 'cache purged' });
    assert.ok(!stack.rawLogs().includes(token), 'the token is never logged');
    assert.ok(!stack.rawLogs().includes(ADMIN_TOKEN.slice(0, 12)), 'the admin token is never logged');
  });

  test('by sub: every token of the subject is introspected again, another subject\'s stays cached', async () => {
    const [b1, b2, c] = ['opaque-bob-one-4411', 'opaque-bob-two-4412', 'opaque-carol-4413'];
    await as.activate(b1, { sub: 'subject-bob-4410' });
    await as.activate(b2, { sub: 'subject-bob-4410' });
    await as.activate(c, { sub: 'subject-carol-4410' });
    for (const t of [b1, b2, c, b1, b2, c]) await use(t);
    assert.deepEqual([b1, b2, c].map((t) => as.callsFor(t)), [1, 1, 1]);

    const r = await adminCall(purgeUrl, { method: 'POST', authorization: AUTH, contentType: FORM, body: 'sub=subject-bob-4410' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { status: 'purged', removed: { local: 2, shared: 0 }, instances: 'not_configured' });
    for (const t of [b1, b2, c]) await use(t);
    assert.deepEqual([b1, b2, c].map((t) => as.callsFor(t)), [2, 2, 1]);

    const line = logLines(stack.rawLogs(), 'cache purged').at(-1)!;
    assert.equal(line.by, 'sub');
    assert.equal(line.local, 2);
    assert.ok(!stack.rawLogs().includes('subject-bob-4410'), 'the subject is never logged');
  });

  test('by client_id: every token of the client is introspected again, another client\'s stays cached', async () => {
    const [d1, d2, e] = ['opaque-dave-one-5511', 'opaque-dave-two-5512', 'opaque-erin-5513'];
    await as.activate(d1, { sub: 'subject-d1', client_id: 'client-dave-5510' });
    await as.activate(d2, { sub: 'subject-d2', client_id: 'client-dave-5510' });
    await as.activate(e, { sub: 'subject-d1', client_id: 'client-erin-5510' });
    for (const t of [d1, d2, e, d1, d2, e]) await use(t);
    assert.deepEqual([d1, d2, e].map((t) => as.callsFor(t)), [1, 1, 1]);

    const r = await adminCall(purgeUrl, { method: 'POST', authorization: AUTH, contentType: 'application/json; charset=utf-8', body: '{"client_id":"client-dave-5510"}' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { status: 'purged', removed: { local: 2, shared: 0 }, instances: 'not_configured' });
    for (const t of [d1, d2, e]) await use(t);
    assert.deepEqual([d1, d2, e].map((t) => as.callsFor(t)), [2, 2, 1]);
    assert.equal(logLines(stack.rawLogs(), 'cache purged').at(-1)!.by, 'client_id');
  });

  test('refused without the right admin token (401, nothing purged)', async () => {
    const token = 'opaque-kept-token-6601';
    await as.activate(token);
    await use(token);
    const body = JSON.stringify({ token });
    for (const authorization of [undefined, `Bearer ${ADMIN_TOKEN}x`, `Basic ${ADMIN_TOKEN}`, [AUTH, 'Bearer another-token-00000000']]) {
      const r = await adminCall(purgeUrl, { method: 'POST', contentType: JSON_TYPE, body, ...(authorization !== undefined ? { authorization } : {}) });
      assert.equal(r.status, 401, String(authorization));
      assert.equal(r.headers['www-authenticate'], 'Bearer realm="phantom-gateway-admin"');
      assert.equal(r.text, '{"code":"unauthorized","message":"Admin token required"}');
      assert.equal(r.headers.connection, 'close', 'the unread body closes the connection');
    }
    await use(token);
    assert.equal(as.callsFor(token), 1, 'still cached');
  });

  test('malformed requests: 400/413/415 saying what is wrong, never repeating the value; nothing purged', async () => {
    const secret = 'opaque-secret-value-7702';
    await as.activate(secret, { sub: 'subject-7702', client_id: 'client-7702' });
    await use(secret);
    const bad: Array<[string | undefined, string | undefined, number, RegExp]> = [
      [undefined, undefined, 400, /no body/],
      [JSON_TYPE, '', 400, /no body/],
      [JSON_TYPE, '   ', 400, /empty/],
      [JSON_TYPE, JSON.stringify({ token: secret, sub: 'subject-7702' }), 400, /token and sub are given together/],
      [FORM, `token=${secret}&client_id=client-7702`, 400, /token and client_id are given together/],
      [FORM, `token=${secret}&token=${secret}`, 400, /token is given more than once/],
      [JSON_TYPE, '{"token":""}', 400, /token must be a non-empty string/],
      [FORM, 'sub=', 400, /sub must be a non-empty string/],
      [JSON_TYPE, '{"token":7702}', 400, /token must be a non-empty string/],
      [JSON_TYPE, `{"token":["${secret}"]}`, 400, /token must be a non-empty string/],
      [JSON_TYPE, `{"access_token":"${secret}"}`, 400, /only token, sub or client_id may be sent/],
      [FORM, `${secret}=1`, 400, /only token, sub or client_id may be sent/],
      [JSON_TYPE, '{}', 400, /no field/],
      [JSON_TYPE, `["${secret}"]`, 400, /must be a JSON object/],
      [JSON_TYPE, `{"token":"${secret}"`, 400, /not valid JSON/],
      [JSON_TYPE, JSON.stringify({ token: 'x'.repeat(65537) }), 400, /token is longer than 65536 characters/],
      [FORM, `sub=${'s'.repeat(1025)}`, 400, /sub is longer than 1024 characters/],
      ['text/plain', `token=${secret}`, 415, /application\/x-www-form-urlencoded or application\/json/],
      [undefined, `token=${secret}`, 415, /application\/x-www-form-urlencoded or application\/json/],
      ['application/json; charset=iso-8859-1', `{"token":"${secret}"}`, 415, /UTF-8/],
    ];
    const codes: Record<number, string> = { 400: 'invalid_request', 413: 'payload_too_large', 415: 'unsupported_media_type' };
    for (const [contentType, body, status, message] of bad) {
      const r = await adminCall(purgeUrl, { method: 'POST', authorization: AUTH, ...(contentType !== undefined ? { contentType } : {}), ...(body !== undefined ? { body } : {}) });
      const what = `${contentType} ${body?.slice(0, 60)}`;
      assert.equal(r.status, status, `${what}: ${r.text}`);
      assert.equal(r.json?.code, codes[status], what);
      assert.match(String(r.json?.message), message, what);
      assert.ok(!r.text.includes(secret) && !r.text.includes('subject-7702') && !r.text.includes('client-7702'), `${what}: the value is not echoed`);
    }
    const port = Number(new URL(stack.adminUrl).port);
    // Announced too large: refused before reading.
    let text = await raw(port, `POST /cache/purge HTTP/1.1\r\nhost: x\r\nauthorization: ${AUTH}\r\ncontent-type: ${JSON_TYPE}\r\ncontent-length: 270000\r\n\r\n`, `{"token":"${secret}"`);
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.match(text, /\r\nconnection: close\r\n/i);
    assert.match(text, /"code":"payload_too_large"/);
    // Chunked, found too large while reading (all of it sent, so nothing is left unread to reset the connection).
    const big = `token=${'a'.repeat(256 * 1024)}`;
    text = await raw(port, `POST /cache/purge HTTP/1.1\r\nhost: x\r\nauthorization: ${AUTH}\r\ncontent-type: ${FORM}\r\ntransfer-encoding: chunked\r\n\r\n`, `${Buffer.byteLength(big).toString(16)}\r\n${big}\r\n`);
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.match(text, /larger than 262144 bytes/);

    await use(secret);
    assert.equal(as.callsFor(secret), 1, 'still cached: no malformed request purged anything');
    assert.ok(!stack.rawLogs().includes(secret), 'the value is never logged');
  });

  test('GET is a 405 with Allow: POST; HEAD too', async () => {
    for (const method of ['GET', 'HEAD', 'PUT']) {
      const r = await adminCall(purgeUrl, { method, authorization: AUTH });
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.allow, 'POST');
    }
  });

  test('a body that does not arrive within 5 s: 408, connection closed', async () => {
    const port = Number(new URL(stack.adminUrl).port);
    const started = Date.now();
    const text = await raw(port, `POST /cache/purge HTTP/1.1\r\nhost: x\r\nauthorization: ${AUTH}\r\ncontent-type: ${FORM}\r\ncontent-length: 40\r\n\r\n`, 'token=opaq');
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /"code":"request_timeout"/);
    assert.ok(Date.now() - started >= 4500, 'not before the deadline');
  });

  test('/readyz reports the shared cache when there is one, and stays ready while it is down', async () => {
    let r = await adminCall(`${stack.adminUrl}/readyz`);
    assert.equal(r.status, 200);
    assert.ok(!('shared_cache' in (r.json!.checks as object)), 'no shared cache configured: no check');
    const guards = stack.guards as { sharedCacheState(): 'up' | 'down' | undefined };
    const original = guards.sharedCacheState;
    try {
      for (const state of ['down', 'up'] as const) {
        guards.sharedCacheState = () => state;
        r = await adminCall(`${stack.adminUrl}/readyz`);
        assert.equal(r.status, 200, state);
        assert.equal(r.json?.status, 'ready');
        assert.equal((r.json!.checks as Record<string, unknown>).shared_cache, state);
      }
    } finally {
      guards.sharedCacheState = original;
    }
  });
});

describe('POST /cache/purge refused or absent', () => {
  test('no admin token configured: 403 whatever is sent, nothing purged', async () => {
    const as = await startScriptedIntrospection();
    const api = await startEchoUpstream();
    const stack = await startAdminStack(stackYaml(as, api, undefined));
    try {
      const token = 'opaque-no-admin-token-8801';
      await as.activate(token);
      assert.equal((await call(`${stack.url}/api/x`, `Bearer ${token}`)).status, 200);
      for (const authorization of [undefined, AUTH]) {
        const r = await adminCall(`${stack.adminUrl}/cache/purge`, { method: 'POST', contentType: JSON_TYPE, body: JSON.stringify({ token }), ...(authorization ? { authorization } : {}) });
        assert.equal(r.status, 403);
        assert.equal(r.json?.code, 'forbidden');
      }
      assert.equal((await call(`${stack.url}/api/x`, `Bearer ${token}`)).status, 200);
      assert.equal(as.callsFor(token), 1);
    } finally {
      await stack.close();
      await api.close();
      await as.close();
    }
  });

  test('a listener without a purge: 501 after the token check', async () => {
    const metrics = new GatewayMetrics({ processMetrics: false });
    const listener = new AdminListener(
      { listen: { host: '127.0.0.1', port: 0 }, token: ADMIN_TOKEN },
      {
        logger: createLogger('info', new Writable({ write: (_c, _e, cb) => cb() })),
        metrics: { contentType: metrics.registry.contentType, scrape: () => metrics.registry.metrics() },
        readiness: () => ({ ready: true, checks: {} }),
      },
    );
    const { port } = await listener.listen();
    try {
      const url = `http://127.0.0.1:${port}/cache/purge`;
      assert.equal((await adminCall(url, { method: 'POST', contentType: FORM, body: 'token=abc' })).status, 401);
      const r = await adminCall(url, { method: 'POST', authorization: AUTH, contentType: FORM, body: 'token=abc' });
      assert.equal(r.status, 501);
      assert.equal(r.json?.code, 'not_implemented');
    } finally {
      await listener.close();
    }
  });

  test('a purge that could not reach the shared cache: 503 with the counts and what it means', async () => {
    const metrics = new GatewayMetrics({ processMetrics: false });
    const lines: string[] = [];
    const listener = new AdminListener(
      { listen: { host: '127.0.0.1', port: 0 }, token: ADMIN_TOKEN },
      {
        logger: createLogger('info', new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) })),
        metrics: { contentType: metrics.registry.contentType, scrape: () => metrics.registry.metrics() },
        readiness: () => ({ ready: true, checks: {} }),
        purge: async () => ({ local: 1, shared: 0, instances: 'unavailable' }),
      },
    );
    const { port } = await listener.listen();
    try {
      const r = await adminCall(`http://127.0.0.1:${port}/cache/purge`, { method: 'POST', authorization: AUTH, contentType: FORM, body: 'sub=subject-9901' });
      assert.equal(r.status, 503);
      assert.deepEqual({ ...r.json, message: undefined }, { status: 'purged', removed: { local: 1, shared: 0 }, instances: 'unavailable', message: undefined });
      assert.match(String(r.json?.message), /removed from this process now/);
      assert.match(String(r.json?.message), /replayed in the shared cache and to the other instances when it is back/);
      const line = logLines(lines.join(''), 'cache purged in part');
      assert.equal(line.length, 1);
      assert.equal(line[0]!.level, 'warn');
      assert.equal(line[0]!.instances, 'unavailable');
    } finally {
      await listener.close();
    }
  });
});

describe('combinePurges (a cluster primary adding up its workers)', () => {
  test('local adds up, shared is the largest, notified wins over unavailable, workers that did not answer are counted', () => {
    assert.deepEqual(
      combinePurges([
        { local: 1, shared: 3, instances: 'notified' },
        { local: 2, shared: 0, instances: 'unavailable' },
        undefined,
      ]),
      { local: 3, shared: 3, instances: 'notified', workers: { asked: 3, unanswered: 1 } },
    );
    assert.deepEqual(combinePurges([{ local: 0, shared: 0, instances: 'unavailable' }, { local: 1, shared: 0, instances: 'not_configured' }]).instances, 'unavailable');
    assert.deepEqual(combinePurges([{ local: 1, shared: 0, instances: 'not_configured' }, { local: 1, shared: 0, instances: 'not_configured' }]), {
      local: 2,
      shared: 0,
      instances: 'not_configured',
      workers: { asked: 2, unanswered: 0 },
    });
    assert.deepEqual(combinePurges([]), { local: 0, shared: 0, instances: 'not_configured', workers: { asked: 0, unanswered: 0 } });
  });
});

describe('POST /cache/purge with workers: 2 (the real command line, scripted introspection)', () => {
  let api: EchoUpstream;
  let as: ScriptedIntrospection;
  let scratch: ReturnType<typeof scratchDir>;
  let run: CliRun | undefined;
  let port: number;
  let admin: string;
  before(async () => {
    ensureBuilt();
    api = await startEchoUpstream();
    as = await startScriptedIntrospection();
    scratch = scratchDir();
    [port, admin] = [await freePort(), `http://127.0.0.1:${await freePort()}`];
    const file = scratch.write(
      'gateway.yaml',
      `
workers: 2
listen: { host: 127.0.0.1, port: ${port} }
admin: { listen: { host: 127.0.0.1, port: ${new URL(admin).port} }, token: ${ADMIN_TOKEN} }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: ${api.url}
`,
    );
    run = startCli(['--config', file]);
    await run.waitFor(/admin listening/, 20_000);
    let ready = await adminCall(`${admin}/readyz`);
    for (let i = 0; i < 400 && ready.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      ready = await adminCall(`${admin}/readyz`);
    }
    assert.equal(ready.status, 200, ready.text);
  });
  after(async () => {
    run?.kill();
    await api?.close();
    await as?.close();
    scratch?.cleanup();
  });

  /** Requests over new connections until both workers have introspected (and cached) `token`. */
  async function cachedInBoth(token: string): Promise<void> {
    for (let i = 0; i < 20 && as.callsFor(token) < 2; i++) assert.equal(await fresh(`http://127.0.0.1:${port}/api/x`, `Bearer ${token}`), 200);
    assert.equal(as.callsFor(token), 2, 'each worker introspected the token once');
    for (let i = 0; i < 4; i++) assert.equal(await fresh(`http://127.0.0.1:${port}/api/x`, `Bearer ${token}`), 200);
    assert.equal(as.callsFor(token), 2, 'then both answer from their cache');
  }

  test('a purge reaches every worker: a token revoked meanwhile is refused on every new connection', async () => {
    const token = 'opaque-cluster-token-9911';
    await as.activate(token, { sub: 'subject-cluster-9911' });
    await cachedInBoth(token);
    inactive(as, token);
    // Still served from the workers' caches until the purge.
    assert.equal(await fresh(`http://127.0.0.1:${port}/api/x`, `Bearer ${token}`), 200);

    const r = await adminCall(`${admin}/cache/purge`, { method: 'POST', authorization: AUTH, contentType: JSON_TYPE, body: JSON.stringify({ token }) });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { status: 'purged', removed: { local: 2, shared: 0 }, instances: 'not_configured' });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push(await fresh(`http://127.0.0.1:${port}/api/x`, `Bearer ${token}`));
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 401]);
    assert.ok(as.callsFor(token) >= 3, 'introspected again after the purge');

    await run!.waitFor(/"msg":"cache purged"/);
    const line = logLines(run!.stdout(), 'cache purged').at(-1)!;
    assert.equal(line.by, 'token');
    assert.equal(line.local, 2);
    assert.equal(line.workers, 2);
    assert.equal(line.workers_unanswered, 0);
    assert.ok(!(run!.stdout() + run!.stderr()).includes(token), 'the token is never logged');
  });

  test('a purge by sub: both workers drop the subject\'s tokens', async () => {
    const token = 'opaque-cluster-sub-9921';
    await as.activate(token, { sub: 'subject-cluster-9921' });
    await cachedInBoth(token);
    const r = await adminCall(`${admin}/cache/purge`, { method: 'POST', authorization: AUTH, contentType: FORM, body: 'sub=subject-cluster-9921' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { status: 'purged', removed: { local: 2, shared: 0 }, instances: 'not_configured' });
    for (let i = 0; i < 8 && as.callsFor(token) < 4; i++) assert.equal(await fresh(`http://127.0.0.1:${port}/api/x`, `Bearer ${token}`), 200);
    assert.equal(as.callsFor(token), 4, 'each worker introspected it again');
  });

  test('a worker that does not answer: 503 naming how many did not confirm; the others purged', async () => {
    const token = 'opaque-cluster-stopped-9931';
    await as.activate(token);
    await cachedInBoth(token);
    const pids = [...new Set(logLines(run!.stdout(), 'phantom-gateway listening').filter((l) => l.worker !== undefined).map((l) => l.pid as number))];
    assert.equal(pids.length, 2, 'two workers started');
    process.kill(pids[0]!, 'SIGSTOP');
    try {
      const r = await adminCall(`${admin}/cache/purge`, { method: 'POST', authorization: AUTH, contentType: JSON_TYPE, body: JSON.stringify({ token }) });
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json?.status, 'purged');
      assert.deepEqual(r.json?.removed, { local: 1, shared: 0 });
      assert.match(String(r.json?.message), /^1 of 2 workers did not confirm the purge/);
    } finally {
      process.kill(pids[0]!, 'SIGCONT');
    }
    await run!.waitFor(/cache purged in part/);
    const line = logLines(run!.stdout(), 'cache purged in part').at(-1)!;
    assert.equal(line.workers_unanswered, 1);
  });
});

describe('POST /cache/purge with a shared Redis: two instances (real redis-server, scripted introspection)', { skip: noRedis }, () => {
  let redis: RedisInstance;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let a: AdminStack;
  let b: AdminStack;
  before(async () => {
    [redis, as, api] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream()]);
    [a, b] = await Promise.all([startAdminStack(stackYaml(as, api, ADMIN_TOKEN, redisYaml(redis))), startAdminStack(stackYaml(as, api, ADMIN_TOKEN, redisYaml(redis)))]);
    await Promise.all([sharedUp(a.guards.shared!), sharedUp(b.guards.shared!)]);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await Promise.all([redis?.close(), as?.close(), api?.close()]);
  });

  test('a purge on one instance: removed from Redis, and the other instance stops serving its copy', async () => {
    const token = 'opaque-shared-purge-1201';
    await as.activate(token, { sub: 'subject-shared-1201' });
    assert.equal((await call(`${a.url}/api/x`, `Bearer ${token}`)).status, 200);
    assert.equal((await call(`${b.url}/api/x`, `Bearer ${token}`)).status, 200);
    assert.equal(as.callsFor(token), 1, 'the second instance found it in Redis');
    inactive(as, token);
    assert.equal((await call(`${b.url}/api/x`, `Bearer ${token}`)).status, 200, 'cached until the purge');

    const r = await adminCall(`${a.adminUrl}/cache/purge`, { method: 'POST', authorization: AUTH, contentType: FORM, body: new URLSearchParams({ token }).toString() });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { status: 'purged', removed: { local: 1, shared: 1 }, instances: 'notified' });
    assert.equal((await call(`${a.url}/api/x`, `Bearer ${token}`)).status, 401);
    // B drops its copy when the purge message arrives (pub/sub): from then on it asks again.
    assert.ok(await until(async () => (await call(`${b.url}/api/x`, `Bearer ${token}`)).status === 401, 5000), 'the other instance refuses the purged token');
    assert.ok(!(a.rawLogs() + b.rawLogs()).includes(token), 'the token is never logged');

    const ready = await adminCall(`${a.adminUrl}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal((ready.json?.checks as Record<string, unknown>).shared_cache, 'up');
  });

  test('Redis down: the purge still empties this instance (503 saying it is replayed when Redis is back); /readyz stays 200 with shared_cache "down"', async () => {
    const token = 'opaque-shared-down-1202';
    await as.activate(token);
    assert.equal((await call(`${a.url}/api/x`, `Bearer ${token}`)).status, 200);
    await redis.stop();
    try {
      const r = await adminCall(`${a.adminUrl}/cache/purge`, { method: 'POST', authorization: AUTH, contentType: JSON_TYPE, body: JSON.stringify({ token }) });
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json?.status, 'purged');
      assert.deepEqual(r.json?.removed, { local: 1, shared: 0 });
      assert.equal(r.json?.instances, 'unavailable');
      assert.match(String(r.json?.message), /removed from this process now/);
      const before = as.callsFor(token);
      assert.equal((await call(`${a.url}/api/x`, `Bearer ${token}`)).status, 200);
      assert.equal(as.callsFor(token), before + 1, 'purged here: introspected again');

      const ready = await adminCall(`${a.adminUrl}/readyz`);
      assert.equal(ready.status, 200, 'degraded, still ready');
      assert.equal((ready.json?.checks as Record<string, unknown>).shared_cache, 'down');
      assert.ok(!a.rawLogs().includes(token), 'the token is never logged');
    } finally {
      await redis.start();
    }
  });
});

describe('POST /cache/purge with workers: 2 sharing Redis (the real command line, scripted introspection)', { skip: noRedis }, () => {
  let redis: RedisInstance;
  let api: EchoUpstream;
  let as: ScriptedIntrospection;
  let scratch: ReturnType<typeof scratchDir>;
  let run: CliRun | undefined;
  before(async () => {
    ensureBuilt();
    [redis, as, api] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream()]);
    scratch = scratchDir();
  });
  after(async () => {
    run?.kill();
    await Promise.all([redis?.close(), api?.close(), as?.close()]);
    scratch?.cleanup();
  });

  test('the purge is counted once in Redis, and no worker serves the purged token afterwards', async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const file = scratch.write(
      'gateway.yaml',
      `${redisYaml(redis)}
workers: 2
listen: { host: 127.0.0.1, port: ${port} }
admin: { listen: { host: 127.0.0.1, port: ${adminPort} }, token: ${ADMIN_TOKEN} }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: ${api.url}
`,
    );
    run = startCli(['--config', file]);
    const admin = `http://127.0.0.1:${adminPort}`;
    await run.waitFor(/admin listening/, 20_000);
    // Ready, and both workers connected to Redis.
    assert.ok(
      await until(async () => {
        const r = await adminCall(`${admin}/readyz`);
        const each = ((r.json?.checks as { each?: Array<{ checks?: { shared_cache?: string } }> })?.each ?? []).map((w) => w.checks?.shared_cache);
        return r.status === 200 && each.length === 2 && each.every((s) => s === 'up');
      }, 20_000),
      'both workers ready with the shared cache up',
    );

    const token = 'opaque-cluster-redis-1301';
    await as.activate(token, { sub: 'subject-cluster-1301' });
    for (let i = 0; i < 6; i++) assert.equal(await fresh(`http://127.0.0.1:${port}/api/x`, `Bearer ${token}`), 200);
    assert.equal(as.callsFor(token), 1, 'one introspection for both workers (shared through Redis)');
    inactive(as, token);

    const r = await adminCall(`${admin}/cache/purge`, { method: 'POST', authorization: AUTH, contentType: FORM, body: 'sub=subject-cluster-1301' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json?.instances, 'notified');
    assert.equal((r.json?.removed as { shared: number }).shared, 1, 'the one Redis entry, not counted once per worker');
    assert.ok((r.json?.removed as { local: number }).local >= 1);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push(await fresh(`http://127.0.0.1:${port}/api/x`, `Bearer ${token}`));
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 401]);
    assert.ok(!(run.stdout() + run.stderr()).includes(token), 'the token is never logged');

    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0, run.stdout() + run.stderr());
  });
});
