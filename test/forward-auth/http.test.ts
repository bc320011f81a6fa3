import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { decodeJwt } from 'jose';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { rawRequest } from '../helpers/raw.js';
import { ask, forwarded, original, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';

/*
 * The forward-auth listener against a scripted introspection endpoint (it
 * answers what each test tells it to, faults included): forward-auth alone,
 * no proxy listener, routes without upstreams.
 */

const config = (as: ScriptedIntrospection, extra = '') => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
  token_cache_seconds: 60
  negative_cache_seconds: 7
forward_auth:
  identity_headers:
    sub: X-User
    client_id: X-Client-Id
    scope: X-Scope
    name: X-Name
    age: X-Age
    groups: X-Groups
${extra}
routes:
  - path: /api
  - path: /admin
    phantom_token:
      scope: admin
  - path: /slow
    phantom_token:
      timeout_ms: 300
  - path: /one
    phantom_token:
      connections: 1
  - path: /public
    phantom_token: false
`;

let as: ScriptedIntrospection;
let fa: TestForwardAuth;
before(async () => {
  as = await startScriptedIntrospection();
  fa = await startForwardAuth(config(as));
});
after(async () => {
  await fa.close();
  await as.close();
});
beforeEach(() => {
  as.calls.length = 0;
});

let n = 0;
/** A token nobody has used yet in this file. */
const fresh = (label: string) => `${label}-${++n}-${Math.random().toString(36).slice(2)}`;

describe('forward-auth: allow', () => {
  test('an active token gets 200 with its JWT, X-Accel-Expires within our own cache entry, Cache-Control private and no body', async () => {
    const token = fresh('ok');
    const jwt = await as.activate(token, {}, { expiresIn: 45 });
    const a = await ask(fa.url, forwarded('GET', '/api/items?x=1', `Bearer ${token}`));
    assert.equal(a.status, 200);
    assert.equal(a.headers.authorization, `Bearer ${jwt}`);
    const ttl = Number(a.headers['x-accel-expires']);
    // min(token_cache_seconds 60, exp - now 45), whole seconds
    assert.ok(Number.isInteger(ttl) && ttl > 40 && ttl <= 45, `x-accel-expires ${a.headers['x-accel-expires']}`);
    assert.ok(ttl <= (decodeJwt(jwt).exp as number) - Math.floor(Date.now() / 1000) + 1);
    assert.equal(a.headers['cache-control'], 'private');
    assert.equal(a.headers['content-length'], '0');
    assert.equal(a.body, '');
    assert.equal(as.callsFor(token), 1);
  });

  test('X-Accel-Expires is bounded by token_cache_seconds, and a cache hit gives what is left of the entry', async () => {
    const token = fresh('long');
    await as.activate(token, {}, { expiresIn: 3600 });
    const first = await ask(fa.url, forwarded('GET', '/api', `Bearer ${token}`));
    assert.ok(Number(first.headers['x-accel-expires']) <= 60 && Number(first.headers['x-accel-expires']) >= 58);
    const second = await ask(fa.url, forwarded('GET', '/api', `Bearer ${token}`));
    assert.equal(second.status, 200);
    assert.ok(Number(second.headers['x-accel-expires']) <= Number(first.headers['x-accel-expires']));
    assert.equal(as.callsFor(token), 1, 'the second decision is a cache hit');
    const hits = fa.logs.filter((l) => l.msg === 'decision' && l.cache === 'hit');
    assert.ok(hits.length >= 1);
  });

  test('X-Accel-Expires comes before Cache-Control on the wire (NGINX reads them in order)', async () => {
    const token = fresh('order');
    await as.activate(token);
    for (const auth of [`Bearer ${token}`, undefined]) {
      const lines = [`GET / HTTP/1.1`, `Host: fa`, `X-Forwarded-Method: GET`, `X-Forwarded-Uri: /api`, ...(auth ? [`Authorization: ${auth}`] : []), `Connection: close`, '', ''];
      const r = await rawRequest(fa.port, lines.join('\r\n'));
      const head = r.raw.slice(0, r.raw.indexOf('\r\n\r\n')).toLowerCase();
      assert.ok(head.indexOf('x-accel-expires:') > 0, head);
      assert.ok(head.indexOf('x-accel-expires:') < head.indexOf('cache-control:'), head);
      assert.equal(r.status, auth ? 200 : 401);
    }
  });

  test('identity headers carry sub, client_id, scope and safe claims; a claim with CR/LF, non-ASCII or not a string or number is not sent', async () => {
    const token = fresh('id');
    await as.activate(token, { name: 'Eve\r\nX-Injected: 1', age: 42, groups: ['a', 'b'] });
    const a = await ask(fa.url, forwarded('GET', '/api', `Bearer ${token}`));
    assert.equal(a.status, 200);
    assert.equal(a.headers['x-user'], 'user-1');
    assert.equal(a.headers['x-client-id'], 'test-client');
    assert.equal(a.headers['x-scope'], 'read');
    assert.equal(a.headers['x-age'], '42');
    assert.equal(a.headers['x-name'], undefined);
    assert.equal(a.headers['x-injected'], undefined);
    assert.equal(a.headers['x-groups'], undefined);

    const other = fresh('id');
    await as.activate(other, { name: 'Zoë', age: ' padded' });
    const b = await ask(fa.url, forwarded('GET', '/api', `Bearer ${other}`));
    assert.equal(b.status, 200);
    assert.equal(b.headers['x-name'], undefined);
    assert.equal(b.headers['x-age'], undefined);
    assert.equal(b.headers['x-user'], 'user-1');
    assert.equal(b.headers['x-client-id'], 'test-client');
  });

  test('an open route is allowed without a token and without an Authorization header in the answer', async () => {
    const a = await ask(fa.url, forwarded('POST', '/public/form'));
    assert.equal(a.status, 200);
    assert.equal(a.headers.authorization, undefined);
    assert.equal(a.headers['x-accel-expires'], '0');
    assert.equal(as.calls.length, 0);
  });

  test('a CORS preflight passes without a token (no Authorization in the answer, nothing for NGINX to cache)', async () => {
    const a = await ask(fa.url, [...forwarded('OPTIONS', '/api/items'), 'origin', 'https://app.example', 'access-control-request-method', 'DELETE']);
    assert.equal(a.status, 200);
    assert.equal(a.headers.authorization, undefined);
    assert.equal(a.headers['x-accel-expires'], '0');
    assert.equal(as.calls.length, 0);
    // Not a preflight without Access-Control-Request-Method: a token is needed.
    const b = await ask(fa.url, [...forwarded('OPTIONS', '/api/items'), 'origin', 'https://app.example']);
    assert.equal(b.status, 401);
  });

  test('concurrent decisions for one new token cost one introspection', async () => {
    const token = fresh('burst');
    await as.activate(token, {}, { delayMs: 150 });
    const answers = await Promise.all(Array.from({ length: 8 }, () => ask(fa.url, forwarded('GET', '/api/x', `Bearer ${token}`))));
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(8).fill(200),
    );
    assert.equal(as.callsFor(token), 1);
  });
});

describe('forward-auth: deny', () => {
  test('no token: 401 with WWW-Authenticate: Bearer, the JSON body, and X-Accel-Expires: 0', async () => {
    const a = await ask(fa.url, forwarded('GET', '/api/items'));
    assert.equal(a.status, 401);
    assert.equal(a.headers['www-authenticate'], 'Bearer');
    assert.deepEqual(JSON.parse(a.body), { code: 'unauthorized', message: 'Access token required' });
    assert.equal(a.headers['content-type'], 'application/json');
    assert.equal(a.headers['cache-control'], 'no-store');
    assert.equal(a.headers['x-accel-expires'], '0');
    assert.equal(a.headers.authorization, undefined);
  });

  test('a malformed token: 401 invalid_request, never introspected', async () => {
    const a = await ask(fa.url, forwarded('GET', '/api', 'Bearer a b'));
    assert.equal(a.status, 401);
    assert.equal(a.headers['www-authenticate'], 'Bearer error="invalid_request"');
    assert.equal(as.calls.length, 0);
  });

  test('an inactive token: 401 invalid_token with X-Accel-Expires = negative_cache_seconds', async () => {
    const token = fresh('dead');
    as.answers.set(token, { status: 200, body: '{"active":false}', headers: { 'content-type': 'application/json' } });
    const a = await ask(fa.url, forwarded('GET', '/api', `Bearer ${token}`));
    assert.equal(a.status, 401);
    assert.equal(a.headers['www-authenticate'], 'Bearer error="invalid_token"');
    // What is left of the gateway's own 7 s entry, whole seconds rounded down.
    assert.ok(['6', '7'].includes(String(a.headers['x-accel-expires'])), `X-Accel-Expires ${a.headers['x-accel-expires']}`);
    assert.deepEqual(JSON.parse(a.body), { code: 'unauthorized', message: 'Invalid or expired access token' });
  });

  test('a token without the route scope: 403 with the scope challenge and X-Accel-Expires = negative_cache_seconds', async () => {
    const token = fresh('noscope');
    await as.activate(token, { scope: 'write' });
    const a = await ask(fa.url, forwarded('GET', '/api', `Bearer ${token}`));
    assert.equal(a.status, 403);
    assert.equal(a.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="read"');
    // What is left of the gateway's own 7 s entry, whole seconds rounded down.
    assert.ok(['6', '7'].includes(String(a.headers['x-accel-expires'])), `X-Accel-Expires ${a.headers['x-accel-expires']}`);
    assert.equal(JSON.parse(a.body).code, 'forbidden');
  });

  test('the same token allowed on /api is refused on /admin (another scope), one introspection', async () => {
    const token = fresh('scoped');
    await as.activate(token, { scope: 'read' });
    assert.equal((await ask(fa.url, forwarded('GET', '/api/x', `Bearer ${token}`))).status, 200);
    const a = await ask(fa.url, forwarded('GET', '/admin/users', `Bearer ${token}`));
    assert.equal(a.status, 403);
    assert.equal(a.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="admin"');
    assert.equal(a.headers.authorization, undefined);
    assert.equal(as.callsFor(token), 1);
  });

  test('two Authorization headers: 401 invalid_request before any introspection', async () => {
    const token = fresh('two');
    await as.activate(token);
    const a = await ask(fa.url, forwarded('GET', '/api', [`Bearer ${token}`, `Bearer ${token}`]));
    assert.equal(a.status, 401);
    assert.equal(a.headers['www-authenticate'], 'Bearer error="invalid_request"');
    assert.equal(as.calls.length, 0);
  });

  test('scripted authorization server 503 with Retry-After: 503, Retry-After passed on, nothing NGINX could cache', async () => {
    const token = fresh('down');
    as.answers.set(token, { status: 503, headers: { 'retry-after': '7' } });
    const a = await ask(fa.url, forwarded('GET', '/api', `Bearer ${token}`));
    assert.equal(a.status, 503);
    assert.equal(a.headers['retry-after'], '7');
    assert.equal(a.headers['x-accel-expires'], '0');
    assert.equal(a.headers['cache-control'], 'no-store');
    assert.equal(JSON.parse(a.body).code, 'server_error');
    // An outage is never remembered: the next decision asks again.
    await ask(fa.url, forwarded('GET', '/api', `Bearer ${token}`));
    assert.equal(as.callsFor(token), 2);
  });

  test('scripted authorization server answering 500, or garbage: 502, never cached', async () => {
    const token = fresh('broken');
    as.answers.set(token, { status: 500, body: 'stack trace here' });
    const a = await ask(fa.url, forwarded('GET', '/api', `Bearer ${token}`));
    assert.equal(a.status, 502);
    assert.equal(a.headers['x-accel-expires'], '0');
    assert.deepEqual(JSON.parse(a.body), { code: 'server_error', message: 'Token validation is unavailable' });
    const other = fresh('garbage');
    as.answers.set(other, { status: 200, body: '<html>', headers: { 'content-type': 'text/html' } });
    assert.equal((await ask(fa.url, forwarded('GET', '/api', `Bearer ${other}`))).status, 502);
  });

  test('scripted authorization server too slow: 504', async () => {
    const token = fresh('slow');
    await as.activate(token, {}, { delayMs: 1000 });
    const a = await ask(fa.url, forwarded('GET', '/slow', `Bearer ${token}`));
    assert.equal(a.status, 504);
    assert.equal(a.headers['x-accel-expires'], '0');
    assert.equal(JSON.parse(a.body).message, 'Token validation timed out');
  });

  test('a route nobody configured: 404; TRACE and method overrides: 405', async () => {
    assert.equal((await ask(fa.url, forwarded('GET', '/nowhere'))).status, 404);
    assert.equal((await ask(fa.url, forwarded('TRACE', '/api'))).status, 405);
    assert.equal((await ask(fa.url, [...forwarded('POST', '/api'), 'x-http-method-override', 'DELETE'])).status, 405);
  });

  test('a token in the query string of the original URI: 400, never introspected', async () => {
    const token = fresh('query');
    await as.activate(token);
    const a = await ask(fa.url, forwarded('GET', `/api?access_token=${token}`, `Bearer ${token}`));
    assert.equal(a.status, 400);
    assert.equal(as.calls.length, 0);
    assert.ok(!fa.rawLogs().includes(token));
  });

  test('HEAD decision requests get the refusal without a body', async () => {
    const res = await request(`${fa.url}/`, { method: 'HEAD', headers: forwarded('GET', '/api') });
    assert.equal(res.statusCode, 401);
    assert.equal(await res.body.text(), '');
    assert.equal(res.headers['www-authenticate'], 'Bearer');
  });
});

describe('forward-auth: the original request', () => {
  test('original URIs the proxy would refuse are 400, never a decision for another route', async () => {
    const token = fresh('admin');
    await as.activate(token, { scope: 'read admin' });
    for (const uri of ['/api/../admin', '/api/%2e%2e/admin', '/api/%2E%2E/admin', 'http://fa/admin', '//admin/x', '/api/./x', '/api%2fadmin', '/api\\admin', '*', '', 'api']) {
      const a = await ask(fa.url, forwarded('GET', uri, `Bearer ${token}`));
      assert.equal(a.status, 400, uri);
      assert.equal(a.headers.authorization, undefined, uri);
      assert.equal(JSON.parse(a.body).code, 'bad_request', uri);
    }
    assert.equal(as.calls.length, 0);
  });

  test('X-Original-Method and X-Original-URI (NGINX) describe the request', async () => {
    const token = fresh('nginx');
    const jwt = await as.activate(token);
    const a = await ask(fa.url, original('GET', '/api/x?y=1', `Bearer ${token}`), { path: '/_auth' });
    assert.equal(a.status, 200);
    assert.equal(a.headers.authorization, `Bearer ${jwt}`);
    assert.equal((await ask(fa.url, original('GET', '/admin/x', `Bearer ${token}`))).status, 403);
  });

  test('fail-open misconfiguration: a decision request that describes no request (no X-Forwarded-*, no X-Original-*, no path_prefix) is 400, never decided on its own request line', async () => {
    const token = fresh('undescribed');
    await as.activate(token);
    assert.equal((await ask(fa.url, ['authorization', `Bearer ${token}`], { path: '/api/items?x=1' })).status, 400);
    assert.equal((await ask(fa.url, [], { path: '/public' })).status, 400, 'not allowed as the open route');
  });

  test('ambiguous or incomplete descriptions are 400: two X-Forwarded-Uri, a method without URI, both families, a lower-case method', async () => {
    const token = fresh('ambiguous');
    await as.activate(token);
    const auth = ['authorization', `Bearer ${token}`];
    const cases: Array<[string, string[]]> = [
      ['two X-Forwarded-Uri', ['x-forwarded-method', 'GET', 'x-forwarded-uri', '/api', 'x-forwarded-uri', '/public', ...auth]],
      ['two X-Original-Method', ['x-original-method', 'GET', 'x-original-method', 'GET', 'x-original-uri', '/api', ...auth]],
      ['X-Forwarded-Uri alone', ['x-forwarded-uri', '/api', ...auth]],
      ['X-Forwarded-Method alone', ['x-forwarded-method', 'GET', ...auth]],
      ['X-Original-URI alone', ['x-original-uri', '/api', ...auth]],
      // NGINX passes the client's own headers along with the ones it sets.
      ['a client X-Forwarded-* beside NGINX X-Original-*', [...forwarded('GET', '/public'), ...original('GET', '/admin'), ...auth]],
      ['a lower-case method', [...forwarded('get', '/api'), ...auth]],
      ['a method with a space', [...forwarded('GET X', '/api'), ...auth]],
    ];
    for (const [name, headers] of cases) assert.equal((await ask(fa.url, headers)).status, 400, name);
    assert.equal(as.calls.length, 0);
  });
});

describe('forward-auth: the listener itself', () => {
  test('decisions share keep-alive connections', async () => {
    const token = fresh('ka');
    await as.activate(token);
    let connections = 0;
    const count = () => connections++;
    fa.listener.server.on('connection', count);
    const agent = new Agent({ connections: 1 });
    try {
      for (let i = 0; i < 5; i++) {
        const res = await request(`${fa.url}/`, { dispatcher: agent, headers: forwarded('GET', '/api', `Bearer ${token}`) });
        await res.body.text();
        assert.equal(res.statusCode, 200);
        assert.notEqual(res.headers.connection, 'close');
      }
      assert.equal(connections, 1);
    } finally {
      fa.listener.server.off('connection', count);
      await agent.close();
    }
  });

  test('a decision request with a body is answered at once, unread, and its connection closed', async () => {
    const token = fresh('body');
    await as.activate(token);
    // Content-Length announced, body never sent (NGINX proxy_pass_request_body off without clearing the header).
    const r = await rawRequest(fa.port, `GET / HTTP/1.1\r\nHost: fa\r\nX-Forwarded-Method: POST\r\nX-Forwarded-Uri: /api\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\n`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.connection, 'close');
  });

  test('too many headers: 431', async () => {
    const many: string[] = [];
    for (let i = 0; i < 120; i++) many.push(`x-h${i}`, 'v');
    assert.equal((await ask(fa.url, [...forwarded('GET', '/api'), ...many])).status, 431);
  });

  test('the access log has one line per decision: original method and path (never the query), status, cache, code; never a token or JWT', async () => {
    const token = fresh('logged');
    const jwt = await as.activate(token);
    await ask(fa.url, forwarded('PUT', '/api/things?secret=1', `Bearer ${token}`));
    await ask(fa.url, forwarded('PUT', '/api/things?secret=1', `Bearer ${token}`));
    await ask(fa.url, forwarded('GET', '/admin/x', `Bearer ${token}`));
    const lines = fa.logs.filter((l) => l.msg === 'decision').slice(-3);
    assert.deepEqual(
      lines.map((l) => [l.method, l.path, l.status, l.cache, l.code]),
      [
        ['PUT', '/api/things', 200, 'miss', undefined],
        ['PUT', '/api/things', 200, 'hit', undefined],
        ['GET', '/admin/x', 403, 'hit', 'ERR_INSUFFICIENT_SCOPE'],
      ],
    );
    const raw = fa.rawLogs();
    assert.ok(!raw.includes(token) && !raw.includes(jwt) && !raw.includes('secret=1'));
  });

  test('a gateway that gives up on a decision withdraws it: an introspection still queued is never sent', async () => {
    // /one allows one introspection at a time: the second token waits in the queue.
    const first = fresh('busy');
    const second = fresh('withdrawn');
    await as.activate(first, {}, { delayMs: 400 });
    await as.activate(second);
    const busy = ask(fa.url, forwarded('GET', '/one', `Bearer ${first}`));
    await new Promise((r) => setTimeout(r, 50));
    const controller = new AbortController();
    const gone = request(`${fa.url}/`, { headers: forwarded('GET', '/one', `Bearer ${second}`), signal: controller.signal }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    controller.abort();
    await gone;
    assert.equal((await busy).status, 200);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(as.callsFor(second), 0);
    assert.ok(fa.logs.some((l) => l.msg === 'decision' && l.status === 499 && l.code === 'client_closed'));
  });
});

describe('forward-auth: path_prefix (Envoy HTTP ext_authz)', () => {
  let envoy: TestForwardAuth;
  before(async () => {
    envoy = await startForwardAuth(config(as).replace('forward_auth:\n', 'forward_auth:\n  path_prefix: /authz\n'));
  });
  after(() => envoy.close());

  test('the request line under the prefix is the original request; headers from the client are not read', async () => {
    const token = fresh('prefix');
    await as.activate(token);
    assert.equal((await ask(envoy.url, ['authorization', `Bearer ${token}`], { path: '/authz/api/x?y=1' })).status, 200);
    // A client-sent X-Forwarded-Uri that Envoy let through changes nothing.
    assert.equal((await ask(envoy.url, [...forwarded('GET', '/api'), 'authorization', `Bearer ${token}`], { path: '/authz/admin', method: 'POST' })).status, 403);
    assert.equal((await ask(envoy.url, ['authorization', `Bearer ${token}`], { path: '/authz/../api' })).status, 400);
  });

  test('outside the prefix, the headers describe the request; a bare request line is 400', async () => {
    const token = fresh('prefix2');
    await as.activate(token);
    assert.equal((await ask(envoy.url, forwarded('GET', '/api', `Bearer ${token}`))).status, 200);
    assert.equal((await ask(envoy.url, ['authorization', `Bearer ${token}`], { path: '/api' })).status, 400);
    assert.equal((await ask(envoy.url, ['authorization', `Bearer ${token}`], { path: '/authzapi' })).status, 400);
  });

  test('path_prefix: / makes every request line the original request (Envoy without a path_prefix of its own)', async () => {
    const root = await startForwardAuth(config(as).replace('forward_auth:\n', 'forward_auth:\n  path_prefix: /\n'));
    try {
      const token = fresh('prefix-root');
      await as.activate(token);
      assert.equal((await ask(root.url, ['authorization', `Bearer ${token}`], { path: '/api/items?x=1' })).status, 200);
      assert.equal((await ask(root.url, [...forwarded('GET', '/api'), 'authorization', `Bearer ${token}`], { path: '/admin/items' })).status, 403, 'headers are not read');
      assert.equal((await ask(root.url, ['authorization', `Bearer ${token}`], { path: '/public', method: 'DELETE' })).status, 200);
    } finally {
      await root.close();
    }
  });
});
