/*
 * Request bodies: read completely before an upstream connection is taken
 * (bounded in size, memory and rate), streamed only on routes that opt out;
 * one response per request whatever the body does; transfer codings the
 * gateway cannot forward faithfully refused.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { mkdtemp, readdir, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { request } from 'undici';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { basicConfig, startGateway, startStack, suiteStack, type Stack, type TestGateway } from '../helpers/gateway.js';
import { listen, startScriptedIntrospection, type ScriptedIntrospection, type Started } from '../helpers/servers.js';
import { hasFinalResponse, openConversation, type Conversation } from '../helpers/conversation.js';
import { rawRequest } from '../helpers/raw.js';

let serial = 0;
const freshToken = (): string => `bodies-opaque-${++serial}`;
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
/** Status lines of final responses in a raw transcript. */
const finalResponses = (text: string): string[] => text.match(/HTTP\/1\.[01] [2-5]\d\d [^\r]*/g) ?? [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the gateway closed the conversation (or fails after `ms`). */
async function closedWithin(c: Conversation, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([c.closed, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`still open after ${ms} ms: ${JSON.stringify(c.received().slice(0, 200))}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function jsonBody(text: string): { code: string; message: string } {
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { code: string; message: string };
}

describe('request bodies: buffered before an upstream connection is taken', { timeout: 20_000 }, () => {
  let dir: string;
  const stack = {} as Stack;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'h3-bodies-'));
    Object.assign(
      stack,
      await startStack((as, api) =>
        basicConfig(
          as.url,
          api.url,
          `  - path: /stream
    upstream: ${api.url}
    phantom_token: false
    request_buffering: false
upstream:
  connections: 2
  response_timeout_ms: 1500
server:
  max_body_bytes: 300000
  body_buffer_bytes: 4096
  body_temp_dir: ${dir}
`,
        ),
      ),
    );
  });
  after(async () => {
    await stack.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    stack.as.calls.length = 0;
    stack.api.received.length = 0;
  });

  test('upstream pool starvation by slow bodies (scripted drip): two POSTs dripping a body to an open route with upstream.connections: 2 do not hold the connections an authenticated GET needs', async () => {
    const { as, api, gw } = stack;
    const token = freshToken();
    await as.activate(token);
    const drips = [await openConversation(gw.port), await openConversation(gw.port)];
    try {
      for (const c of drips) c.send('POST /public/drip HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\n0123456789');
      await sleep(150);
      const res = await request(`${gw.url}/api/orders`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.statusCode, 200, 'the authenticated request was starved of upstream connections');
      await res.body.dump();
      assert.deepEqual(api.received.map((r) => r.url), ['/api/orders'], 'a dripping body reached the upstream before it was complete');
      // The drips, once complete, are forwarded whole and length-framed.
      for (const c of drips) c.send('x'.repeat(90));
      for (const c of drips) assert.match(await c.waitFor(hasFinalResponse), /^HTTP\/1\.1 200 /);
      const drip = api.received.filter((r) => r.url === '/public/drip');
      assert.equal(drip.length, 2);
      for (const r of drip) {
        assert.equal(r.bodyBytes, 100);
        assert.equal(r.headers['content-length'], '100');
      }
    } finally {
      for (const c of drips) c.close();
    }
  });

  test('upstream pool starvation by slow bodies (scripted drip), protected route: one valid token dripping two POSTs does not hold the connections either', async () => {
    const { as, api, gw } = stack;
    const token = freshToken();
    await as.activate(token);
    const drips = [await openConversation(gw.port), await openConversation(gw.port)];
    try {
      for (const c of drips) c.send(`POST /api/drip HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\n0123456789`);
      await sleep(150);
      const res = await request(`${gw.url}/api/orders`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.deepEqual(api.received.map((r) => r.url), ['/api/orders']);
    } finally {
      for (const c of drips) c.close();
    }
  });

  test('a chunked body is forwarded length-framed (Content-Length, no Transfer-Encoding), intact', async () => {
    const { api, gw } = stack;
    const parts = [randomBytes(1000), randomBytes(3000), randomBytes(5)];
    const pieces = [Buffer.from('POST /public/chunked HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')];
    for (const p of parts) pieces.push(Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n'));
    pieces.push(Buffer.from('0\r\n\r\n'));
    const res = await rawRequest(gw.port, Buffer.concat(pieces));
    assert.equal(res.status, 200);
    const seen = api.received[0]!;
    assert.equal(seen.headers['transfer-encoding'], undefined);
    assert.equal(seen.headers['content-length'], '4005');
    assert.equal(seen.bodySha256, sha(Buffer.concat(parts)));
  });

  test('an empty chunked body is forwarded with Content-Length: 0', async () => {
    const { api, gw } = stack;
    const res = await rawRequest(gw.port, 'POST /public/empty HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(api.received[0]!.headers['content-length'], '0');
    assert.equal(api.received[0]!.bodyBytes, 0);
  });

  test('a body larger than body_buffer_bytes goes through a temporary file in body_temp_dir, which is gone during and after the request', async () => {
    const { as, api, gw } = stack;
    const token = freshToken();
    await as.activate(token);
    const created: string[] = [];
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(dir, (_event, name) => created.push(String(name)));
      const body = randomBytes(250_000);
      const res = await request(`${gw.url}/api/upload`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal(api.received[0]!.bodySha256, sha(body));
      assert.equal(api.received[0]!.headers['content-length'], '250000');
      await sleep(50);
    } finally {
      watcher?.close();
    }
    assert.ok(created.some((n) => n.startsWith('phantom-gateway-body-')), `no temporary file was used: ${JSON.stringify(created)}`);
    assert.deepEqual(await readdir(dir), []);
  });

  test('the temporary file is created mode 0600 and unlinked while still in use (Linux /proc)', { skip: !existsSync('/proc/self/fd') }, async () => {
    const { api, gw } = stack;
    const c = await openConversation(gw.port);
    try {
      c.send(`POST /public/spill HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 20000\r\n\r\n${'a'.repeat(10_000)}`);
      // The gateway runs in this process: find the descriptor it holds on the file.
      let found: string | undefined;
      for (let i = 0; i < 50 && found === undefined; i++) {
        await sleep(20);
        for (const fd of await readdir('/proc/self/fd')) {
          const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
          if (target.startsWith(join(dir, 'phantom-gateway-body-'))) found = `/proc/self/fd/${fd}`;
        }
      }
      assert.ok(found !== undefined, 'no descriptor on a temporary file in body_temp_dir');
      assert.match(await readlink(found), / \(deleted\)$/);
      const st = await stat(found);
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal(st.nlink, 0);
      assert.deepEqual(await readdir(dir), []);
      c.send('b'.repeat(10_000));
      assert.match(await c.waitFor(hasFinalResponse), /^HTTP\/1\.1 200 /);
    } finally {
      c.close();
    }
    assert.equal(api.received.at(-1)!.bodySha256, sha('a'.repeat(10_000) + 'b'.repeat(10_000)));
  });

  test('413 by Content-Length past server.max_body_bytes: refused before any of the body is read, without 100 Continue, introspection or upstream', async () => {
    const { as, api, gw } = stack;
    const token = freshToken();
    await as.activate(token);
    const c = await openConversation(gw.port);
    try {
      c.send(`POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer ${token}\r\nContent-Length: 300001\r\nExpect: 100-continue\r\n\r\n`);
      const text = await c.waitFor(hasFinalResponse);
      assert.match(text, /^HTTP\/1\.1 413 /);
      assert.doesNotMatch(text, /100 Continue/);
      assert.deepEqual(jsonBody(text), { code: 'bad_request', message: 'Request body too large' });
      assert.match(text, /\r\nconnection: close\r\n/i);
    } finally {
      c.close();
    }
    assert.equal(as.calls.length, 0);
    assert.equal(api.received.length, 0);
  });

  test('413 for a chunked body that grows past server.max_body_bytes while it is read; nothing reaches the upstream, the connection closes', async () => {
    const { api, gw } = stack;
    const c = await openConversation(gw.port);
    try {
      c.send('POST /public/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n');
      const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x61), Buffer.from('\r\n')]);
      for (let i = 0; i < 5; i++) c.send(chunk); // 320 KiB > 300000
      const text = await c.waitFor(hasFinalResponse);
      assert.match(text, /^HTTP\/1\.1 413 /);
      assert.deepEqual(jsonBody(text), { code: 'bad_request', message: 'Request body too large' });
      await closedWithin(c, 3000);
      assert.equal(finalResponses(c.received()).length, 1);
    } finally {
      c.close();
    }
    assert.equal(api.received.length, 0);
    assert.deepEqual(await readdir(dir), [], 'the temporary file was not removed');
  });

  test('a client that goes away mid-body: nothing forwarded, temporary file removed', async () => {
    const { api, gw } = stack;
    const c = await openConversation(gw.port);
    c.send(`POST /public/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 200000\r\n\r\n${'a'.repeat(50_000)}`);
    await sleep(100);
    c.close();
    await sleep(100);
    assert.equal(api.received.length, 0);
    assert.deepEqual(await readdir(dir), []);
    // The server cannot tell a close from a half-close: it answers 400 to a
    // peer that may still read, or logs 499 if the connection is already gone.
    const line = gw.logs.findLast((l) => l.path === '/public/upload');
    assert.ok(line?.status === 400 || line?.status === 499, JSON.stringify(line));
  });

  test('streaming route (request_buffering: false): a chunked upload keeps its framing; 413 still applies by Content-Length', async () => {
    const { api, gw } = stack;
    const body = randomBytes(100_000);
    const res = await request(`${gw.url}/stream/up`, { method: 'POST', body: Readable.from([body.subarray(0, 50_000), body.subarray(50_000)]) });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(api.received[0]!.headers['transfer-encoding'], 'chunked');
    assert.equal(api.received[0]!.bodySha256, sha(body));
    const big = await rawRequest(gw.port, 'POST /stream/up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 999999\r\n\r\n');
    assert.equal(big.status, 413);
  });

  test('streaming route: a chunked body past max_body_bytes is cut mid-stream with one 413, and the upstream request aborted', async () => {
    const { gw } = stack;
    const c = await openConversation(gw.port);
    try {
      c.send('POST /stream/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n');
      const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x61), Buffer.from('\r\n')]);
      for (let i = 0; i < 5; i++) c.send(chunk);
      const text = await c.waitFor(hasFinalResponse);
      assert.match(text, /^HTTP\/1\.1 413 /);
      await closedWithin(c, 3000);
      assert.equal(finalResponses(c.received()).length, 1);
    } finally {
      c.close();
    }
    // The connection it used is free again.
    const ok = await request(`${gw.url}/stream/after`, { method: 'POST', body: 'fine' });
    assert.equal(ok.statusCode, 200);
    await ok.body.dump();
  });
});

describe('request bodies: minimum rate and idle bound', { timeout: 20_000 }, () => {
  const stack = suiteStack((as, api) =>
    basicConfig(
      as.url,
      api.url,
      `  - path: /stream
    upstream: ${api.url}
    phantom_token: false
    request_buffering: false
  - path: /idle
    upstream: ${api.url}
    phantom_token: false
    request_buffering: false
    body_idle_timeout_ms: 300
upstream:
  connections: 1
server:
  min_body_rate_bytes: 2000
  min_body_rate_window_ms: 300
`,
    ),
  );

  for (const route of ['/public', '/stream'] as const) {
    test(`slow body drip (scripted): a body slower than min_body_rate_bytes is cut with one 408 JSON on ${route === '/public' ? 'a buffering' : 'a streaming'} route`, async () => {
      const { api, gw } = stack;
      const c = await openConversation(gw.port);
      const started = Date.now();
      try {
        c.send(`POST ${route}/drip HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100000\r\n\r\n${'a'.repeat(100)}`);
        const drip = setInterval(() => c.send('a'), 100);
        try {
          const text = await c.waitFor(hasFinalResponse, 5000);
          assert.match(text, /^HTTP\/1\.1 408 /);
          assert.deepEqual(jsonBody(text), { code: 'bad_request', message: 'Request timeout' });
        } finally {
          clearInterval(drip);
        }
        await closedWithin(c, 3000);
        assert.equal(finalResponses(c.received()).length, 1);
      } finally {
        c.close();
      }
      assert.ok(Date.now() - started < 4000, `cut after ${Date.now() - started} ms`);
      assert.equal(api.received.filter((r) => r.url === `${route}/drip`).length, 0, 'an incomplete body was delivered');
      // With one upstream connection, the next request is served: the drip does not hold it.
      const ok = await request(`${gw.url}${route}/after`, { method: 'POST', body: 'fine' });
      assert.equal(ok.statusCode, 200);
      await ok.body.dump();
    });
  }

  test('a body sent at a normal pace passes the rate check', async () => {
    const { api, gw } = stack;
    const body = randomBytes(1024 * 1024);
    const res = await request(`${gw.url}/public/upload`, { method: 'POST', body });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(api.received[0]!.bodySha256, sha(body));
  });

  test('streaming route: a body that stops for body_idle_timeout_ms is cut with 408 before the rate window would', async () => {
    const { gw } = stack;
    const c = await openConversation(gw.port);
    try {
      // A burst well above the rate, then silence.
      c.send(`POST /idle/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100000\r\n\r\n${'a'.repeat(5000)}`);
      const text = await c.waitFor(hasFinalResponse, 3000);
      assert.match(text, /^HTTP\/1\.1 408 /);
    } finally {
      c.close();
    }
  });
});

describe('request bodies: a slow upstream is not a slow client', { timeout: 20_000 }, () => {
  let up: Started;
  let gw: TestGateway;
  let as: ScriptedIntrospection;
  before(async () => {
    as = await startScriptedIntrospection();
    // Scripted: reads nothing of the body for 1 s, then all of it.
    up = await listen(
      createServer((req: IncomingMessage, res: ServerResponse) => {
        setTimeout(() => {
          let n = 0;
          req.on('data', (c: Buffer) => (n += c.length));
          req.on('end', () => res.end(String(n)));
        }, 1000);
      }),
    );
    gw = await startGateway(`
phantom_token: { introspection_endpoint: "${as.url}/introspect", client_id: c, client_secret: s }
routes:
  - { path: /, upstream: "${up.url}", phantom_token: false, request_buffering: false, body_idle_timeout_ms: 300 }
server:
  min_body_rate_bytes: 100000
  min_body_rate_window_ms: 200
`);
  });
  after(async () => {
    await gw.close();
    await up.close();
    await as.close();
  });

  test('streaming route, scripted upstream that stops reading for 1 s: the client held back by it is neither "too slow" nor "idle"', async () => {
    const body = Buffer.alloc(8 * 1024 * 1024, 0x61);
    const res = await request(`${gw.url}/x`, { method: 'POST', body });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), String(body.length));
  });
});

describe('upstream deadline cutting a body being sent', { timeout: 20_000 }, () => {
  // upstream.response_timeout_ms bounds the wait for a connection and for
  // the response headers, not the time the client takes to send its body
  // (bounded by the rate and idle checks) nor an upstream reading it steadily.
  const RESPONSE_TIMEOUT = 300;
  let api: Started & { received: Array<{ url: string; bodyBytes: number }> };
  let slowReader: Started;
  const gws: TestGateway[] = [];
  let as: ScriptedIntrospection;
  before(async () => {
    as = await startScriptedIntrospection();
    const received: Array<{ url: string; bodyBytes: number }> = [];
    api = Object.assign(
      await listen(
        createServer((req: IncomingMessage, res: ServerResponse) => {
          let n = 0;
          req.on('data', (c: Buffer) => (n += c.length));
          req.on('end', () => {
            received.push({ url: req.url!, bodyBytes: n });
            res.end(String(n));
          });
        }),
      ),
      { received },
    );
    // Scripted: reads the body slowly but steadily (a pause after every piece).
    slowReader = await listen(
      createServer((req: IncomingMessage, res: ServerResponse) => {
        let n = 0;
        req.on('data', (c: Buffer) => {
          n += c.length;
          req.pause();
          setTimeout(() => req.resume(), 2);
        });
        req.on('end', () => res.end(String(n)));
      }),
    );
    for (const connections of [1, 4]) {
      gws.push(
        await startGateway(`
phantom_token: { introspection_endpoint: "${as.url}/introspect", client_id: c, client_secret: s }
routes:
  - { path: /stream, upstream: "${api.url}", phantom_token: false, request_buffering: false, body_idle_timeout_ms: 2000 }
  - { path: /slow-reader, upstream: "${slowReader.url}", phantom_token: false }
upstream:
  connections: ${connections}
  response_timeout_ms: ${RESPONSE_TIMEOUT}
server:
  max_body_bytes: 33554432
  body_buffer_bytes: 4096
  min_body_rate_bytes: 100
  min_body_rate_window_ms: 1000
`),
      );
    }
  });
  after(async () => {
    for (const gw of gws) await gw.close();
    await api.close();
    await slowReader.close();
    await as.close();
  });

  for (const [i, connections] of [[0, 1], [1, 4]] as const) {
    test(`deadline cuts a streamed upload (upstream.connections: ${connections}): a chunked upload lasting 3x response_timeout_ms at 20 KiB/s gets 200, not 504`, async () => {
      const c = await openConversation(gws[i]!.port);
      try {
        c.send('POST /stream/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n');
        const until = performance.now() + 3 * RESPONSE_TIMEOUT;
        let sent = 0;
        while (performance.now() < until && !hasFinalResponse(c.received())) {
          await sleep(50);
          c.send(`400\r\n${'a'.repeat(1024)}\r\n`);
          sent += 1024;
        }
        assert.equal(finalResponses(c.received()).length, 0, `answered before the body ended: ${c.received().slice(0, 80)}`);
        c.send('0\r\n\r\n');
        assert.match(await c.waitFor(hasFinalResponse), /^HTTP\/1\.1 200 /);
        assert.equal(api.received.at(-1)?.bodyBytes, sent);
      } finally {
        c.close();
      }
    });
  }

  // The pool's only connection: the deadline is armed at dispatch (it may queue).
  for (const [i, connections] of [[0, 1]] as const) {
    test(`deadline cuts a spilled buffered body (upstream.connections: ${connections}): 24 MiB to a scripted upstream reading it steadily for longer than response_timeout_ms gets 200, not 504`, async () => {
      const body = Buffer.alloc(24 * 1024 * 1024, 0x62);
      const res = await request(`${gws[i]!.url}/slow-reader/up`, { method: 'POST', body });
      const text = await res.body.text();
      assert.equal(res.statusCode, 200);
      assert.equal(text, String(body.length));
    });
  }
});

describe('one request, one response', { timeout: 20_000 }, () => {
  const stack = suiteStack((as, api) =>
    basicConfig(
      as.url,
      api.url,
      `  - path: /stream
    upstream: ${api.url}
    phantom_token: false
    request_buffering: false
`,
    ),
  );

  /** Sends `parts` with a pause between them and returns the transcript once the gateway closed. */
  async function converse(parts: string[]): Promise<string> {
    const c = await openConversation(stack.gw.port);
    try {
      for (const p of parts) {
        c.send(p);
        await sleep(60);
      }
      await closedWithin(c, 3000);
      return c.received();
    } finally {
      c.close();
    }
  }

  test('response splitting by a late parser error: a no-token POST with a malformed chunked body gets one 401, then the connection closes', async () => {
    const text = await converse(['POST /api/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot hex\r\n']);
    assert.deepEqual(finalResponses(text), ['HTTP/1.1 401 Unauthorized']);
  });

  test('response splitting by a late parser error: the malformed chunk arriving after the 401 is not answered either', async () => {
    const text = await converse(['POST /api/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n', 'zz\r\nnot hex\r\n']);
    assert.deepEqual(finalResponses(text), ['HTTP/1.1 401 Unauthorized']);
  });

  test('a malformed chunk in a body being buffered (valid token): one 400 JSON, nothing forwarded', async () => {
    const token = freshToken();
    await stack.as.activate(token);
    const text = await converse([`POST /api/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer ${token}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`, 'zz\r\n\r\n']);
    assert.deepEqual(finalResponses(text), ['HTTP/1.1 400 Bad Request']);
    assert.deepEqual(jsonBody(text), { code: 'bad_request', message: 'Bad request' });
    assert.equal(stack.api.received.length, 0);
  });

  test('bare reset on a body error after dispatch: a malformed chunk on a streaming route, upstream request under way, gets one 400 JSON', async () => {
    const text = await converse(['POST /stream/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n', 'zz\r\n\r\n']);
    assert.deepEqual(finalResponses(text), ['HTTP/1.1 400 Bad Request']);
    assert.deepEqual(jsonBody(text), { code: 'bad_request', message: 'Bad request' });
    assert.equal(stack.api.received.length, 0, 'the upstream saw a complete request');
  });

  test('a client that half-closes mid-body gets one 400 JSON', async () => {
    const c = await openConversation(stack.gw.port);
    try {
      c.send('POST /public/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 10\r\n\r\nabc');
      await sleep(60);
      c.socket.end();
      await closedWithin(c, 3000);
      assert.deepEqual(finalResponses(c.received()), ['HTTP/1.1 400 Bad Request']);
    } finally {
      c.close();
    }
    assert.equal(stack.api.received.length, 0);
  });

  test('bare refusals: HTTP/1.1 without Host gets a JSON 400; HTTP/1.0 without Host is served', async () => {
    const res = await rawRequest(stack.gw.port, 'GET /public/x HTTP/1.1\r\n\r\n');
    assert.equal(res.status, 400);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(res.body), { code: 'bad_request', message: 'Bad request' });
    const unrouted = await rawRequest(stack.gw.port, 'GET /nowhere HTTP/1.1\r\n\r\n');
    assert.equal(unrouted.status, 400, 'without Host, 400 before 404');
    const old = await rawRequest(stack.gw.port, 'GET /public/x HTTP/1.0\r\n\r\n');
    assert.equal(old.status, 200);
    assert.equal(stack.api.received.length, 1);
  });

  test('bare refusals: an Expect other than 100-continue gets a JSON 417', async () => {
    const res = await rawRequest(stack.gw.port, 'POST /public/x HTTP/1.1\r\nHost: gw.test\r\nExpect: foo\r\nContent-Length: 2\r\n\r\nhi');
    assert.equal(res.status, 417);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(res.body), { code: 'bad_request', message: 'Expectation failed' });
    assert.equal(stack.api.received.length, 0);
  });
});

describe('server.request_timeout_ms reached during a body', { timeout: 20_000 }, () => {
  const stack = suiteStack((as, api) => basicConfig(as.url, api.url, 'server:\n  headers_timeout_ms: 200\n  request_timeout_ms: 500\n'));

  test('bare reset on a body timeout: a request whose body is not complete within request_timeout_ms gets one 408 JSON', async () => {
    const c = await openConversation(stack.gw.port);
    try {
      c.send('POST /public/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\n0123456789');
      await closedWithin(c, 3000);
      const text = c.received();
      assert.deepEqual(finalResponses(text), ['HTTP/1.1 408 Request Timeout']);
      assert.deepEqual(jsonBody(text), { code: 'bad_request', message: 'Request timeout' });
    } finally {
      c.close();
    }
    assert.equal(stack.api.received.length, 0);
  });
});

describe('temp-file descriptor leak after a body fault', { timeout: 20_000, skip: !existsSync('/proc/self/fd') }, () => {
  // A spilled body that faults through the parser (clientError) is answered
  // by its request; the read of the body must stop then too, or its unlinked
  // file stays open (Node detaches the request once the refusal is sent).
  let dir: string;
  const stack = {} as Stack;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'h3-fdleak-'));
    Object.assign(
      stack,
      await startStack((as, api) =>
        basicConfig(
          as.url,
          api.url,
          `server:
  body_buffer_bytes: 1024
  body_temp_dir: ${dir}
  min_body_rate_bytes: 0
  headers_timeout_ms: 200
  request_timeout_ms: 700
`,
        ),
      ),
    );
  });
  after(async () => {
    await stack.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Descriptors this process holds on files in body_temp_dir. */
  async function tempFds(): Promise<number> {
    let n = 0;
    for (const fd of await readdir('/proc/self/fd')) {
      const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
      if (target.startsWith(join(dir, 'phantom-gateway-body-'))) n++;
    }
    return n;
  }

  const faults: Array<[string, (c: Conversation) => void, string]> = [
    ['half-close mid-body', (c) => c.socket.end(), 'HTTP/1.1 400 Bad Request'],
    ['malformed chunk', (c) => c.send('zz\r\n\r\n'), 'HTTP/1.1 400 Bad Request'],
    ['request_timeout_ms', () => {}, 'HTTP/1.1 408 Request Timeout'],
  ];
  for (const [kind, fault, status] of faults) {
    test(`temp-file descriptor leak after a body fault (${kind}): the spilled body's descriptor is closed once the refusal is sent`, async () => {
      const baseline = await tempFds();
      const c = await openConversation(stack.gw.port);
      try {
        const chunked = kind === 'malformed chunk';
        c.send(
          chunked
            ? `POST /public/up HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n1f40\r\n${'a'.repeat(8000)}\r\n`
            : `POST /public/up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 20000\r\n\r\n${'a'.repeat(8000)}`,
        );
        // Spilled: the gateway holds a descriptor on its temporary file.
        for (let i = 0; i < 50 && (await tempFds()) === baseline; i++) await sleep(10);
        assert.equal(await tempFds(), baseline + 1, 'the body was not spilled to a temporary file');
        fault(c);
        await closedWithin(c, 3000);
        assert.deepEqual(finalResponses(c.received()), [status]);
      } finally {
        c.close();
      }
      // Closing a FileHandle is asynchronous: allow it a moment, not a GC.
      for (let i = 0; i < 50 && (await tempFds()) !== baseline; i++) await sleep(20);
      assert.equal(await tempFds(), baseline);
      assert.equal(stack.api.received.length, 0);
    });
  }
});

describe('transfer codings', { timeout: 20_000 }, () => {
  const stack = suiteStack((as, api) => basicConfig(as.url, api.url));

  const post = (te: string, version = '1.1') =>
    rawRequest(stack.gw.port, `POST /public/x HTTP/${version}\r\nHost: gw.test\r\n${te}Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n`);

  test('silently dropped transfer coding: Transfer-Encoding: gzip, chunked is refused with 501 JSON, not forwarded without its coding', async () => {
    const res = await post('Transfer-Encoding: gzip, chunked\r\n');
    assert.equal(res.status, 501);
    assert.deepEqual(JSON.parse(res.body), { code: 'bad_request', message: 'Unsupported transfer coding' });
    assert.equal(res.headers.connection, 'close');
    assert.equal(stack.api.received.length, 0);
  });

  test('silently dropped transfer coding: split over two lines (gzip, then chunked): 501', async () => {
    const res = await post('Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n');
    assert.equal(res.status, 501);
    assert.equal(stack.api.received.length, 0);
  });

  test('chunked alone, in any case and with optional whitespace, is accepted', async () => {
    for (const te of ['chunked', 'CHUNKED', 'Chunked ']) {
      const res = await post(`Transfer-Encoding: ${te}\r\n`);
      assert.equal(res.status, 200, te);
    }
    assert.equal(stack.api.received.length, 3);
    for (const r of stack.api.received) assert.equal(r.bodyBytes, 3);
  });

  test('HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 §6.1), 400 and close', async () => {
    const res = await post('Transfer-Encoding: chunked\r\n', '1.0');
    assert.equal(res.status, 400);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(stack.api.received.length, 0);
  });

  test('property: any coding list with a coding other than chunked never reaches the upstream and is answered once, with JSON', async () => {
    const coding = fc.constantFrom('gzip', 'deflate', 'compress', 'identity', 'br', 'x-custom', 'GZIP', 'chunked');
    await fc.assert(
      fc.asyncProperty(fc.array(coding, { minLength: 1, maxLength: 3 }).filter((l) => l.some((c) => c.toLowerCase() !== 'chunked')), fc.boolean(), async (list, chunkedLast) => {
        const te = chunkedLast ? [...list, 'chunked'] : list;
        stack.api.received.length = 0;
        const res = await post(`Transfer-Encoding: ${te.join(', ')}\r\n`);
        assert.ok(res.status === 501 || res.status === 400, `${te.join(', ')}: ${res.status}`);
        assert.equal(res.headers['content-type'], 'application/json');
        assert.equal(finalResponses(res.raw).length, 1);
        assert.equal(stack.api.received.length, 0);
      }),
      { numRuns: 25 },
    );
  });
});
