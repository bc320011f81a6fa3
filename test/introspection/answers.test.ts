/*
 * What the gateway makes of each answer of the authorization server, through
 * the real gateway against a scripted introspection endpoint: JWTs forwarded,
 * definite "no" answers as 401, every kind of outage as 502/503/504 (never as
 * "your token is bad", never echoing the server's body), one warning line
 * with a code per failure, keep-alive to the authorization server; then what
 * a batch of mixed requests leaves in the logs.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { jwtWithPayload, listen, signJwt, startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection, type Started } from '../helpers/servers.js';
import { startGateway, type TestGateway, startStack, type Stack } from '../helpers/gateway.js';
import { call, closedPort, gatewayConfig, type Reply } from '../helpers/core.js';

const TIMEOUT_MS = 300;
const MAX_ANSWER = 2048;
const UNAVAILABLE = '{"code":"server_error","message":"Token validation is unavailable"}';

let serial = 0;
const fresh = (label: string) => `scripted-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;

/** Warning lines logged since `mark` (an index into `gw.logs`). */
function warningsSince(gw: TestGateway, mark: number): Record<string, unknown>[] {
  return gw.logs.slice(mark).filter((l) => l.level === 'warn');
}

describe('scripted introspection answers through the gateway', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  let stalled: Started;
  let dripping: Started;
  let drips = 0;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const down = await closedPort();
    // Sends the headers and the first bytes of a JWT, then nothing more.
    const jwt = await signJwt({});
    stalled = await listen(
      createServer((req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/jwt', 'content-length': jwt.length });
        res.write(jwt.slice(0, 10));
      }),
    );
    // First call: a 500 whose error page drips a byte every 100 ms for 5 s;
    // every later call: a JWT.
    dripping = await listen(
      createServer((req, res) => {
        req.resume();
        if (drips++ > 0) {
          res.writeHead(200, { 'content-type': 'application/jwt' });
          res.end(jwt);
          return;
        }
        res.writeHead(500, { 'content-type': 'text/html', 'content-length': 50 });
        let sent = 0;
        const t = setInterval(() => {
          if (res.destroyed || ++sent === 50) clearInterval(t);
          if (!res.destroyed) res.write('x');
        }, 100);
      }),
    );
    gw = await startGateway(
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: '', timeout_ms: TIMEOUT_MS, max_answer_bytes: MAX_ANSWER },
        routes: [
          { path: '/api' },
          { path: '/down', phantom_token: { introspection_endpoint: `http://127.0.0.1:${down}/introspect` } },
          { path: '/stalled', phantom_token: { introspection_endpoint: `${stalled.url}/introspect` } },
          { path: '/dripping', phantom_token: { introspection_endpoint: `${dripping.url}/introspect`, connections: 1 } },
        ],
      }),
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await stalled.close();
    await dripping.close();
    await api.close();
  });
  let mark = 0;
  beforeEach(() => {
    as.calls.length = 0;
    api.received.length = 0;
    mark = gw.logs.length;
  });

  const get = (token: string, path = '/api') => call(`${gw.url}${path}`, `Bearer ${token}`);

  function assertInvalidToken(res: Reply): void {
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"');
    assert.deepEqual(JSON.parse(res.body), { code: 'unauthorized', message: 'Invalid or expired access token' });
    assert.equal(api.received.length, 0);
  }

  function assertWarned(code: string, status?: number): Record<string, unknown> {
    const warnings = warningsSince(gw, mark);
    assert.equal(warnings.length, 1, `one warning expected, got ${JSON.stringify(warnings)}`);
    const w = warnings[0]!;
    assert.equal(w.code, code);
    if (status !== undefined) assert.equal(w.status, status);
    assert.equal(typeof w.msg, 'string');
    return w;
  }

  describe('answers about the token', () => {
    test('scripted 200 + JWT: the JWT is forwarded, the opaque token is not', async () => {
      const t = fresh('jwt');
      const jwt = await as.activate(t);
      const res = await get(t);
      assert.equal(res.status, 200);
      const seen = api.received[0]!;
      assert.equal(seen.headers.authorization, `Bearer ${jwt}`);
      assert.ok(!seen.rawHeaders.join('\n').includes(t), 'the opaque token must not reach the upstream');
      assert.equal(warningsSince(gw, mark).length, 0);
    });

    test('scripted 204: 401 invalid_token, no warning (an inactive token is not a failure)', async () => {
      const t = fresh('204');
      as.answers.set(t, { status: 204 });
      assertInvalidToken(await get(t));
      assert.equal(as.callsFor(t), 1);
      assert.equal(warningsSince(gw, mark).length, 0);
    });

    test('scripted 200 JSON {"active":false}: 401 invalid_token, no warning', async () => {
      const t = fresh('inactive-json');
      as.answers.set(t, { status: 200, body: '{"active":false}', headers: { 'content-type': 'application/json' } });
      assertInvalidToken(await get(t));
      assert.equal(warningsSince(gw, mark).length, 0);
    });

    test('scripted 200 JSON {"active":true} without a JWT: 401 and a warning telling the operator', async () => {
      const t = fresh('json-no-jwt');
      as.answers.set(t, { status: 200, body: '{"active":true,"sub":"user-1","scope":"read"}', headers: { 'content-type': 'application/json' } });
      assertInvalidToken(await get(t));
      const w = assertWarned('ERR_INTROSPECTION_INVALID_ANSWER', 200);
      assert.match(String(w.msg), /application\/jwt/);
    });

    test('scripted 200 JSON {"active":true,"jwt":"..."} (Keycloak 25+ form): the embedded JWT is forwarded and cached by Cache-Control', async () => {
      const t = fresh('json-jwt-claim');
      const jwt = await signJwt({ scope: 'read' });
      as.answers.set(t, {
        status: 200,
        body: JSON.stringify({ active: true, scope: 'read', jwt }),
        headers: { 'content-type': 'application/json', 'cache-control': 'max-age=60' },
      });
      const res = await get(t);
      assert.equal(res.status, 200);
      assert.equal(api.received.at(-1)!.headers.authorization, `Bearer ${jwt}`);
      assert.equal((await get(t)).status, 200);
      assert.equal(as.callsFor(t), 1, 'the second request is a cache hit');
      assert.equal(warningsSince(gw, mark).length, 0);
    });

    // Garbage where a JWT should be is the server's failure (an HTML error page
    // from a proxy in front of it, a truncated body), never "your token is bad".
    for (const [name, body, contentType] of [
      ['a jwt member that is not a JWT', '{"active":true,"jwt":"nope"}', 'application/json'],
      ['text', 'this is not a token', 'application/jwt'],
      ['an HTML error page', '<html><body>Service temporarily down</body></html>', 'text/html'],
      ['three dots', 'a.b.c', 'application/jwt'],
      ['broken JSON', '{"active": tr', 'application/json'],
    ] as const) {
      test(`scripted 200 garbage (${name}): 502 server_error and a warning, never 401`, async () => {
        // A good answer first: the garbage before it is over, so this garbage is
        // a new failure, warned about (repeats of one are rate-limited).
        const ok = fresh('ok');
        await as.activate(ok);
        assert.equal((await get(ok)).status, 200);
        mark = gw.logs.length;
        const t = fresh('garbage');
        as.answers.set(t, { status: 200, body, headers: { 'content-type': contentType } });
        const res = await get(t);
        assert.equal(res.status, 502);
        assert.equal(res.headers['www-authenticate'], undefined);
        assert.equal((JSON.parse(res.body) as { code: string }).code, 'server_error');
        assertWarned('ERR_INTROSPECTION_INVALID_ANSWER', 200);
        assert.equal((await get(t)).status, 502, 'a failure is not cached as an inactive token');
        assert.equal(as.callsFor(t), 2);
      });
    }

    // Only `active: true` / `active: false` (booleans) and a JWT are decisions
    // about the token. Anything else in a 200 says nothing about it: a proxy's
    // JSON error, `null`, a body cut to nothing, answers that different JSON
    // parsers read differently (duplicate member names). Treated as a
    // decision, such an answer once turned good tokens into remembered 401s.
    const now = Math.floor(Date.now() / 1000);
    for (const [name, body, contentType] of [
      ['an empty body', '', 'application/jwt'],
      ['JSON null', 'null', 'application/json'],
      ['null as application/jwt', 'null', 'application/jwt'],
      ['{}', '{}', 'application/json'],
      ['a JSON error from a proxy', '{"error":"temporarily_unavailable"}', 'application/json'],
      ['an array', '[{"active":false}]', 'application/json'],
      ['a JSON string', '"active"', 'application/json'],
      ['active as the string "true"', '{"active":"true"}', 'application/json'],
      ['active as the string "false"', '{"active":"false"}', 'application/json'],
      ['active null', '{"active":null}', 'application/json'],
      ['active 0', '{"active":0}', 'application/json'],
      ['a jwt member that is not a string', '{"active":true,"jwt":{"a":1}}', 'application/json'],
      ['duplicate active, last true', '{"active":false,"active":true}', 'application/json'],
      ['duplicate active, last false', '{"active":true,"active":false}', 'application/json'],
      ['duplicate active spelt with an escape', '{"active":false,"\\u0061ctive":false}', 'application/json'],
      ['a duplicate member name deeper down', '{"active":false,"ext":{"a":1,"a":2}}', 'application/json'],
      ['a JWT whose exp is a string', jwtWithPayload(`{"sub":"u","exp":"${now + 300}"}`), 'application/jwt'],
      ['a JWT whose exp is null', jwtWithPayload('{"sub":"u","exp":null}'), 'application/jwt'],
      ['a JWT whose exp overflows to Infinity', jwtWithPayload('{"sub":"u","exp":1e400}'), 'application/jwt'],
      ['a JWT whose nbf is a string', jwtWithPayload(`{"sub":"u","exp":${now + 300},"nbf":"0"}`), 'application/jwt'],
      ['a JWT whose iat is a boolean', jwtWithPayload(`{"sub":"u","exp":${now + 300},"iat":true}`), 'application/jwt'],
      ['a JWT with a duplicate claim', jwtWithPayload(`{"sub":"u","exp":${now + 300},"scope":"read","scope":"admin"}`), 'application/jwt'],
      ['a JWT whose payload is an array', jwtWithPayload('[1]'), 'application/jwt'],
    ] as const) {
      test(`non-decision 200 answers are the server's failure (${name}): 502 and a warning, never 401, never cached (scripted)`, async () => {
        const t = fresh('non-decision');
        as.answers.set(t, { status: 200, body, headers: { 'content-type': contentType } });
        const res = await get(t);
        assert.equal(res.status, 502);
        assert.equal(res.body, UNAVAILABLE);
        assert.equal(res.headers['www-authenticate'], undefined);
        assertWarned('ERR_INTROSPECTION_INVALID_ANSWER', 200);
        assert.equal((await get(t)).status, 502, 'not remembered as an inactive token');
        assert.equal(as.callsFor(t), 2);
        const jwt = await as.activate(t);
        const ok = await get(t);
        assert.equal(ok.status, 200, 'the token works as soon as the server answers properly');
        assert.equal(api.received.at(-1)!.headers.authorization, `Bearer ${jwt}`);
      });
    }

    test('ambiguous headers: two different Content-Type lines are refused with 502 (scripted)', async () => {
      const t = fresh('two-content-types');
      as.answers.set(t, { status: 200, body: await signJwt({}), headers: { 'content-type': ['application/jwt', 'application/json'] } });
      const res = await get(t);
      assert.equal(res.status, 502);
      assertWarned('ERR_INTROSPECTION_INVALID_ANSWER', 200);
    });

    test('ambiguous headers: the same Content-Type on two lines is not ambiguous (scripted)', async () => {
      const t = fresh('same-content-types');
      as.answers.set(t, { status: 200, body: await signJwt({}), headers: { 'content-type': ['application/jwt', 'Application/JWT'] } });
      assert.equal((await get(t)).status, 200);
      assert.equal(warningsSince(gw, mark).length, 0);
    });

    test('scripted 200 with a JWT whose exp is in the past: 401 invalid_token, not forwarded', async () => {
      const t = fresh('expired');
      await as.activate(t, {}, { expiresIn: -60 });
      assertInvalidToken(await get(t));
    });
  });

  describe('failures of the authorization server', () => {
    const secretBody = (status: number) => `{"error":"AS-INTERNAL-DETAIL-${status}","hint":"db password is hunter2"}`;

    function assertServerError(res: Reply, status: number): void {
      assert.equal(res.status, status);
      assert.equal(JSON.parse(res.body).code, 'server_error');
      assert.ok(!res.body.includes('AS-INTERNAL') && !res.body.includes('hunter2'), 'the authorization server body must not be echoed');
      assert.equal(res.headers['x-as-detail'], undefined, 'the authorization server headers must not be relayed');
      assert.equal(res.headers['www-authenticate'], undefined, 'an outage is not a token problem');
      assert.equal(api.received.length, 0);
    }

    for (const status of [400, 401, 403, 404, 500, 502]) {
      test(`scripted ${status}: 502 server_error, a warning with code and status`, async () => {
        const t = fresh(`s${status}`);
        as.answers.set(t, { status, body: secretBody(status), headers: { 'content-type': 'application/json', 'x-as-detail': 'leak' } });
        const res = await get(t);
        assertServerError(res, 502);
        assert.equal(res.body, UNAVAILABLE);
        const w = assertWarned('ERR_INTROSPECTION_REJECTED', status);
        // Wrong introspection credentials (a Curity plugin scenario) must be diagnosable from the log.
        if (status === 401 || status === 403) assert.match(String(w.msg), /client_id/);
      });
    }

    test('scripted 500 with a 4 MiB error page: 502 at once, and the next token is introspected normally', async () => {
      const t = fresh('s500-huge');
      as.answers.set(t, { status: 500, body: `AS-INTERNAL ${'x'.repeat(4 * 1024 * 1024)}`, headers: { 'content-type': 'text/html' } });
      const res = await get(t);
      assertServerError(res, 502);
      assert.equal(res.body, UNAVAILABLE);
      assertWarned('ERR_INTROSPECTION_REJECTED', 500);
      const next = fresh('after-huge');
      await as.activate(next);
      assert.equal((await get(next)).status, 200);
    });

    test('scripted 503 with Retry-After: 503 server_error, Retry-After passed on', async () => {
      const t = fresh('s503');
      as.answers.set(t, { status: 503, body: secretBody(503), headers: { 'retry-after': '7', 'x-as-detail': 'leak' } });
      const res = await get(t);
      assertServerError(res, 503);
      assert.equal(res.headers['retry-after'], '7');
      assertWarned('ERR_INTROSPECTION_UNAVAILABLE', 503);
    });

    for (const [name, value, passed] of [
      ['an HTTP-date', 'Sun, 29 Nov 2026 08:00:00 GMT', 'Sun, 29 Nov 2026 08:00:00 GMT'],
      ['two lines', ['1', '120'], undefined],
      ['a negative number', '-5', undefined],
      ['garbage', '7; evil', undefined],
      ['an obsolete date form', 'Sunday, 29-Nov-26 08:00:00 GMT', undefined],
    ] as const) {
      test(`scripted 503 with Retry-After as ${name}: ${passed === undefined ? 'not passed on' : 'passed on'}`, async () => {
        const t = fresh('s503-ra');
        as.answers.set(t, { status: 503, headers: { 'retry-after': value as string | string[] } });
        const res = await get(t);
        assertServerError(res, 503);
        assert.equal(res.headers['retry-after'], passed);
      });
    }

    test('scripted 503 without Retry-After: 503 and no Retry-After invented', async () => {
      const t = fresh('s503-bare');
      as.answers.set(t, { status: 503 });
      const res = await get(t);
      assertServerError(res, 503);
      assert.equal(res.headers['retry-after'], undefined);
    });

    test('scripted 429: 503 server_error (the gateway is throttled, not the client), Retry-After passed on', async () => {
      const t = fresh('s429');
      as.answers.set(t, { status: 429, body: secretBody(429), headers: { 'retry-after': '2' } });
      const res = await get(t);
      assertServerError(res, 503);
      assert.equal(res.headers['retry-after'], '2');
      assertWarned('ERR_INTROSPECTION_UNAVAILABLE', 429);
    });

    test(`scripted slow answer beyond timeout_ms (${TIMEOUT_MS}): 504 without waiting for it, a timeout warning`, async () => {
      const t = fresh('slow');
      await as.activate(t, {}, { delayMs: TIMEOUT_MS * 3 });
      const t0 = performance.now();
      const res = await get(t);
      const elapsed = performance.now() - t0;
      assertServerError(res, 504);
      assert.deepEqual(JSON.parse(res.body), { code: 'server_error', message: 'Token validation timed out' });
      assert.ok(elapsed >= TIMEOUT_MS - 20 && elapsed < TIMEOUT_MS * 2.5, `answered after ${Math.round(elapsed)} ms`);
      assertWarned('ERR_INTROSPECTION_TIMEOUT');
    });

    test(`scripted answer whose body stalls after the headers: 504 within timeout_ms (${TIMEOUT_MS}), not a hang`, async () => {
      const t0 = performance.now();
      const res = await get(fresh('stalled'), '/stalled');
      const elapsed = performance.now() - t0;
      assertServerError(res, 504);
      assert.ok(elapsed < TIMEOUT_MS * 2.5, `answered after ${Math.round(elapsed)} ms`);
      assertWarned('ERR_INTROSPECTION_TIMEOUT');
    });

    test(`scripted 500 whose error page drips for 5 s, one connection allowed: 502 at once, and the connection is free again within timeout_ms (${TIMEOUT_MS})`, async () => {
      assertServerError(await get(fresh('drip'), '/dripping'), 502);
      const t0 = performance.now();
      const next = await get(fresh('after-drip'), '/dripping');
      const elapsed = performance.now() - t0;
      assert.equal(next.status, 200);
      assert.ok(elapsed < TIMEOUT_MS * 2.5, `the next introspection waited ${Math.round(elapsed)} ms for the dripping answer`);
    });

    test('scripted unreachable endpoint (closed port): 502 server_error, an unreachable warning', async () => {
      const res = await get(fresh('down'), '/down');
      assertServerError(res, 502);
      assert.equal(res.body, UNAVAILABLE);
      assertWarned('ERR_INTROSPECTION_UNREACHABLE');
    });

    test(`scripted oversized answer (> max_answer_bytes ${MAX_ANSWER}): 502, while a small JWT passes`, async () => {
      const big = fresh('big');
      const bigJwt = await as.activate(big, { padding: 'p'.repeat(MAX_ANSWER) });
      assert.ok(bigJwt.length > MAX_ANSWER);
      const res = await get(big);
      assertServerError(res, 502);
      assert.equal(res.body, UNAVAILABLE);
      assertWarned('ERR_INTROSPECTION_INVALID_ANSWER', 200);
      const small = fresh('small');
      await as.activate(small, { padding: 'p'.repeat(100) });
      assert.equal((await get(small)).status, 200);
    });
  });
});

describe('scripted keep-alive to the authorization server', () => {
  let as: ScriptedIntrospection;
  let gw: TestGateway;

  let stack: Stack;
  before(async () => {
    ({ as, gw } = stack = await startStack((as, api) => gatewayConfig({ introspection: as.url, upstream: api.url, phantom: { scope: '' }, routes: [{ path: '/api' }] })));
  });
  after(() => stack.close());

  test('scripted: 5 sequential introspections reuse one TCP connection', async () => {
    let connections = 0;
    as.server.on('connection', () => connections++);
    for (let i = 0; i < 5; i++) {
      const t = `keepalive-${i}`;
      await as.activate(t);
      assert.equal((await call(`${gw.url}/api`, `Bearer ${t}`)).status, 200);
    }
    assert.equal(as.calls.length, 5);
    assert.equal(connections, 1);
  });
});

describe('logs after a batch of mixed requests', () => {
  const SECRET = 'client-secret-Vq7sLx2Kp9';
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  const tokens = {
    valid: 'opaque-valid-3f9a0c7e21b4',
    inactive: 'opaque-inactive-8d2e6b1f04aa',
    malformed: 'opaque-malformed-51c7e0',
    failing: 'opaque-failing-9b3d72e5c1f0',
    rejected: 'opaque-rejected-0e4f8a6d2c19',
    slow: 'opaque-slow-7a1c5e9b3d2f',
    query: 'opaque-in-query-2b8f4d6a0c1e',
    public: 'opaque-public-6e0a2c4f8b1d',
    dup1: 'opaque-dup-one-4c6e8a0b2d',
    dup2: 'opaque-dup-two-1f3b5d7e9a',
    long: `opaque-long-${'z'.repeat(5000)}`,
  };
  const jwts: string[] = [];
  type Req = { path: string; authorization?: string | string[]; status: number; cache: string };
  const batch: Req[] = [
    { path: '/api/orders', authorization: `Bearer ${tokens.valid}`, status: 200, cache: 'miss' },
    { path: '/api/orders', authorization: `Bearer ${tokens.valid}`, status: 200, cache: 'hit' },
    // Refusals after an introspection are misses (issue 11: they were logged "-").
    { path: '/api/x', authorization: `Bearer ${tokens.inactive}`, status: 401, cache: 'miss' },
    { path: '/api/x', authorization: `Bearer ${tokens.malformed}!`, status: 401, cache: '-' },
    { path: '/api/x', authorization: `Bearer ${tokens.failing}`, status: 502, cache: 'miss' },
    { path: '/api/x', authorization: `Bearer ${tokens.rejected}`, status: 502, cache: 'miss' },
    { path: '/api/x', authorization: `Bearer ${tokens.slow}`, status: 504, cache: 'miss' },
    // A query token on a protected route is refused (RFC 6750 §2.3), and never logged.
    { path: `/api/q?access_token=${tokens.query}`, authorization: `Bearer ${tokens.valid}`, status: 400, cache: '-' },
    { path: '/api/x', status: 401, cache: '-' },
    { path: '/public/x', authorization: `Bearer ${tokens.public}`, status: 200, cache: '-' },
    { path: '/api/x', authorization: [`Bearer ${tokens.dup1}`, `Bearer ${tokens.dup2}`], status: 401, cache: '-' },
    { path: '/api/x', authorization: `Bearer ${tokens.long}`, status: 401, cache: '-' },
  ];

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    gw = await startGateway(
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: '', timeout_ms: 200, client_secret: '${SECRET}' },
        routes: [{ path: '/api' }, { path: '/public', phantom_token: false }],
      }),
      { env: { SECRET } },
    );
    jwts.push(await as.activate(tokens.valid));
    // Error bodies that echo the token and the gateway's credentials back.
    as.answers.set(tokens.failing, { status: 500, body: `{"error":"bad token ${tokens.failing}","secret":"${SECRET}"}` });
    as.answers.set(tokens.rejected, { status: 401, body: `{"error":"invalid_client","client_secret":"${SECRET}"}` });
    jwts.push(await as.activate(tokens.slow, {}, { delayMs: 600 }));
    for (const r of batch) {
      const res = await call(`${gw.url}${r.path}`, r.authorization);
      assert.equal(res.status, r.status, `${r.path}: ${res.body}`);
    }
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
  });

  test('the logs contain no opaque token, no JWT, no client secret', () => {
    const raw = gw.rawLogs();
    assert.ok(raw.length > 0);
    const basic = Buffer.from(`gateway-client:${SECRET}`).toString('base64');
    for (const [name, t] of Object.entries(tokens)) assert.ok(!raw.includes(t.slice(0, 40)), `token "${name}" appears in the logs`);
    for (const jwt of jwts) {
      const [header, payload, signature] = jwt.split('.');
      assert.ok(!raw.includes(jwt), 'a JWT appears in the logs');
      assert.ok(!raw.includes(payload!) && !raw.includes(signature!), 'part of a JWT appears in the logs');
      assert.ok(header!.length > 0);
    }
    assert.ok(!raw.includes(SECRET), 'the client secret appears in the logs');
    assert.ok(!raw.includes(basic), 'the Basic credentials appear in the logs');
    assert.ok(!raw.includes('access_token'), 'a query string appears in the logs');
  });

  test('one access-log line per request, with method, path, status, ms and cache', () => {
    const access = gw.logs.filter((l) => l.msg === 'request');
    assert.equal(access.length, batch.length);
    access.forEach((line, i) => {
      const r = batch[i]!;
      assert.equal(line.method, 'GET');
      assert.equal(line.path, r.path.split('?')[0]);
      assert.equal(line.status, r.status);
      assert.equal(typeof line.ms, 'number');
      assert.ok((line.ms as number) >= 0);
      assert.equal(line.cache, r.cache, `cache field of request ${i} (${r.path})`);
    });
  });

  test('each introspection failure left one warning with a code', () => {
    const warnings = gw.logs.filter((l) => l.level === 'warn');
    assert.deepEqual(
      warnings.map((w) => w.code),
      ['ERR_INTROSPECTION_REJECTED', 'ERR_INTROSPECTION_REJECTED', 'ERR_INTROSPECTION_TIMEOUT'],
    );
  });
});
