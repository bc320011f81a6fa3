/*
 * Hostile requests against the reverse proxy: request targets that an
 * upstream could normalise into another route, duplicated or too many
 * headers, Expect: 100-continue before authorization, slow-header clients.
 * Targets are sent raw over a socket because an HTTP client would normalise
 * or refuse them.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startEchoUpstream, startScriptedIntrospection, type EchoRequest, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { basicConfig, startGateway, type TestGateway, startStack, type Stack } from '../helpers/gateway.js';
import { rawRequest, type RawResponse } from '../helpers/raw.js';
import { hasFinalResponse, openConversation } from '../helpers/conversation.js';

const MAX_HEADERS = 20;
let serial = 0;

describe('hostile requests', { timeout: 10_000 }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;

  let stack: Stack;
  before(async () => {
    ({ as, api, gw } = stack = await startStack((as, api) => basicConfig(as.url, api.url, `server:\n  max_headers: ${MAX_HEADERS}\n`)));
  });
  after(() => stack.close());
  // A fresh active token per test: the gateway caches tokens, and "no
  // introspection happened" only means something for a token it has not seen.
  let token: string;
  beforeEach(async () => {
    token = `hostile-opaque-${++serial}`;
    await as.activate(token);
    as.calls.length = 0;
    api.received.length = 0;
  });

  /** A GET with a valid, uncached token, so that only the target decides the outcome. */
  const get = (target: string, extra = '') =>
    rawRequest(gw.port, `GET ${target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer ${token}\r\n${extra}\r\n`);

  function assertBadRequest(res: RawResponse, status = 400): void {
    assert.equal(res.status, status, res.raw.slice(0, 200));
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal((JSON.parse(res.body) as { code: string }).code, 'bad_request');
    assert.equal(api.received.length, 0, 'nothing may reach the upstream');
    assert.equal(as.calls.length, 0, 'no introspection may happen');
  }

  describe('request targets', () => {
    test('control: a clean target with a valid token is forwarded (so the refusals below are about the target)', async () => {
      const res = await get('/api/orders');
      assert.equal(res.status, 200);
      assert.equal(api.received.length, 1);
      assert.equal(api.received[0]!.url, '/api/orders');
      assert.equal(as.callsFor(token), 1);
    });

    const hostile: Array<[string, string]> = [
      ['absolute-form', 'http://x/api'],
      ['absolute-form naming the gateway itself', 'http://gw.test/public'],
      ['asterisk-form', '*'],
      ['a leading //', '//api'],
      ['an empty segment', '/public//x'],
      ['a .. segment', '/public/../api'],
      ['a trailing .. segment', '/public/..'],
      ['a . segment', '/public/./x'],
      ['a trailing . segment', '/public/.'],
      ['%2e%2e', '/public/%2e%2e/api'],
      ['%2E%2E', '/public/%2E%2E/api'],
      ['a single %2e segment', '/public/%2e/x'],
      ['mixed .%2e', '/public/.%2e/api'],
      ['%2f', '/public%2fapi'],
      ['%2F', '/public%2Fapi'],
      ['%5c', '/public%5capi'],
      ['%5C', '/public%5Capi'],
      ['backslashes', '/public\\..\\api'],
      ['a lone backslash', '/public\\api'],
      ['%00', '/public/%00'],
      ['# in the path', '/public#/../api'],
      ['# in the query', '/public?a=1#frag'],
      ['a bad percent escape %zz', '/public/%zz'],
      ['a truncated percent escape', '/public/%2'],
      ['a ..; segment (Tomcat/Spring path parameter)', '/public/..;/api'],
      ['a .; segment', '/public/.;x/api'],
      ['double-encoded %252e%252e', '/public/%252e%252e/api'],
      ['double-encoded %252f', '/public%252fapi'],
      ['an encoded unreserved letter (/%61pi is /api to Go, Flask, Django)', '/%61pi/orders'],
      ['an encoded unreserved letter, upper-case hex', '/ap%49/orders'],
      ['an encoded digit', '/public/v%31'],
      ['an encoded ~ - _', '/public/%7E%2D%5F'],
      ['an encoded %', '/public/%25'],
      ['a ; path parameter (/api;x/ is /api/ to Tomcat, Spring)', '/api;x/orders'],
      ['a path that routes differently when case is ignored (/API is /api to IIS)', '/API/orders'],
      ['mixed case of a protected prefix', '/Api'],
    ];
    for (const [what, target] of hostile) {
      test(`400 for a target with ${what}: ${JSON.stringify(target)}`, async () => {
        assertBadRequest(await get(target));
      });
    }

    test('400 for a raw NUL byte in the target (refused by Node\'s parser, before the gateway)', async () => {
      const res = await get('/public/\0/api');
      assert.equal(res.status, 400);
      assert.equal(api.received.length, 0);
      assert.equal(as.calls.length, 0);
    });

    test('/public/%2e%2e/api without a token does not reach /api (the bypass this rule exists for)', async () => {
      const res = await rawRequest(gw.port, 'GET /public/%2e%2e/api HTTP/1.1\r\nHost: gw.test\r\n\r\n');
      assertBadRequest(res);
    });

    test('a query containing %2f, %2e and %5c is fine and reaches the upstream unchanged', async () => {
      const res = await get('/public/x?next=%2fapi%2f..%2e%5c&a=1');
      assert.equal(res.status, 200);
      assert.equal(api.received.length, 1);
      assert.equal(api.received[0]!.url, '/public/x?next=%2fapi%2f..%2e%5c&a=1');
    });

    test('a dot inside a segment is not a dot segment', async () => {
      const res = await get('/public/v1.2/..x/.well-known');
      assert.equal(res.status, 200);
      assert.equal(api.received[0]!.url, '/public/v1.2/..x/.well-known');
    });

    test('HEAD with a hostile target: 400 with no body', async () => {
      const res = await rawRequest(gw.port, 'HEAD /public/%2e%2e/api HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
      assert.equal(res.status, 400);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.ok(Number(res.headers['content-length']) > 0, 'Content-Length announces the GET body size');
      assert.equal(res.body, '', 'HEAD must not carry a body');
      assert.equal(api.received.length, 0);
    });
  });

  describe('duplicated headers', () => {
    test('two Host headers: 400, nothing forwarded, no introspection', async () => {
      assertBadRequest(await get('/api/x', 'Host: evil.test\r\n'));
    });

    test('two Host headers on an open route: 400', async () => {
      const res = await rawRequest(gw.port, 'GET /public HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n');
      assertBadRequest(res);
    });

    test('two Authorization headers, both the same active token: 401 invalid_request without calling the authorization server', async () => {
      const res = await get('/api/x', `Authorization: Bearer ${token}\r\n`);
      assert.equal(res.status, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_request"');
      assert.equal((JSON.parse(res.body) as { code: string }).code, 'unauthorized');
      assert.equal(as.calls.length, 0);
      assert.equal(api.received.length, 0);
    });

    test('two Authorization headers, a garbage one first: 401 without calling the authorization server', async () => {
      const res = await rawRequest(gw.port, `GET /api/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Basic Zm9vOmJhcg==\r\nAuthorization: Bearer ${token}\r\n\r\n`);
      assert.equal(res.status, 401);
      assert.equal(as.calls.length, 0);
      assert.equal(api.received.length, 0);
    });

    test('two Authorization headers on an open route: 400, not forwarded', async () => {
      const res = await rawRequest(gw.port, 'GET /public HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n');
      assertBadRequest(res);
    });
  });

  describe("requests Node's HTTP parser refuses get the gateway's JSON refusal", () => {
    test('Content-Length together with Transfer-Encoding (request smuggling shape): 400 JSON, connection closed', async () => {
      const res = await rawRequest(
        gw.port,
        `POST /api HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer ${token}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      );
      assertBadRequest(res);
      assert.equal(res.headers.connection, 'close');
    });

    test('a request head larger than server.max_header_bytes: 431 JSON', async () => {
      const res = await get('/api', `X-Big: ${'a'.repeat(20_000)}\r\n`);
      assertBadRequest(res, 431);
      assert.equal((JSON.parse(res.body) as { message: string }).message, 'Request headers too large');
    });
  });

  describe('header count bound (server.max_headers)', () => {
    /** `n` header lines in total, Host and Authorization included. */
    const withHeaders = (n: number) => {
      let extra = '';
      for (let i = 0; i < n - 2; i++) extra += `X-Filler-${i}: ${i}\r\n`;
      return get('/api/x', extra);
    };

    test(`exactly ${MAX_HEADERS} headers: forwarded, all of them`, async () => {
      const res = await withHeaders(MAX_HEADERS);
      assert.equal(res.status, 200);
      assert.equal(api.received.length, 1);
      assert.equal(api.received[0]!.headers[`x-filler-${MAX_HEADERS - 3}`], String(MAX_HEADERS - 3));
    });

    test(`${MAX_HEADERS + 1} headers: 431, nothing forwarded, no introspection`, async () => {
      assertBadRequest(await withHeaders(MAX_HEADERS + 1), 431);
    });

    test('200 headers: 431 (not silently truncated and forwarded)', async () => {
      assertBadRequest(await withHeaders(200), 431);
    });
  });

  describe('Expect: 100-continue', () => {
    const body = 'hello, upstream';
    const head = (auth: string, path = '/api/upload') =>
      `POST ${path} HTTP/1.1\r\nHost: gw.test\r\n${auth}Content-Type: text/plain\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`;

    test('valid token (scripted introspection answering after 200 ms): 100 Continue only after the token is accepted, then the upstream\'s answer once the body is sent', async () => {
      await as.activate(token, {}, { delayMs: 200 });
      const c = await openConversation(gw.port);
      try {
        const sent = Date.now();
        c.send(head(`Authorization: Bearer ${token}\r\n`));
        const first = await c.waitFor((t) => t.includes('\r\n\r\n'));
        assert.match(first, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
        assert.ok(Date.now() - sent >= 180, `100 Continue came ${Date.now() - sent} ms after the headers, before introspection answered`);
        assert.equal(as.callsFor(token), 1);
        c.send(body);
        const all = await c.waitFor(hasFinalResponse);
        assert.match(all.slice(first.length), /^HTTP\/1\.1 200 OK\r\n/);
      } finally {
        c.close();
      }
      assert.equal(api.received.length, 1);
      const seen: EchoRequest = api.received[0]!;
      assert.equal(seen.bodySha256, createHash('sha256').update(body).digest('hex'));
      assert.equal(seen.headers.expect, undefined, 'Expect is not forwarded');
    });

    test('inactive token (scripted introspection answers 204): the client gets 401 and never 100 Continue', async () => {
      const c = await openConversation(gw.port);
      let all: string;
      try {
        c.send(head('Authorization: Bearer not-active-token\r\n'));
        all = await c.waitFor(hasFinalResponse);
        // Give a wrongly sent late 100 a chance to show up.
        await new Promise((r) => setTimeout(r, 50));
        all = c.received();
      } finally {
        c.close();
      }
      assert.match(all, /^HTTP\/1\.1 401 Unauthorized\r\n/);
      assert.doesNotMatch(all, /100 Continue/);
      assert.equal(as.callsFor('not-active-token'), 1);
      assert.equal(api.received.length, 0);
    });

    test('no token: 401, never 100 Continue, no introspection', async () => {
      const c = await openConversation(gw.port);
      let all: string;
      try {
        c.send(head(''));
        all = await c.waitFor(hasFinalResponse);
        await new Promise((r) => setTimeout(r, 50));
        all = c.received();
      } finally {
        c.close();
      }
      assert.match(all, /^HTTP\/1\.1 401 Unauthorized\r\n/);
      assert.doesNotMatch(all, /100 Continue/);
      assert.equal(as.calls.length, 0);
      assert.equal(api.received.length, 0);
    });

    test('open route: 100 Continue without a token', async () => {
      const c = await openConversation(gw.port);
      try {
        c.send(head('', '/public/upload'));
        const first = await c.waitFor((t) => t.includes('\r\n\r\n'));
        assert.match(first, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
        c.send(body);
        const all = await c.waitFor(hasFinalResponse);
        assert.match(all.slice(first.length), /^HTTP\/1\.1 200 OK\r\n/);
      } finally {
        c.close();
      }
      assert.equal(api.received[0]!.bodyBytes, body.length);
    });
  });
});

describe('slow-header clients', { timeout: 10_000 }, () => {
  let api: EchoUpstream;
  let gw: TestGateway;

  let stack: Stack;
  before(async () => {
    ({ api, gw } = stack = await startStack((as, api) => basicConfig(as.url, api.url, 'server:\n  headers_timeout_ms: 300\n')));
  });
  after(() => stack.close());

  for (const [what, partial] of [
    ['an unfinished header block', 'GET /public HTTP/1.1\r\nHost: gw.test\r\nX-Slow: 1\r\n'],
    ['an unfinished request line', 'GET /pub'],
  ] as const) {
    test(`${what} is answered 408 or closed within a couple of seconds (headers_timeout_ms: 300)`, async () => {
      const c = await openConversation(gw.port);
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        c.send(partial);
        await Promise.race([c.closed, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('connection still open after 2.5 s')), 2500)))]);
      } finally {
        clearTimeout(timer);
        c.close();
      }
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 250, `cut after ${elapsed} ms, before the timeout`);
      assert.ok(elapsed < 2000, `cut only after ${elapsed} ms`);
      const text = c.received();
      if (text !== '') assert.match(text, /^HTTP\/1\.1 408 /);
      assert.equal(api.received.length, 0);
    });
  }

  test('a client that sends its headers within the timeout is served', async () => {
    const res = await rawRequest(gw.port, 'GET /public/ok HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    assert.equal(res.status, 200);
  });
});

describe('a public catch-all route beside a protected one (the layout where spelling bypasses bite)', { timeout: 10_000 }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    gw = await startGateway(`
phantom_token: { introspection_endpoint: "${as.url}/introspect", client_id: c, client_secret: s }
routes:
  - { path: /api, upstream: "${api.url}" }
  - { path: /, upstream: "${api.url}", phantom_token: false }
`);
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
  });

  for (const target of ['/%61pi/secret', '/ap%69/secret', '/api;x/secret', '/API/secret', '/%2561pi/secret']) {
    test(`${target} without a token is refused, never served by the public route`, async () => {
      const res = await rawRequest(gw.port, `GET ${target} HTTP/1.1\r\nHost: gw.test\r\n\r\n`);
      assert.equal(res.status, 400, res.raw.slice(0, 120));
      assert.equal(api.received.length, 0);
    });
  }

  test('upper case elsewhere is fine: /About routes to the public catch-all', async () => {
    const res = await rawRequest(gw.port, 'GET /About HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(api.received.at(-1)!.url, '/About');
  });
});
