/*
 * Caddy's forward_auth in front of an API, asking our forward-auth listener:
 * examples/caddy/Caddyfile and examples/caddy/gateway.yaml as shipped, with
 * only their ports and the introspection endpoint replaced, against a real
 * Caddy (Debian's `caddy`), the echo upstream and the scripted
 * introspection endpoint.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { createLogger } from '../../src/observability/logger.js';
import { freePort, startCaddy, type RunningCaddy } from '../helpers/caddy.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoRequest, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { findProgram } from '../helpers/services.js';

const caddy = findProgram('caddy', 'caddy');
const EXAMPLES = new URL('../../examples/caddy/', import.meta.url);

/** `text` with `from` replaced by `to`, which must occur: the example's shape is what is tested. */
function replaceIn(text: string, from: string, to: string): string {
  assert.ok(text.includes(from), `the example no longer contains ${JSON.stringify(from)}`);
  return text.replaceAll(from, to);
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

describe('Caddy forward_auth in front of the forward-auth listener (examples/caddy)', { skip: caddy.skip }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let listener: ForwardAuthListener;
  let running: RunningCaddy;
  let site: string;
  let deadSite: string;
  const logLines: string[] = [];

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const yaml = replaceIn(readFileSync(new URL('gateway.yaml', EXAMPLES), 'utf8'), 'https://login.example.com/oauth/v2/oauth-introspect', `${as.url}/introspect`);
    const config = parseConfig(yaml, { file: 'examples/caddy/gateway.yaml', env: { INTROSPECTION_CLIENT_SECRET: 's3cret' } });
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(chunk.toString());
        cb();
      },
    });
    listener = new ForwardAuthListener(config, { logger: createLogger('info', sink) });
    const decisions = await listener.listen(0, '127.0.0.1');

    const [port, deadPort, unused] = [await freePort(), await freePort(), await freePort()];
    let caddyfile = readFileSync(new URL('Caddyfile', EXAMPLES), 'utf8');
    caddyfile = replaceIn(caddyfile, 'admin localhost:2019', 'admin off');
    caddyfile = replaceIn(caddyfile, 'http://:8080', `http://127.0.0.1:${port}`);
    caddyfile = replaceIn(caddyfile, '127.0.0.1:8081', `127.0.0.1:${decisions.port}`);
    caddyfile = replaceIn(caddyfile, '127.0.0.1:3000', `127.0.0.1:${api.port}`);
    // A second site whose listener is down (nothing listens on `unused`).
    caddyfile += `
http://127.0.0.1:${deadPort} {
	forward_auth 127.0.0.1:${unused} {
		uri /
		copy_headers Authorization
	}
	reverse_proxy 127.0.0.1:${api.port}
}
`;
    running = await startCaddy(caddy.path!, caddyfile);
    site = `http://127.0.0.1:${port}`;
    deadSite = `http://127.0.0.1:${deadPort}`;
  });

  after(async () => {
    await running?.close();
    await listener?.close();
    await as?.close();
    await api?.close();
  });

  beforeEach(() => {
    as.calls.length = 0;
    api.received.length = 0;
  });

  async function send(path: string, headers: Record<string, string> = {}, opts: { method?: string; body?: string; base?: string } = {}): Promise<Answer> {
    const res = await request(`${opts.base ?? site}${path}`, { method: (opts.method ?? 'GET') as 'GET', headers, ...(opts.body !== undefined ? { body: opts.body } : {}) });
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  }

  /** Every header value the upstream got, for "never contains" checks. */
  const everything = (r: EchoRequest) => r.rawHeaders.join('\n');

  test('an allowed request reaches the upstream with the JWT in place of the opaque token, and the identity headers from its claims', async () => {
    const jwt = await as.activate('caddy-read-1', { scope: 'read' });
    const res = await send('/api/items?page=2', { authorization: 'Bearer caddy-read-1', 'x-subject': 'mallory', 'x-scope': 'admin' });
    assert.equal(res.status, 200);
    assert.equal(api.received.length, 1);
    const seen = api.received[0]!;
    assert.equal(seen.url, '/api/items?page=2');
    assert.equal(seen.headers.authorization, `Bearer ${jwt}`);
    assert.doesNotMatch(everything(seen), /caddy-read-1/);
    assert.equal(seen.headers['x-subject'], 'user-1');
    assert.equal(seen.headers['x-client-id'], 'test-client');
    assert.equal(seen.headers['x-scope'], 'read');
    // the listener's own answer headers stay between Caddy and the listener
    assert.equal(seen.headers['x-accel-expires'], undefined);
    assert.equal(as.callsFor('caddy-read-1'), 1);
  });

  test('the same token again is answered from the listener\'s cache: one introspection for two requests', async () => {
    await as.activate('caddy-read-2', { scope: 'read' });
    assert.equal((await send('/api/a', { authorization: 'Bearer caddy-read-2' })).status, 200);
    assert.equal((await send('/api/b', { authorization: 'Bearer caddy-read-2' })).status, 200);
    assert.equal(api.received.length, 2);
    assert.equal(as.callsFor('caddy-read-2'), 1);
  });

  test('a POST body reaches the upstream (Caddy asks with GET and no body; the listener decides on the original method)', async () => {
    await as.activate('caddy-read-3', { scope: 'read' });
    const body = 'x'.repeat(10_000);
    const res = await send('/api/upload', { authorization: 'Bearer caddy-read-3', 'content-type': 'text/plain' }, { method: 'POST', body });
    assert.equal(res.status, 200);
    assert.equal(api.received[0]!.method, 'POST');
    assert.equal(api.received[0]!.bodyBytes, body.length);
  });

  test('no token: 401 with the listener\'s JSON body and WWW-Authenticate: Bearer; the upstream is not reached', async () => {
    const res = await send('/api/items');
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer');
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.deepEqual(JSON.parse(res.body), { code: 'unauthorized', message: 'Access token required' });
    assert.equal(api.received.length, 0);
  });

  test('an inactive token: 401 invalid_token; the upstream is not reached', async () => {
    const res = await send('/api/items', { authorization: 'Bearer caddy-unknown' });
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"');
    assert.deepEqual(JSON.parse(res.body), { code: 'unauthorized', message: 'Invalid or expired access token' });
    assert.equal(as.callsFor('caddy-unknown'), 1);
    assert.equal(api.received.length, 0);
  });

  test('a token without the route\'s scope: 403 insufficient_scope', async () => {
    await as.activate('caddy-write', { scope: 'write' });
    const res = await send('/api/items', { authorization: 'Bearer caddy-write' });
    assert.equal(res.status, 403);
    assert.equal(res.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="read"');
    assert.deepEqual(JSON.parse(res.body), { code: 'forbidden', message: 'The access token does not have the required scope' });
    assert.equal(api.received.length, 0);
  });

  test('the same token allowed on /api is refused on /admin, whatever X-Forwarded-Uri the client sends', async () => {
    await as.activate('caddy-read-4', { scope: 'read' });
    assert.equal((await send('/api/x', { authorization: 'Bearer caddy-read-4' })).status, 200);
    const admin = await send('/admin/users', { authorization: 'Bearer caddy-read-4' });
    assert.equal(admin.status, 403);
    assert.equal(admin.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="admin"');
    // Caddy sets X-Forwarded-Method/-Uri itself: a client's copies describe nothing.
    const spoofed = await send('/admin/users', { authorization: 'Bearer caddy-read-4', 'x-forwarded-uri': '/api/x', 'x-forwarded-method': 'GET' });
    assert.equal(spoofed.status, 403);
    assert.equal(api.received.length, 1);
    assert.equal(api.received[0]!.url, '/api/x');
    assert.equal(as.callsFor('caddy-read-4'), 1);
  });

  test('a client\'s X-Original-URI beside the X-Forwarded-* Caddy sets is refused with 400, never used', async () => {
    const res = await send('/admin/users', { 'x-original-uri': '/public', 'x-original-method': 'GET' });
    assert.equal(res.status, 400);
    assert.deepEqual(JSON.parse(res.body), { code: 'bad_request', message: 'Bad request' });
    assert.equal(api.received.length, 0);
  });

  test('a claim the token lacks gives no identity header: neither the client\'s copy nor Caddy\'s placeholder text reaches the upstream', async () => {
    const jwt = await as.activate('caddy-read-5', { scope: 'read', client_id: undefined });
    const res = await send('/api/x', { authorization: 'Bearer caddy-read-5', 'x-client-id': 'mallory' });
    assert.equal(res.status, 200);
    const seen = api.received[0]!;
    assert.equal(seen.headers.authorization, `Bearer ${jwt}`);
    assert.equal(seen.headers['x-client-id'], undefined);
    assert.equal(seen.headers['x-subject'], 'user-1');
    assert.doesNotMatch(everything(seen), /reverse_proxy|mallory/);
  });

  test('an open route passes without a token; client copies of identity headers are removed', async () => {
    const res = await send('/public/info', { 'x-subject': 'mallory' });
    assert.equal(res.status, 200);
    const seen = api.received[0]!;
    assert.equal(seen.url, '/public/info');
    assert.equal(seen.headers.authorization, undefined);
    assert.equal(seen.headers['x-subject'], undefined);
    assert.doesNotMatch(everything(seen), /reverse_proxy|mallory/);
    assert.equal(as.calls.length, 0);
  });

  test('a CORS preflight passes to the upstream without a token', async () => {
    const res = await send('/api/items', { origin: 'https://app.example', 'access-control-request-method': 'DELETE' }, { method: 'OPTIONS' });
    assert.equal(res.status, 200);
    assert.equal(api.received.length, 1);
    assert.equal(api.received[0]!.method, 'OPTIONS');
    assert.equal(api.received[0]!.headers.authorization, undefined);
    assert.equal(as.calls.length, 0);
  });

  test('a path outside every route: 404 from the listener, not forwarded', async () => {
    const res = await send('/elsewhere', { authorization: 'Bearer caddy-anything' });
    assert.equal(res.status, 404);
    assert.deepEqual(JSON.parse(res.body), { code: 'not_found', message: 'No route for this path' });
    assert.equal(api.received.length, 0);
    assert.equal(as.calls.length, 0);
  });

  test('scripted authorization server answering 503 with Retry-After: the client gets the listener\'s 503, Retry-After and JSON body through Caddy', async () => {
    as.answers.set('caddy-busy', { status: 503, headers: { 'retry-after': '7' }, body: 'maintenance' });
    const res = await send('/api/items', { authorization: 'Bearer caddy-busy' });
    assert.equal(res.status, 503);
    assert.equal(res.headers['retry-after'], '7');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.deepEqual(JSON.parse(res.body), { code: 'server_error', message: 'Token validation is temporarily unavailable' });
    assert.doesNotMatch(res.body, /maintenance/);
    assert.equal(api.received.length, 0);
  });

  test('scripted authorization server answering 500: 502 through Caddy, the upstream is not reached', async () => {
    as.answers.set('caddy-broken', { status: 500, body: 'stack trace here' });
    const res = await send('/api/items', { authorization: 'Bearer caddy-broken' });
    assert.equal(res.status, 502);
    assert.deepEqual(JSON.parse(res.body), { code: 'server_error', message: 'Token validation is unavailable' });
    assert.equal(api.received.length, 0);
  });

  test('the listener unreachable: Caddy answers 502 with an empty body and the upstream is not reached (fail closed)', async () => {
    const res = await send('/api/items', { authorization: 'Bearer caddy-anything' }, { base: deadSite });
    assert.equal(res.status, 502);
    assert.equal(res.body, '');
    assert.equal(api.received.length, 0);
  });

  test('the listener logs no token and no JWT', () => {
    const logs = logLines.join('');
    assert.match(logs, /"msg":"decision"/, 'the listener logged its decisions');
    assert.doesNotMatch(logs, /caddy-read-|caddy-write|caddy-busy|eyJ/);
  });
});
