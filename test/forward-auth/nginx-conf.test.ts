/*
 * `phantom-gateway nginx-conf` against a real NGINX (Debian's, with the
 * set-misc module): the generated file passes `nginx -t`, then NGINX runs in
 * front of an echo upstream, the forward-auth decision listener and a
 * scripted introspection endpoint.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { IncomingMessage } from 'node:http';
import { getGlobalDispatcher } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { upstreamPath } from '../../src/config/schema.js';
import { REFUSED } from '../../src/core/guards.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { NGINX_MODULES, NginxConfError, nginxConf, type NginxConfOptions } from '../../src/forward-auth/nginx-conf.js';
import { createLogger } from '../../src/observability/logger.js';
import { checkTarget } from '../../src/routing/request-target.js';
import { rewritePath } from '../../src/routing/router.js';
import { ensureBuilt, freePort, runCli, scratchDir } from '../helpers/cli.js';
import { rawRequest } from '../helpers/raw.js';
import { filesUnder, MODULES, nginx, nginxPrefix, nginxTest, skip, startGeneratedNginx, type NginxInstance } from '../helpers/nginx.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';


/** `forward_auth` on `port`, with `X-User-Id` from the `client_id` claim. */
const forwardAuthYaml = (port: number) => `
forward_auth:
  listen: { host: 127.0.0.1, port: ${port} }
  identity_headers: { client_id: X-User-Id }
`;

const routesYaml = (as: string, api: string, extra = '') => `
phantom_token:
  introspection_endpoint: ${as}/introspect
  client_id: nginx-test
  client_secret: s3cret
  scope: read
${extra}
routes:
  - path: /api
    upstream: ${api}
  - path: /admin/
    upstream: ${api}/v1/
    phantom_token: { scope: admin }
  - path: /public
    upstream: ${api}
    phantom_token: false
`;


describe('nginx-conf: generation', () => {
  it('refuses a configuration with protected routes and no forward_auth.listen, naming the option', () => {
    const config = parseConfig(routesYaml('http://127.0.0.1:1', 'http://127.0.0.1:2'), { file: 't.yaml', env: {} });
    assert.throws(() => nginxConf(config), (e: unknown) => e instanceof NginxConfError && /forward_auth\.listen/.test(e.message));
  });

  it('puts the load_module lines the file needs in its header comment, and never a secret', () => {
    const config = parseConfig(routesYaml('http://127.0.0.1:1', 'http://127.0.0.1:2') + forwardAuthYaml(9000), { file: 't.yaml', env: {} });
    const text = nginxConf(config, { listen: { host: '0.0.0.0', port: 80 } });
    for (const m of NGINX_MODULES) assert.match(text, new RegExp(`^#\\s+load_module ${m.replace(/\./g, '\\.')};$`, 'm'));
    assert.ok(!text.includes('s3cret'));
  });
});

describe('phantom-gateway nginx-conf (the command)', () => {
  const files = scratchDir();
  before(() => ensureBuilt());
  after(() => files.cleanup());

  it('prints the configuration for --config and --listen; nginx -t passes on it', { skip }, async () => {
    const file = files.write('gateway.yaml', routesYaml('http://127.0.0.1:1', 'http://127.0.0.1:2') + forwardAuthYaml(9000));
    const r = await runCli(['nginx-conf', '--config', file, '--listen', '127.0.0.1:18082', '--cache-zone', 'my_zone']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {2}listen 127\.0\.0\.1:18082;$/m);
    assert.match(r.stdout, /keys_zone=my_zone:/);
    assert.match(r.stdout, /auth_request \/_phantom-gateway\/decide\/0;/);
    const prefix = nginxPrefix((cachePath) => r.stdout.replace(/proxy_cache_path \S+/, `proxy_cache_path ${cachePath}`), MODULES);
    try {
      const t = nginxTest(nginx.path!, prefix.dir);
      assert.equal(t.status, 0, t.output);
    } finally {
      prefix.remove();
    }
  });

  it('exits 2 naming forward_auth.listen when protected routes have no listener to ask', async () => {
    const file = files.write('no-fa.yaml', routesYaml('http://127.0.0.1:1', 'http://127.0.0.1:2'));
    const r = await runCli(['nginx-conf', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /forward_auth\.listen/);
    assert.equal(r.stdout, '');
  });

  it('exits 2 on a --listen that is not HOST:PORT', async () => {
    const file = files.write('ok.yaml', routesYaml('http://127.0.0.1:1', 'http://127.0.0.1:2') + forwardAuthYaml(9000));
    const r = await runCli(['nginx-conf', '--config', file, '--listen', '8080']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--listen must be HOST:PORT/);
  });
});

describe('nginx-conf: nginx -t', { skip }, () => {
  const cases: Array<[string, string, NginxConfOptions]> = [
    ['protected and open routes, decision cache on', '', {}],
    ['decision cache off', '', { decisionCache: false }],
  ];
  for (const [name, extra, opts] of cases) {
    it(`passes for ${name}`, () => {
      // An https upstream needs the system CA bundle the generated file names (Debian's ca-certificates).
      const upstream = existsSync('/etc/ssl/certs/ca-certificates.crt') ? 'https://localhost:8443' : 'http://localhost:8443';
      const config = parseConfig(routesYaml('http://127.0.0.1:1', upstream, extra) + forwardAuthYaml(9000), { file: 't.yaml', env: {} });
      const prefix = nginxPrefix((cachePath) => nginxConf(config, { listen: { host: '127.0.0.1', port: 18080 }, cachePath, ...opts }), MODULES);
      try {
        const r = nginxTest(nginx.path!, prefix.dir);
        assert.equal(r.status, 0, r.output);
      } finally {
        prefix.remove();
      }
    });
  }
  it('passes for open routes only (no forward-auth listener needed)', () => {
    const config = parseConfig(
      `routes:\n  - path: /\n    upstream: http://127.0.0.1:9\n    phantom_token: false\n  - path: /files/\n    upstream: http://127.0.0.1:9/v2/\n    phantom_token: false\n`,
      { file: 't.yaml', env: {} },
    );
    const prefix = nginxPrefix(() => nginxConf(config, { listen: { host: '127.0.0.1', port: 18081 } }), MODULES);
    try {
      const r = nginxTest(nginx.path!, prefix.dir);
      assert.equal(r.status, 0, r.output);
    } finally {
      prefix.remove();
    }
  });
});

/** The forward-auth listener's decision requests, as NGINX sent them, and its connections. */
interface Decisions {
  calls: Array<{ method: string | undefined; uri: string | undefined; headers: Record<string, string | string[] | undefined> }>;
  connections: number;
}

interface NginxStack {
  as: ScriptedIntrospection;
  api: EchoUpstream;
  listener: ForwardAuthListener;
  decisions: Decisions;
  nginx: NginxInstance;
  url: string;
}

/** The scripted introspection endpoint, the echo upstream, the real forward-auth listener, and NGINX with the generated configuration in front. */
async function startNginxStack(yaml: (as: string, api: string) => string, opts: NginxConfOptions = {}): Promise<NginxStack> {
  const as = await startScriptedIntrospection();
  const api = await startEchoUpstream();
  const faPort = await freePort();
  const config = parseConfig(yaml(as.url, api.url) + forwardAuthYaml(faPort) + 'log: { level: silent }\n', { file: 't.yaml', env: {} });
  const listener = new ForwardAuthListener(config, { logger: createLogger('silent') });
  const decisions: Decisions = { calls: [], connections: 0 };
  listener.server.on('request', (req: IncomingMessage) =>
    decisions.calls.push({ method: req.headers['x-original-method'] as string | undefined, uri: req.headers['x-original-uri'] as string | undefined, headers: req.headers }),
  );
  listener.server.on('connection', () => decisions.connections++);
  await listener.listen();
  let started: { instance: NginxInstance; port: number };
  try {
    started = await startGeneratedNginx(config, opts);
  } catch (err) {
    await listener.close();
    await as.close();
    await api.close();
    throw err;
  }
  const { instance, port } = started;
  return { as, api, listener, decisions, nginx: instance, url: `http://127.0.0.1:${port}` };
}

async function stopNginxStack(s: NginxStack | undefined): Promise<void> {
  if (s === undefined) return;
  await s.nginx.stop();
  await s.listener.close();
  await s.as.close();
  await s.api.close();
}

/** A request with its target sent exactly as written (no URL normalisation on the client side). */
async function get(url: string, headers: Record<string, string | string[]> = {}, method = 'GET') {
  const m = /^(https?:\/\/[^/]+)(.*)$/.exec(url)!;
  const r = await getGlobalDispatcher().request({ origin: m[1]!, path: m[2]!, method: method as 'GET', headers });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) as { code: string; message: string } };
}

describe('NGINX in front of the forward-auth listener', { skip }, () => {
  let s: NginxStack;
  before(async () => {
    s = await startNginxStack((as, api) => routesYaml(as, api));
  });
  after(() => stopNginxStack(s));

  it('the upstream receives the JWT in place of the opaque token, one Authorization only', async () => {
    const jwt = await s.as.activate('opaque-1', { scope: 'read' });
    s.api.received.length = 0;
    const r = await get(`${s.url}/api/items?x=1`, { authorization: 'Bearer opaque-1' });
    assert.equal(r.status, 200);
    assert.equal(s.api.received.length, 1);
    const seen = s.api.received[0]!;
    assert.equal(seen.url, '/api/items?x=1');
    assert.equal(seen.headers.authorization, `Bearer ${jwt}`);
    const auth = seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'authorization');
    assert.equal(auth.length, 1);
    assert.ok(!JSON.stringify(seen).includes('opaque-1'));
  });

  it('no token: 401 with WWW-Authenticate: Bearer and the JSON body, nothing upstream', async () => {
    s.api.received.length = 0;
    const r = await get(`${s.url}/api/items`);
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Bearer');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.deepEqual(r.json(), { code: 'unauthorized', message: 'Access token required' });
    assert.equal(s.api.received.length, 0);
  });

  it('an inactive token: 401 invalid_token; a malformed header: 401 invalid_request', async () => {
    const bad = await get(`${s.url}/api/items`, { authorization: 'Bearer not-active' });
    assert.equal(bad.status, 401);
    assert.equal(bad.headers['www-authenticate'], 'Bearer error="invalid_token"');
    assert.deepEqual(bad.json(), { code: 'unauthorized', message: 'Invalid or expired access token' });
    const malformed = await get(`${s.url}/api/items`, { authorization: 'Bearer a b' });
    assert.equal(malformed.status, 401);
    assert.equal(malformed.headers['www-authenticate'], 'Bearer error="invalid_request"');
    assert.deepEqual(malformed.json(), { code: 'unauthorized', message: 'Malformed Authorization header' });
  });

  it('a token allowed on /api (scope read) is refused on /admin (scope admin) with 403, even with its /api decision cached', async () => {
    await s.as.activate('reader', { scope: 'read' });
    assert.equal((await get(`${s.url}/api/x`, { authorization: 'Bearer reader' })).status, 200);
    s.api.received.length = 0;
    for (const path of ['/admin/x', '/admin']) {
      const r = await get(`${s.url}${path}`, { authorization: 'Bearer reader' });
      assert.equal(r.status, 403, path);
      assert.equal(r.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="admin"');
      assert.deepEqual(r.json(), { code: 'forbidden', message: 'The access token does not have the required scope' });
    }
    assert.equal(s.api.received.length, 0);
  });

  it('a token with scope admin reaches /admin/ rewritten to the upstream path, /admin included', async () => {
    await s.as.activate('admin-1', { scope: 'read admin' });
    s.api.received.length = 0;
    for (const path of ['/admin/x', '/admin', '/admin/a/b?q=1']) assert.equal((await get(`${s.url}${path}`, { authorization: 'Bearer admin-1' })).status, 200, path);
    assert.deepEqual(
      s.api.received.map((r) => r.url),
      ['/v1/x', '/v1', '/v1/a/b?q=1'],
    );
  });

  it('a client-sent identity header never reaches the upstream, on protected and open routes', async () => {
    await s.as.activate('ident', { scope: 'read', client_id: 'alice' });
    s.api.received.length = 0;
    await get(`${s.url}/api/x`, { authorization: 'Bearer ident', 'x-user-id': 'mallory' });
    await get(`${s.url}/public/x`, { 'x-user-id': 'mallory', 'X-USER-ID': 'mallory2' });
    assert.equal(s.api.received.length, 2);
    assert.equal(s.api.received[0]!.headers['x-user-id'], 'alice');
    assert.equal(s.api.received[1]!.headers['x-user-id'], undefined);
  });

  it('a CORS preflight passes without a token; an OPTIONS with Origin, Access-Control-Request-Method and a body needs one', async () => {
    const cors = { origin: 'https://app.example', 'access-control-request-method': 'DELETE' };
    s.api.received.length = 0;
    const pre = await get(`${s.url}/api/x`, cors, 'OPTIONS');
    assert.equal(pre.status, 200);
    assert.equal(s.api.received.length, 1);
    assert.equal(s.api.received[0]!.headers.authorization, undefined);
    const port = Number(new URL(s.url).port);
    const withBody = await rawRequest(port, 'OPTIONS /api/x HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: DELETE\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
    assert.equal(withBody.status, 401);
    assert.equal(s.api.received.length, 1);
  });

  it('an open route passes without a decision call', async () => {
    const before = s.decisions.calls.length;
    const r = await get(`${s.url}/public/page`);
    assert.equal(r.status, 200);
    assert.equal(s.decisions.calls.length, before);
  });

  it('paths NGINX would normalise onto another route are refused with 400 before any decision (/public/../admin, %2e%2e, //, %2f)', async () => {
    const before = s.decisions.calls.length;
    s.api.received.length = 0;
    const port = Number(new URL(s.url).port);
    for (const path of ['/public/../admin/x', '/public/%2e%2e/admin/x', '/public/%2E%2E/admin/x', '//admin/x', '/public/..%2fadmin/x', '/public/.%2e/admin', '/admin/./x', '/public\\..\\admin', '/public/x/..', '/public/x/.']) {
      const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      assert.equal(r.status, 400, path);
      assert.deepEqual(JSON.parse(r.body), { code: 'bad_request', message: 'Bad request' }, path);
    }
    assert.equal(s.decisions.calls.length, before);
    assert.equal(s.api.received.length, 0);
  });

  it('NGINX\'s own refusals are JSON too: TRACE 405, a body over max_body_bytes 413, an internal location 404', async () => {
    const trace = await get(`${s.url}/public/x`, {}, 'TRACE');
    assert.equal(trace.status, 405);
    assert.deepEqual(trace.json(), { code: 'bad_request', message: 'Method not allowed' });
    const port = Number(new URL(s.url).port);
    const big = await rawRequest(port, 'POST /public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20000000\r\nConnection: close\r\n\r\n');
    assert.equal(big.status, 413);
    assert.deepEqual(JSON.parse(big.body), { code: 'bad_request', message: 'Request body too large' });
    const internal = await get(`${s.url}/_phantom-gateway/decide/0`);
    assert.equal(internal.status, 404);
    assert.deepEqual(internal.json(), { code: 'not_found', message: 'No route for this path' });
  });

  it('a path whose route depends on case is refused (/ADMIN/x, /Api/x), as by the gateway', async () => {
    for (const path of ['/ADMIN/x', '/Admin', '/Api/x', '/API.json']) assert.equal((await get(`${s.url}${path}`)).status, 400, path);
  });

  it('a token in the query is refused with 400 and the challenge, even when the token\'s decision is cached', async () => {
    await s.as.activate('cached-q', { scope: 'read' });
    assert.equal((await get(`${s.url}/api/x`, { authorization: 'Bearer cached-q' })).status, 200);
    s.api.received.length = 0;
    const r = await get(`${s.url}/api/x?access_token=cached-q`, { authorization: 'Bearer cached-q' });
    assert.equal(r.status, 400);
    assert.equal(r.headers['www-authenticate'], 'Bearer error="invalid_request"');
    assert.deepEqual(r.json(), { code: 'bad_request', message: 'Access tokens are not accepted in the query string' });
    assert.equal(s.api.received.length, 0);
  });

  it('two Authorization headers are refused with 400 by NGINX itself, before any decision', async () => {
    await s.as.activate('dup-1', { scope: 'read' });
    const before = s.decisions.calls.length;
    s.api.received.length = 0;
    const port = Number(new URL(s.url).port);
    const r = await rawRequest(port, 'GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer dup-1\r\nAuthorization: Bearer other\r\nConnection: close\r\n\r\n');
    assert.equal(r.status, 400);
    assert.deepEqual(JSON.parse(r.body), { code: 'bad_request', message: 'Bad request' });
    assert.equal(s.decisions.calls.length, before);
    assert.equal(s.api.received.length, 0);
  });

  it('a method-override header is refused with 405 even when the token\'s decision is cached', async () => {
    await s.as.activate('cached-o', { scope: 'read' });
    assert.equal((await get(`${s.url}/api/x`, { authorization: 'Bearer cached-o' })).status, 200);
    const r = await get(`${s.url}/api/x`, { authorization: 'Bearer cached-o', 'x-http-method-override': 'TRACE' }, 'POST');
    assert.equal(r.status, 405);
    assert.deepEqual(r.json(), { code: 'bad_request', message: 'Method not allowed' });
  });

  it('scripted: the authorization server answering 503 with Retry-After gives the client 503, Retry-After and the JSON body (not NGINX\'s 500)', async () => {
    s.as.answers.set('during-outage', { status: 503, headers: { 'retry-after': '7' } });
    const r = await get(`${s.url}/api/x`, { authorization: 'Bearer during-outage' });
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '7');
    assert.deepEqual(r.json(), { code: 'server_error', message: 'Token validation is temporarily unavailable' });
  });

  it('scripted: the authorization server answering 500 gives 502 server_error, and is never cached', async () => {
    s.as.answers.set('as-broken', { status: 500 });
    const calls = s.decisions.calls.length;
    for (let i = 0; i < 2; i++) {
      const r = await get(`${s.url}/api/x`, { authorization: 'Bearer as-broken' });
      assert.equal(r.status, 502);
      assert.deepEqual(r.json(), { code: 'server_error', message: 'Token validation is unavailable' });
    }
    assert.equal(s.decisions.calls.length, calls + 2);
  });

  it('decisions for one token are cached per route: repeated requests cost one introspection and one decision call', async () => {
    await s.as.activate('repeat', { scope: 'read admin' });
    const calls = s.decisions.calls.length;
    for (let i = 0; i < 10; i++) assert.equal((await get(`${s.url}/api/r${i}`, { authorization: 'Bearer repeat' }, i % 2 ? 'POST' : 'GET')).status, 200);
    assert.equal(s.as.callsFor('repeat'), 1);
    assert.equal(s.decisions.calls.length, calls + 1);
    // Another route, other requirements: its own decision (the token is still cached by the listener).
    assert.equal((await get(`${s.url}/admin/x`, { authorization: 'Bearer repeat' })).status, 200);
    assert.equal(s.decisions.calls.length, calls + 2);
    assert.equal(s.as.callsFor('repeat'), 1);
  });

  it('an inactive token is remembered for negative_cache_seconds: one decision call for repeated requests', async () => {
    const calls = s.decisions.calls.length;
    for (let i = 0; i < 3; i++) assert.equal((await get(`${s.url}/api/x`, { authorization: 'Bearer dead-token' })).status, 401);
    assert.equal(s.decisions.calls.length, calls + 1);
    assert.equal(s.as.callsFor('dead-token'), 1);
  });

  it('no cache file contains the opaque token (only a hash of the Authorization value)', async () => {
    const token = 'opaque-on-disk-check-7f3a9c';
    await s.as.activate(token, { scope: 'read' });
    assert.equal((await get(`${s.url}/api/x`, { authorization: `Bearer ${token}` })).status, 200);
    const files = filesUnder(s.nginx.cacheDir);
    assert.ok(files.length > 0, 'the decision cache holds files');
    for (const f of files) {
      const data = readFileSync(f);
      assert.ok(!data.includes(token), `${f} contains the opaque token`);
      assert.ok(!data.includes(Buffer.from(token).toString('base64')), `${f} contains the opaque token in base64`);
    }
  });

  it('keeps its connections to the decision service alive, refusals included', async () => {
    const before = s.decisions.connections;
    for (let i = 0; i < 12; i++) await get(`${s.url}/api/x`, { authorization: `Bearer keepalive-${i}` });
    assert.ok(s.decisions.connections - before <= 1, `${s.decisions.connections - before} new connections for 12 decisions`);
  });

  it('a client cannot choose the request the decision is about (X-Original-URI, X-Forwarded-Uri)', async () => {
    const r = await get(`${s.url}/admin/x`, { 'x-original-uri': '/public/x', 'x-forwarded-uri': '/public/x', 'x-original-method': 'OPTIONS' });
    assert.equal(r.status, 401);
    const last = s.decisions.calls.at(-1)!;
    assert.equal(last.uri, '/admin/x');
    assert.equal(last.method, 'GET');
    assert.equal(last.headers['x-forwarded-uri'], undefined);
  });
});

describe('NGINX decision cache TTL', { skip }, () => {
  let s: NginxStack;
  before(async () => {
    s = await startNginxStack((as, api) => routesYaml(as, api, '  token_cache_seconds: 2'));
  });
  after(() => stopNginxStack(s));

  it('NGINX keeps a decision for the X-Accel-Expires it was given, then asks again', async () => {
    await s.as.activate('short-lived', { scope: 'read' });
    const start = Date.now();
    for (let i = 0; i < 5; i++) assert.equal((await get(`${s.url}/api/x`, { authorization: 'Bearer short-lived' })).status, 200);
    assert.equal(s.decisions.calls.length, 1);
    assert.equal(s.as.callsFor('short-lived'), 1);
    // token_cache_seconds 2 -> X-Accel-Expires 1: NGINX asks again 1-2 s later (its clock has whole seconds).
    while (s.decisions.calls.length < 2 && Date.now() - start < 6000) {
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await get(`${s.url}/api/x`, { authorization: 'Bearer short-lived' })).status, 200);
    }
    assert.equal(s.decisions.calls.length, 2);
    assert.ok(Date.now() - start >= 900, 'not before the TTL');
  });
});

describe('NGINX without the decision cache', { skip }, () => {
  let s: NginxStack;
  before(async () => {
    s = await startNginxStack((as, api) => routesYaml(as, api), { decisionCache: false });
  });
  after(() => stopNginxStack(s));

  it('asks the listener on every request (which answers from its own cache: one introspection)', async () => {
    await s.as.activate('every-time', { scope: 'read' });
    for (let i = 0; i < 4; i++) assert.equal((await get(`${s.url}/api/x`, { authorization: 'Bearer every-time' })).status, 200);
    assert.equal(s.decisions.calls.length, 4);
    assert.equal(s.as.callsFor('every-time'), 1);
  });
});

/**
 * For every spelling, NGINX with the generated configuration picks the route
 * the router picks (the upstream path it would send) or refuses what it
 * refuses (400) or has no route for (404). Each route's upstream path names
 * the route, so the echo tells which one NGINX picked.
 */
function routesLikeTheRouter(name: string, routes: (api: string) => string, paths: string[]): void {
  describe(name, { skip }, () => {
    let s: NginxStack;
    before(async () => {
      s = await startNginxStack((as, api) => `
phantom_token:
  introspection_endpoint: ${as}/introspect
  client_id: nginx-test
  client_secret: s3cret
routes:
${routes(api)}`);
      await s.as.activate('all', { scope: 'read admin other' });
    });
    after(() => stopNginxStack(s));

    it(`${paths.length} spellings: NGINX picks the route the router picks, refuses what it refuses`, async () => {
      const mismatches: string[] = [];
      for (const path of paths) {
        const t = checkTarget(path);
        const route = t === undefined ? REFUSED : s.listener.guards.forRoute(t.path);
        // The upstream path the gateway would send, or the refusal's status.
        const expected = route === REFUSED ? '400' : route === undefined ? '404' : rewritePath(t!.path, route.config.path, upstreamPath(route.config.upstream!));
        s.api.received.length = 0;
        const r = await get(`${s.url}${path}`, { authorization: 'Bearer all' });
        const got = r.status === 200 ? (s.api.received[0]?.url ?? '?') : String(r.status);
        if (got !== expected) mismatches.push(`${path}: router ${expected}, nginx ${got}`);
      }
      assert.deepEqual(mismatches, []);
    });
  });
}

routesLikeTheRouter(
  "NGINX routes as the gateway's router does",
  (api) => `
  - path: /
    upstream: ${api}/r-root/
    phantom_token: false
  - path: /api
    upstream: ${api}/r-api/
    phantom_token: { scope: read }
  - path: /admin/
    upstream: ${api}/r-admin/
    phantom_token: { scope: admin }
  - path: /public
    upstream: ${api}/r-public/
    phantom_token: false
  - path: /docs/
    upstream: ${api}/r-docs/
    phantom_token: false
  - path: /docs/internal
    upstream: ${api}/r-internal/
    phantom_token: { scope: admin }
  - path: /v1/projects:purge
    upstream: ${api}/r-purge/
    phantom_token: { scope: admin }
  - path: /x/
    upstream: ${api}/r-x/
    phantom_token: { scope: other }
`,
  [
    '/', '/api', '/api/', '/api/x', '/apix', '/api.json', '/api.json/', '/api.v1.json', '/admin', '/admin/', '/admin/x', '/admin.json', '/admin.json/', '/admin.json/x',
    '/ADMIN', '/Admin/x', '/api/X', '/API', '/public', '/public/x', '/public.json', '/publicx', '/docs', '/docs/', '/docs/a', '/docs/internal', '/docs/internal.json',
    '/docs/internal/x', '/Docs/internal', '/v1/projects:purge', '/v1/projects%3Apurge', '/v1/projects%3apurge', '/v1/projects', '/x', '/x/', '/x.json', '/y.json',
    '/admin.', '/.admin', '/api%2Fx', '/%61dmin',
  ],
);

routesLikeTheRouter(
  "NGINX routes as the gateway's router does, with a capital in a route prefix",
  (api) => `
  - path: /
    upstream: ${api}/r-root/
    phantom_token: false
  - path: /Admin
    upstream: ${api}/r-admin/
    phantom_token: { scope: admin }
  - path: /api
    upstream: ${api}/r-api/
    phantom_token: { scope: read }
`,
  ['/', '/x', '/Admin', '/Admin/x', '/admin', '/admin/x', '/ADMIN/x', '/Admin.json', '/admin.json', '/api/x', '/API/x', '/api/X', '/Api', '/adminx', '/x/admin'],
);

describe('NGINX when the forward-auth listener is down', { skip }, () => {
  let api: EchoUpstream;
  let instance: NginxInstance;
  let url: string;
  before(async () => {
    api = await startEchoUpstream();
    // Nothing listens on the listener's port.
    const config = parseConfig(routesYaml('http://127.0.0.1:1', api.url) + forwardAuthYaml(await freePort()), { file: 't.yaml', env: {} });
    const started = await startGeneratedNginx(config);
    instance = started.instance;
    url = `http://127.0.0.1:${started.port}`;
  });
  after(async () => {
    await instance?.stop();
    await api?.close();
  });

  it('protected routes fail closed with 502 server_error (not NGINX\'s 500), open routes still pass', async () => {
    const r = await get(`${url}/api/x`, { authorization: 'Bearer any' });
    assert.equal(r.status, 502);
    assert.deepEqual(r.json(), { code: 'server_error', message: 'Token validation is unavailable' });
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.equal(api.received.length, 0);
    assert.equal((await get(`${url}/public/x`)).status, 200);
  });
});
