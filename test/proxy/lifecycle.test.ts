/*
 * What a review of the upstream-to-client direction found: methods that must
 * never be forwarded, bodiless answers that carry a Content-Length, a
 * malformed request pipelined behind one being served, and clients that stop
 * reading while they hold the upstream's connections.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { listen, startEchoUpstream, type Started } from '../helpers/servers.js';
import { basicConfig, startGateway, suiteStack, type TestGateway } from '../helpers/gateway.js';
import { openConversation } from '../helpers/conversation.js';
import { rawRequest } from '../helpers/raw.js';

const METHOD_NOT_ALLOWED = '{"code":"bad_request","message":"Method not allowed"}';

describe('methods that are never forwarded', { timeout: 10_000 }, () => {
  const s = suiteStack((as, api) => basicConfig(as.url, api.url));

  for (const path of ['/api/x', '/public/x']) {
    test(`TRACE ${path} with a valid token: 405, not forwarded (an upstream echoing TRACE would hand the JWT to the client)`, async () => {
      await s.as.activate('lifecycle-trace-token', { scope: 'read' });
      const res = await rawRequest(s.gw.port, `TRACE ${path} HTTP/1.1\r\nHost: s.gw.test\r\nAuthorization: Bearer lifecycle-trace-token\r\n\r\n`);
      assert.equal(res.status, 405);
      assert.equal(res.body, METHOD_NOT_ALLOWED);
      assert.equal(s.api.received.length, 0);
    });
  }

  test('CONNECT: 405 in the JSON shape and the connection closed, no tunnel', async () => {
    const c = await openConversation(s.gw.port);
    try {
      c.send(`CONNECT ${new URL(s.api.url).host} HTTP/1.1\r\nHost: ${new URL(s.api.url).host}\r\n\r\n`);
      await c.closed;
      const text = c.received();
      assert.match(text, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
      assert.ok(text.endsWith(`\r\n\r\n${METHOD_NOT_ALLOWED}`), text);
    } finally {
      c.close();
    }
    assert.equal(s.api.received.length, 0);
  });
});

describe('scripted upstream: 304 and 204 answers that carry a Content-Length', { timeout: 10_000 }, () => {
  let up: Started;
  let gw: TestGateway;
  before(async () => {
    // RFC 9110 §8.6 allows Content-Length on a 304 (the size a 200 would
    // have); IIS, Kestrel and gunicorn send it. A 204 with one is wrong, but
    // must not cost the client its connection either.
    up = await listen(
      createServer((req, res) => {
        if (req.url === '/public/304') res.writeHead(304, { etag: '"v1"', 'content-length': '1234' });
        else if (req.url === '/public/204') res.writeHead(204, { 'content-length': '5' });
        else res.writeHead(200, { 'content-length': '2' });
        // Bypass Node's own rule for bodiless statuses: the header is sent as written.
        res.end(req.url === '/public/ok' ? 'ok' : undefined);
      }),
    );
    gw = await startGateway(basicConfig('http://127.0.0.1:9', up.url));
  });
  after(async () => {
    await gw.close();
    await up.close();
  });

  for (const status of [304, 204]) {
    test(`scripted ${status} with Content-Length: the client gets the ${status}, and its connection serves the next request`, async () => {
      const c = await openConversation(gw.port);
      try {
        c.send(`GET /public/${status} HTTP/1.1\r\nHost: gw.test\r\n\r\n`);
        const first = await c.waitFor((t) => t.includes('\r\n\r\n'));
        assert.match(first, new RegExp(`^HTTP/1\\.1 ${status} `));
        c.send('GET /public/ok HTTP/1.1\r\nHost: gw.test\r\n\r\n');
        const both = await c.waitFor((t) => t.endsWith('\r\n\r\nok'));
        assert.match(both.slice(first.length), /^HTTP\/1\.1 200 OK\r\n/);
      } finally {
        c.close();
      }
    });
  }
});

describe('a malformed request pipelined behind one being served', { timeout: 10_000 }, () => {
  const s = suiteStack((as, api) => basicConfig(as.url, api.url));

  test('the connection is cut: the 400 meant for the second request is never read as the answer to the first', async () => {
    const c = await openConversation(s.gw.port);
    try {
      // The first request waits 300 ms at the upstream; the second is a request-smuggling shape Node's parser refuses.
      c.send(
        'POST /public/slow?ms=300 HTTP/1.1\r\nHost: s.gw.test\r\nContent-Length: 2\r\n\r\nhi' +
          'GET /public/y HTTP/1.1\r\nHost: s.gw.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      );
      await c.closed;
      assert.doesNotMatch(c.received(), /400 Bad Request/);
    } finally {
      c.close();
    }
    assert.ok(!s.api.received.some((r) => r.url === '/public/y'), 'the malformed request was forwarded');
  });
});

describe('requests pipelined behind a closing answer (RFC 9112 §9.6)', { timeout: 15_000 }, () => {
  // A second request in the same packet as one refused with
  // `Connection: close` must not run upstream: its answer would be thrown
  // away, and the client could not know a POST was executed.
  const s = suiteStack((as, api) => basicConfig(as.url, api.url));
  const TRANSFER = 'POST /api/transfer HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer lifecycle-pipelined-token\r\nContent-Length: 2\r\n\r\n{}';
  const firsts: Array<[string, string, number]> = [
    ['401 (no token, with a body)', 'POST /api/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n\r\nabc', 401],
    ['400 (bad target)', 'GET /api/%2e%2e/x HTTP/1.1\r\nHost: gw.test\r\n\r\n', 400],
    ['405 (method override)', 'GET /api/a HTTP/1.1\r\nHost: gw.test\r\nX-HTTP-Method-Override: DELETE\r\n\r\n', 405],
    ['417 (unknown Expect)', 'POST /public/a HTTP/1.1\r\nHost: gw.test\r\nExpect: foo\r\nContent-Length: 2\r\n\r\nhi', 417],
  ];
  for (const [name, first, status] of firsts) {
    test(`request after a closing refusal: a valid POST pipelined behind a ${name} is neither forwarded nor answered, and the connection closes`, async () => {
      // Cached, as any active client's token is: the pipelined request would be decided at once.
      await s.as.activate('lifecycle-pipelined-token', { scope: 'read' });
      await rawRequest(s.gw.port, 'GET /api/warm HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer lifecycle-pipelined-token\r\n\r\n');
      s.api.received.length = 0;
      const c = await openConversation(s.gw.port);
      try {
        c.send(first + TRANSFER);
        await c.closed;
        const statuses = c.received().match(/HTTP\/1\.1 \d{3}/g) ?? [];
        assert.deepEqual(statuses, [`HTTP/1.1 ${status}`]);
        assert.match(c.received(), /connection: close/i);
      } finally {
        c.close();
      }
      // Give a wrongly forwarded request time to arrive.
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(s.api.received.map((r) => r.url), []);
    });
  }
});

describe('requests pipelined behind an answer decided later', { timeout: 15_000 }, () => {
  const s = suiteStack((as, api) => basicConfig(as.url, api.url));

  test('request after a closing refusal decided by introspection: a valid POST pipelined behind a POST whose unknown token is refused (401 after a cache miss) never runs upstream', async () => {
    await s.as.activate('lifecycle-behind-miss', { scope: 'read' });
    await rawRequest(s.gw.port, 'GET /api/warm HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer lifecycle-behind-miss\r\n\r\n');
    s.api.received.length = 0;
    // Not known to the authorization server: inactive, after a round trip.
    const c = await openConversation(s.gw.port);
    try {
      c.send(
        'POST /api/a HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer lifecycle-unknown-token\r\nContent-Length: 3\r\n\r\nabc' +
          'POST /api/transfer HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer lifecycle-behind-miss\r\nContent-Length: 2\r\n\r\n{}',
      );
      await c.closed;
      assert.deepEqual(c.received().match(/HTTP\/1\.1 \d{3}/g), ['HTTP/1.1 401']);
    } finally {
      c.close();
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(s.api.received.map((r) => r.url), []);
  });

  test('pipelined requests behind answers that keep the connection are all served, in order', async () => {
    await s.as.activate('lifecycle-pipelined-ok', { scope: 'read' });
    const c = await openConversation(s.gw.port);
    try {
      const auth = 'Authorization: Bearer lifecycle-pipelined-ok\r\n';
      c.send(`GET /api/1 HTTP/1.1\r\nHost: gw.test\r\n${auth}\r\nGET /public/slow?ms=100 HTTP/1.1\r\nHost: gw.test\r\n\r\nPOST /api/3 HTTP/1.1\r\nHost: gw.test\r\n${auth}Content-Length: 2\r\n\r\n{}`);
      const text = await c.waitFor((t) => (t.match(/HTTP\/1\.1 200/g) ?? []).length === 3);
      const urls = [...text.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
      assert.deepEqual(urls, ['/api/1', '/public/slow?ms=100', '/api/3']);
    } finally {
      c.close();
    }
  });
});

describe('requests pipelined behind an answer during a graceful stop', { timeout: 15_000 }, () => {
  test('request after a closing answer (graceful stop): a POST pipelined behind a request being served when close() begins never runs upstream', async () => {
    const api = await startEchoUpstream();
    const gw = await startGateway(basicConfig('http://127.0.0.1:9', api.url));
    try {
      const c = await openConversation(gw.port);
      try {
        c.send(
          'GET /public/slow?ms=300 HTTP/1.1\r\nHost: gw.test\r\n\r\n' +
            'POST /public/transfer HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\n\r\n{}',
        );
        await new Promise((r) => setTimeout(r, 100));
        const closing = gw.close();
        await c.closed;
        await closing;
        assert.deepEqual(c.received().match(/HTTP\/1\.1 \d{3}/g), ['HTTP/1.1 200']);
        assert.match(c.received(), /connection: close/i);
      } finally {
        c.close();
      }
      assert.deepEqual(api.received.map((r) => r.url), ['/public/slow?ms=300']);
    } finally {
      await api.close();
    }
  });
});

describe('clients that stop reading', { timeout: 15_000 }, () => {
  const SEND_TIMEOUT = 1000;
  const RESPONSE_TIMEOUT = 300;
  const s = suiteStack((as, api) =>
    basicConfig(as.url, api.url, `server:\n  send_timeout_ms: ${SEND_TIMEOUT}\nupstream:\n  connections: 1\n  response_timeout_ms: ${RESPONSE_TIMEOUT}\n`),
  );

  /** A client that asks for 64 MiB and reads nothing of the answer. */
  async function stalledReader(): Promise<Socket> {
    const sock = connect(s.gw.port, '127.0.0.1');
    sock.on('error', () => {});
    await new Promise((r) => sock.once('connect', r));
    sock.pause();
    sock.write(`GET /public/big?bytes=${64 * 1024 * 1024} HTTP/1.1\r\nHost: s.gw.test\r\n\r\n`);
    return sock;
  }

  async function logLine(code: string, withinMs: number): Promise<Record<string, unknown> | undefined> {
    const deadline = performance.now() + withinMs;
    for (;;) {
      const line = s.gw.logs.find((l) => l.code === code);
      if (line !== undefined || performance.now() > deadline) return line;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  test(`while a stalled client holds the only upstream connection, others get 504 after response_timeout_ms (${RESPONSE_TIMEOUT}), not an endless wait`, async () => {
    const sock = await stalledReader();
    try {
      await new Promise((r) => setTimeout(r, 100)); // the stalled request takes the connection first
      assert.equal(s.api.received.at(-1)?.url.startsWith('/public/big'), true);
      const t0 = performance.now();
      const res = await rawRequest(s.gw.port, 'GET /public/queued HTTP/1.1\r\nHost: s.gw.test\r\n\r\n');
      const elapsed = performance.now() - t0;
      assert.equal(res.status, 504);
      assert.deepEqual(JSON.parse(res.body), { code: 'server_error', message: 'The upstream API timed out' });
      assert.ok(elapsed >= RESPONSE_TIMEOUT - 20 && elapsed < SEND_TIMEOUT, `answered after ${Math.round(elapsed)} ms`);
    } finally {
      sock.destroy();
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(!s.api.received.some((r) => r.url === '/public/queued'), 'a request answered 504 must not reach the upstream later');
  });

  test(`a client that accepts nothing for send_timeout_ms (${SEND_TIMEOUT}) is cut off, and the upstream connection is freed`, async () => {
    const sock = await stalledReader();
    try {
      const line = await logLine('send_timeout', SEND_TIMEOUT + 3000);
      assert.ok(line, 'the gateway cut the stalled client and its access log line says send_timeout');
      const res = await rawRequest(s.gw.port, 'GET /public/after HTTP/1.1\r\nHost: s.gw.test\r\n\r\n');
      assert.equal(res.status, 200);
    } finally {
      sock.destroy();
    }
  });
});
