/*
 * The generated NGINX configuration against a real NGINX, for the weaknesses a
 * hostile review of `nginx-conf` found (issue 9): each test is named after the
 * weakness it guards against. Stack: scripted introspection endpoint, echo
 * upstream, the real forward-auth listener, NGINX running the generated file.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { NGINX_CONF_DEFAULTS, nginxConf } from '../../src/forward-auth/nginx-conf.js';
import { createLogger } from '../../src/observability/logger.js';
import { nginxPrefix, nginxTest, filesUnder } from '../helpers/nginx.js';
import { MODULES, nginx, reviewYaml, skip, startReviewStack, type ReviewStack } from '../helpers/nginx-stack.js';
import { rawRequest } from '../helpers/raw.js';


describe('nginx-conf review: a cached allow reused for requests the listener refuses', { skip }, () => {
  let s: ReviewStack;
  before(async () => {
    s = await startReviewStack();
    await s.as.activate('cached-1', { scope: 'read' });
    const warm = await send('/api/warm', '');
    assert.equal(warm.status, 200);
  });
  after(() => s?.stop());

  const send = (target: string, headers: string, method = 'GET') =>
    rawRequest(s.port, `${method} ${target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer cached-1\r\n${headers}Connection: close\r\n\r\n`);
  const overrides = () =>
    s.api.received.map((x) => [x.method, ...x.rawHeaders.filter((_, i) => i % 2 === 0 && /^x-(?:http-method-override|http-method|method-override)$/i.test(x.rawHeaders[i]!))]);

  it('an empty first method-override field (then X-HTTP-Method-Override: DELETE) never reaches the upstream: NGINX\'s method only', async () => {
    s.api.received.length = 0;
    const r = await send('/api/items/1', 'X-HTTP-Method-Override:\r\nX-HTTP-Method-Override: DELETE\r\n');
    // NGINX reads only the first (empty) field, so it takes the cached allow;
    // the upstream then gets the request as GET, without any override field.
    assert.ok(r.status === 200 || r.status === 405, String(r.status));
    assert.deepEqual(overrides(), r.status === 200 ? [['GET']] : []);
  });

  it('an empty method-override field alone is stripped before the upstream (any of the three names)', async () => {
    s.api.received.length = 0;
    for (const h of ['X-Method-Override', 'X-HTTP-Method', 'X-HTTP-Method-Override']) {
      const r = await send('/api/items/2', `${h}:\r\n`, 'POST');
      assert.ok(r.status === 200 || r.status === 405, `${h}: ${r.status}`);
    }
    assert.ok(s.api.received.length > 0, 'the cached allow served some of them');
    assert.deepEqual(overrides(), s.api.received.map(() => ['POST']));
  });

  it('a non-empty method override bypasses the cached allow: the listener answers 405, nothing upstream', async () => {
    s.api.received.length = 0;
    const r = await send('/api/items/3', 'X-HTTP-Method-Override: DELETE\r\n');
    assert.deepEqual({ status: r.status, upstream: s.api.received.length }, { status: 405, upstream: 0 });
  });

  it('a # in the query is refused 400 before the cache (as the listener and the proxy do), nothing upstream', async () => {
    s.api.received.length = 0;
    const r = await send('/api/items?a=1#frag', '');
    assert.deepEqual({ status: r.status, upstream: s.api.received.map((x) => x.url) }, { status: 400, upstream: [] });
    assert.equal(r.body, '{"code":"bad_request","message":"Bad request"}');
  });
});

describe('nginx-conf review control: without a cached decision the same variants are refused', { skip }, () => {
  let s: ReviewStack;
  before(async () => {
    s = await startReviewStack();
    await s.as.activate('cold-1', { scope: 'read' });
  });
  after(() => s?.stop());

  it('cold token: empty override 405, # in query 400, nothing upstream', async () => {
    const send = (target: string, headers: string) =>
      rawRequest(s.port, `GET ${target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer cold-1\r\n${headers}Connection: close\r\n\r\n`);
    assert.equal((await send('/api/items/2', 'X-Method-Override:\r\n')).status, 405);
    assert.equal((await send('/api/items?a=1#frag', '')).status, 400);
    assert.equal(s.api.received.length, 0);
  });
});

describe('nginx-conf review: two generated files in one NGINX', { skip }, () => {
  it('two gateways, each with its own --cache-zone, cache path and listen, pass nginx -t together', { todo: 'two generated files in one NGINX need a --name prefix (not built)' }, () => {
    const a = parseConfig(reviewYaml('http://127.0.0.1:1', 'http://127.0.0.1:2', 9001), { file: 'a.yaml', env: {} });
    const b = parseConfig(reviewYaml('http://127.0.0.1:3', 'http://127.0.0.1:4', 9002), { file: 'b.yaml', env: {} });
    const prefix = nginxPrefix((cacheDir) => nginxConf(a, { listen: { host: '127.0.0.1', port: 18091 }, cachePath: `${cacheDir}-a`, cacheZone: 'zone_a' }), MODULES);
    try {
      writeFileSync(join(prefix.dir, 'second.conf'), nginxConf(b, { listen: { host: '127.0.0.1', port: 18092 }, cachePath: `${prefix.cacheDir}-b`, cacheZone: 'zone_b' }));
      const conf = readFileSync(prefix.conf, 'utf8').replace(/(include \S+phantom-gateway\.conf;)/, `$1\n  include ${join(prefix.dir, 'second.conf')};`);
      writeFileSync(prefix.conf, conf);
      const t = nginxTest(nginx.path!, prefix.dir);
      assert.equal(t.status, 0, t.output);
    } finally {
      prefix.remove();
    }
  });
});

describe('nginx-conf review: underscores_in_headers on in the operator\'s http {} lets X_User_Id through', { skip }, () => {
  let s: ReviewStack;
  before(async () => {
    s = await startReviewStack({ httpExtra: 'underscores_in_headers on;' });
    await s.as.activate('ident-1', { scope: 'read', client_id: 'alice' });
  });
  after(() => s?.stop());

  it('a client-sent X_User_Id (read as X-User-Id by CGI/WSGI/PHP upstreams) never reaches the upstream, protected or open route', async () => {
    s.api.received.length = 0;
    const send = (target: string, auth: string) =>
      rawRequest(s.port, `GET ${target} HTTP/1.1\r\nHost: localhost\r\n${auth}X_User_Id: mallory\r\nConnection: close\r\n\r\n`);
    assert.equal((await send('/api/x', 'Authorization: Bearer ident-1\r\n')).status, 200);
    assert.equal((await send('/public/x', '')).status, 200);
    const spoofed = s.api.received.map((r) => r.rawHeaders.filter((_, i) => i % 2 === 0 && r.rawHeaders[i]!.toLowerCase().replaceAll('_', '-') === 'x-user-id' && r.rawHeaders[i + 1] === 'mallory'));
    assert.deepEqual(spoofed, [[], []]);
  });
});

describe('nginx-conf review: what the decision cache writes to disk', { skip }, () => {
  let s: ReviewStack;
  let jwt: string;
  before(async () => {
    s = await startReviewStack();
    jwt = await s.as.activate('disk-1', { scope: 'read', client_id: 'alice' });
    const r = await rawRequest(s.port, 'GET /api/x HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer disk-1\r\nConnection: close\r\n\r\n');
    assert.equal(r.status, 200);
  });
  after(() => s?.stop());

  it('a cache file holds the key (route requirements + SHA-1 of "Bearer <opaque>"), the JWT and the identity headers, never the opaque token; mode 0600', () => {
    const all = filesUnder(s.nginx.cacheDir);
    assert.equal(all.length, 1);
    const text = readFileSync(all[0]!, 'latin1');
    const sha1 = createHash('sha1').update('Bearer disk-1').digest('hex');
    assert.match(text, new RegExp(`KEY: r0-[0-9a-f]{16} ${sha1}`));
    assert.ok(text.includes(jwt), 'the upstream JWT (a bearer credential) is in the file');
    assert.match(text, /x-user-id: alice/i);
    assert.ok(!text.includes('disk-1'));
    assert.equal(statSync(all[0]!).mode & 0o777, 0o600);
  });

  it('the default cache path (files hold JWTs) is on tmpfs: /run/nginx-phantom-gateway', () => {
    assert.equal(NGINX_CONF_DEFAULTS.cachePath, '/run/nginx-phantom-gateway');
    const config = parseConfig(reviewYaml('http://127.0.0.1:1', 'http://127.0.0.1:2', 9001), { file: 'a.yaml', env: {} });
    assert.match(nginxConf(config, { listen: { host: '127.0.0.1', port: 8080 } }), /^proxy_cache_path \/run\/nginx-phantom-gateway levels=/m);
  });
});

describe('nginx-conf review: cached decisions survive a config change (identity_headers remapped, regenerated, reloaded)', { skip }, () => {
  let s: ReviewStack;
  let listener2: ForwardAuthListener | undefined;
  before(async () => {
    s = await startReviewStack();
    await s.as.activate('who-1', { scope: 'read', client_id: 'alice', tenant: 'acme' });
  });
  after(async () => {
    if (listener2 === undefined) return s?.stop();
    // The first listener was closed by the test.
    await s.nginx.stop();
    await listener2.close();
    await s.as.close();
    await s.api.close();
  });

  it('after X-User-Id is remapped from client_id to tenant, the upstream gets the tenant, not the old cached client_id', async () => {
    const send = () => rawRequest(s.port, 'GET /api/x HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer who-1\r\nConnection: close\r\n\r\n');
    assert.equal((await send()).status, 200);
    assert.equal(s.api.received.at(-1)!.headers['x-user-id'], 'alice');
    // The operator changes the mapping: a new listener on the same port, the file regenerated, NGINX reloaded.
    const faPort = s.listener.server.address() as { port: number };
    const yaml = reviewYaml(s.as.url, s.api.url, faPort.port).replace('identity_headers: { client_id: X-User-Id }', 'identity_headers: { tenant: X-User-Id }');
    const config = parseConfig(yaml, { file: 'review.yaml', env: {} });
    const before = nginxConf(parseConfig(reviewYaml(s.as.url, s.api.url, faPort.port), { file: 'review.yaml', env: {} }), { listen: { host: '127.0.0.1', port: s.port }, cachePath: s.nginx.cacheDir });
    const regenerated = nginxConf(config, { listen: { host: '127.0.0.1', port: s.port }, cachePath: s.nginx.cacheDir });
    const keyOf = (conf: string) => conf.match(/proxy_cache_key "(r0-[0-9a-f]{16}) /)![1];
    assert.notEqual(keyOf(regenerated), keyOf(before), 'the cache key changes with the mapping');
    await s.listener.close();
    listener2 = new ForwardAuthListener(config, { logger: createLogger('silent') });
    await listener2.listen();
    writeFileSync(join(s.nginx.dir, 'phantom-gateway.conf'), regenerated);
    process.kill(s.nginx.process.pid!, 'SIGHUP');
    // Old workers may still answer for a moment: poll until a new one does (the old key would keep giving alice).
    const until = Date.now() + 15_000;
    let seen: unknown;
    for (;;) {
      s.api.received.length = 0;
      assert.equal((await send()).status, 200);
      seen = s.api.received.at(-1)!.headers['x-user-id'];
      if (seen === 'acme' || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(seen, 'acme');
  });
});

describe('nginx-conf review: refusals of NGINX itself and the listener\'s 431, rendered as the proxy does', { skip }, () => {
  let s: ReviewStack;
  before(async () => {
    s = await startReviewStack();
    await s.as.activate('ok-1', { scope: 'read' });
  });
  after(() => s?.stop());
  const TOO_LARGE = '{"code":"bad_request","message":"Request headers too large"}';

  it('more headers than server.max_headers (the listener answers 431) gives 431 bad_request JSON, not 500 server_error', async () => {
    let extra = '';
    for (let i = 0; i < 120; i++) extra += `X-Pad-${i}: ${i}\r\n`;
    const r = await rawRequest(s.port, `GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ok-1\r\n${extra}Connection: close\r\n\r\n`);
    // NGINX sees only the status: every 431 of the listener is "Request headers too large".
    assert.deepEqual({ status: r.status, body: r.body, type: r.headers['content-type'] }, { status: 431, body: TOO_LARGE, type: 'application/json' });
  });

  it('headers over server.max_header_bytes in total (each line small; NGINX accepts them) gives 431 JSON, not 500', async () => {
    let extra = '';
    for (let i = 0; i < 5; i++) extra += `X-Pad-${i}: ${'a'.repeat(4000)}\r\n`;
    const r = await rawRequest(s.port, `GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ok-1\r\n${extra}Connection: close\r\n\r\n`);
    assert.deepEqual({ status: r.status, body: r.body }, { status: 431, body: TOO_LARGE });
  });

  it('a request line longer than NGINX\'s buffer (414) is 431 JSON, not NGINX\'s HTML page', async () => {
    const r = await rawRequest(s.port, `GET /api/${'a'.repeat(9000)} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    assert.deepEqual({ status: r.status, body: r.body, type: r.headers['content-type'] }, { status: 431, body: TOO_LARGE, type: 'application/json' });
  });

  it('one header line longer than NGINX\'s buffer (494) is 431 JSON, not NGINX\'s HTML page', async () => {
    const r = await rawRequest(s.port, `GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(9000)}\r\nConnection: close\r\n\r\n`);
    assert.deepEqual({ status: r.status, body: r.body, type: r.headers['content-type'] }, { status: 431, body: TOO_LARGE, type: 'application/json' });
  });

  it('a request line NGINX cannot read (its own 400, no URI yet) is 400 JSON, not a 500 HTML page', async () => {
    const r = await rawRequest(s.port, 'GET no-slash HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    assert.deepEqual({ status: r.status, body: r.body, type: r.headers['content-type'] }, { status: 400, body: '{"code":"bad_request","message":"Bad request"}', type: 'application/json' });
  });

  it('the internal error pages are no way around the target checks: a raw target resolving into them is 400, a direct request 404, nothing upstream', async () => {
    s.api.received.length = 0;
    const get = (target: string) => rawRequest(s.port, `GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    const escaped = await get('/public/..%2f_phantom-gateway/error/x');
    assert.deepEqual({ status: escaped.status, body: escaped.body }, { status: 400, body: '{"code":"bad_request","message":"Bad request"}' });
    // An internal location is 404 before anything runs in it.
    for (const target of ['/_phantom-gateway/error/400', '/public/..%2f_phantom-gateway/error/400']) {
      const direct = await get(target);
      assert.deepEqual({ status: direct.status, body: direct.body }, { status: 404, body: '{"code":"not_found","message":"No route for this path"}' }, target);
    }
    assert.equal(s.api.received.length, 0);
  });

  it('an unknown transfer coding (NGINX 501) is 501 JSON "Unsupported transfer coding"', async () => {
    const r = await rawRequest(s.port, 'POST /public/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n');
    assert.deepEqual({ status: r.status, body: r.body }, { status: 501, body: '{"code":"bad_request","message":"Unsupported transfer coding"}' });
  });

  it('an HTTP version NGINX does not speak (505) is 400 JSON "Bad request", as the proxy answers', async () => {
    const r = await rawRequest(s.port, 'GET /public/x HTTP/2.0\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    assert.deepEqual({ status: r.status, body: r.body }, { status: 400, body: '{"code":"bad_request","message":"Bad request"}' });
  });
});
