/*
 * Header hygiene and forwarding of the reverse proxy: hop-by-hop fields,
 * X-Forwarded-*, what the upstream sees of the client's request, path
 * rewriting, streaming bodies both ways, and upstream faults.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { listen, startEchoUpstream, startScriptedIntrospection, type EchoRequest, type EchoUpstream, type ScriptedIntrospection, type Started } from '../helpers/servers.js';
import { basicConfig, startGateway, type TestGateway, startStack, type Stack } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';

let serial = 0;
/** A fresh opaque token name (the gateway caches tokens across tests). */
const freshToken = (): string => `proxying-opaque-${++serial}`;

/** The values of every occurrence of `name` in a raw header list. */
function rawValues(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

/** A port on which nothing listens. */
async function closedPort(): Promise<number> {
  const s = await listen(createServer());
  await s.close();
  return s.port;
}

describe('reverse proxy: header hygiene (untrusted client)', { timeout: 10_000 }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;

  let stack: Stack;
  before(async () => {
    ({ as, api, gw } = stack = await startStack((as, api) => basicConfig(as.url, api.url)));
  });
  after(() => stack.close());
  beforeEach(() => {
    as.calls.length = 0;
    api.received.length = 0;
  });

  const seen = (): EchoRequest => {
    assert.equal(api.received.length, 1, 'exactly one request reached the upstream');
    return api.received[0]!;
  };

  test('hop-by-hop request headers, and every header named in Connection, are removed before forwarding', async () => {
    const token = freshToken();
    await as.activate(token);
    const res = await rawRequest(
      gw.port,
      'GET /api/hop HTTP/1.1\r\nHost: gw.test\r\n' +
        `Authorization: Bearer ${token}\r\n` +
        'Connection: keep-alive, X-Drop-Me\r\n' +
        'Connection: x-drop-too\r\n' +
        'Keep-Alive: timeout=99\r\n' +
        'TE: trailers\r\n' +
        'Trailer: X-Checksum\r\n' +
        'Upgrade: h2c\r\n' +
        'Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\n' +
        'Proxy-Connection: keep-alive\r\n' +
        'X-Drop-Me: 1\r\n' +
        'X-Drop-Too: 2\r\n' +
        'X-Keep-Me: 3\r\n' +
        '\r\n',
    );
    assert.equal(res.status, 200);
    const s = seen();
    for (const name of ['keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection', 'x-drop-me', 'x-drop-too']) {
      assert.deepEqual(rawValues(s.rawHeaders, name), [], `${name} reached the upstream`);
    }
    // The upstream connection has its own Connection header, not the client's.
    assert.deepEqual(rawValues(s.rawHeaders, 'connection'), ['keep-alive']);
    assert.equal(s.headers['x-keep-me'], '3');
  });

  test('a client naming Authorization in Connection cannot strip the JWT the gateway adds', async () => {
    const token = freshToken();
    const jwt = await as.activate(token);
    const res = await rawRequest(gw.port, `GET /api/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer ${token}\r\nConnection: Authorization, X-Forwarded-For, x-forwarded-proto, X-Forwarded-Host\r\n\r\n`);
    assert.equal(res.status, 200);
    const s = seen();
    assert.deepEqual(rawValues(s.rawHeaders, 'authorization'), [`Bearer ${jwt}`]);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-host'), ['gw.test']);
  });

  test('hop-by-hop response headers from the upstream (Keep-Alive, Connection and what it names) are not relayed', async () => {
    // The client says Connection: close so that the gateway's own server adds no Keep-Alive of its own.
    const res = await rawRequest(gw.port, 'GET /public/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-upstream'], 'echo', 'end-to-end response headers are relayed');
    const head = res.raw.slice(0, res.raw.indexOf('\r\n\r\n')).toLowerCase();
    assert.doesNotMatch(head, /\r\nkeep-alive:/);
    assert.doesNotMatch(head, /\r\nx-hop:/);
    assert.doesNotMatch(head, /x-hop/, 'the upstream\'s Connection value is not relayed');
    assert.equal(res.headers.connection, 'close');
  });

  test('X-Forwarded-For/Proto/Host are set by the gateway; client-sent values, Forwarded and X-Real-IP are dropped', async () => {
    const res = await request(`${gw.url}/public/fwd`, {
      headers: {
        host: 'public.example',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'evil.example',
        forwarded: 'for=6.6.6.6;proto=https;host=evil.example',
        'x-real-ip': '6.6.6.6',
      },
    });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const s = seen();
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-host'), ['public.example']);
    assert.deepEqual(rawValues(s.rawHeaders, 'forwarded'), []);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-real-ip'), []);
    // The upstream's Host is the upstream's own.
    assert.equal(s.headers.host, `127.0.0.1:${api.port}`);
  });

  test('every other header and the query string reach the upstream exactly as sent', async () => {
    const token = freshToken();
    await as.activate(token);
    const query = '?b=2&a=1&a=3&sp=%20x+y&empty=&flag&enc=%2F%3F%23&u=%C3%A9';
    const res = await rawRequest(
      gw.port,
      `POST /api/orders/42${query} HTTP/1.1\r\nHost: gw.test\r\n` +
        `Authorization: Bearer ${token}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        'Content-Length: 2\r\n' +
        'Accept: application/json, text/plain;q=0.5\r\n' +
        'Cookie: a=1; b=2\r\n' +
        'X-Multi: one\r\n' +
        'X-Multi: two\r\n' +
        'X-Spaces: a,  b  ,c\r\n' +
        'User-Agent: test-agent/1.0\r\n' +
        'If-None-Match: "abc"\r\n' +
        '\r\n{}',
    );
    assert.equal(res.status, 200);
    const s = seen();
    assert.equal(s.method, 'POST');
    assert.equal(s.url, `/api/orders/42${query}`);
    assert.deepEqual(rawValues(s.rawHeaders, 'content-type'), ['application/json; charset=utf-8']);
    assert.deepEqual(rawValues(s.rawHeaders, 'content-length'), ['2']);
    assert.deepEqual(rawValues(s.rawHeaders, 'accept'), ['application/json, text/plain;q=0.5']);
    assert.deepEqual(rawValues(s.rawHeaders, 'cookie'), ['a=1; b=2']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-multi'), ['one', 'two']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-spaces'), ['a,  b  ,c']);
    assert.deepEqual(rawValues(s.rawHeaders, 'user-agent'), ['test-agent/1.0']);
    assert.deepEqual(rawValues(s.rawHeaders, 'if-none-match'), ['"abc"']);
    assert.equal(s.bodySha256, createHash('sha256').update('{}').digest('hex'));
  });

  test('the opaque token never reaches the upstream on a protected route', async () => {
    const token = freshToken();
    const jwt = await as.activate(token);
    const res = await request(`${gw.url}/api/secret?token_hint=none`, { headers: { authorization: `Bearer ${token}`, 'x-echo': 'hello' } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const s = seen();
    assert.deepEqual(rawValues(s.rawHeaders, 'authorization'), [`Bearer ${jwt}`]);
    assert.ok(!JSON.stringify(s).includes(token), 'the opaque token appears in what the upstream received');
  });

  test('OPTIONS on a protected route (CORS preflight) passes without a token and without introspection', async () => {
    const res = await request(`${gw.url}/api/orders`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
    });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const s = seen();
    assert.equal(s.method, 'OPTIONS');
    assert.equal(s.headers.origin, 'https://app.example');
    assert.equal(s.headers['access-control-request-method'], 'POST');
    assert.equal(as.calls.length, 0);
  });

  test('a CORS preflight that carries an opaque token: the token is not introspected and not forwarded', async () => {
    const token = freshToken();
    await as.activate(token);
    const res = await request(`${gw.url}/api/orders`, {
      method: 'OPTIONS',
      headers: { authorization: `Bearer ${token}`, origin: 'https://app.example', 'access-control-request-method': 'GET' },
    });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const s = seen();
    assert.deepEqual(rawValues(s.rawHeaders, 'authorization'), []);
    assert.ok(!JSON.stringify(s).includes(token));
    assert.equal(as.calls.length, 0);
  });

  test('an OPTIONS that is not a CORS preflight needs a token like any other method', async () => {
    const res = await request(`${gw.url}/api/orders`, { method: 'OPTIONS' });
    assert.equal(res.statusCode, 401);
    await res.body.dump();
    assert.equal(api.received.length, 0);
    const token = freshToken();
    const jwt = await as.activate(token);
    const ok = await request(`${gw.url}/api/orders`, { method: 'OPTIONS', headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.statusCode, 200);
    await ok.body.dump();
    assert.deepEqual(rawValues(seen().rawHeaders, 'authorization'), [`Bearer ${jwt}`]);
  });

  test('the client\'s Authorization does not reach the upstream of an open route (forward_authorization: true keeps it: see open-route-authorization)', async () => {
    const res = await request(`${gw.url}/public/x`, { headers: { authorization: 'Basic dTpw' } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.deepEqual(rawValues(seen().rawHeaders, 'authorization'), []);
    assert.equal(as.calls.length, 0);
  });

  test('HEAD refusals have no body: 401 and 404', async () => {
    for (const [target, status] of [['/api/x', 401], ['/nowhere', 404]] as const) {
      const res = await rawRequest(gw.port, `HEAD ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`);
      assert.equal(res.status, status);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(res.body, '', `HEAD ${target} carried a body`);
    }
    assert.equal(api.received.length, 0);
  });
});

describe('reverse proxy: X-Forwarded-* from a trusted proxy', { timeout: 10_000 }, () => {
  let api: EchoUpstream;
  let gw: TestGateway;

  let stack: Stack;
  before(async () => {
    ({ api, gw } = stack = await startStack((as, api) => basicConfig(as.url, api.url, 'trusted_proxies: [127.0.0.1]\n')));
  });
  after(() => stack.close());
  beforeEach(() => {
    api.received.length = 0;
  });

  test('client values are kept and the peer is appended to X-Forwarded-For', async () => {
    const res = await rawRequest(
      gw.port,
      'GET /public/fwd HTTP/1.1\r\nHost: internal.lb\r\n' +
        'X-Forwarded-For: 1.1.1.1\r\n' +
        'X-Forwarded-For: 2.2.2.2\r\n' +
        'X-Forwarded-Proto: https\r\n' +
        'X-Forwarded-Host: public.example\r\n' +
        'Forwarded: for=1.1.1.1;proto=https\r\n' +
        'Connection: close\r\n\r\n',
    );
    assert.equal(res.status, 200);
    const s = api.received[0]!;
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-for'), ['1.1.1.1, 2.2.2.2, 127.0.0.1']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-host'), ['public.example']);
    assert.deepEqual(rawValues(s.rawHeaders, 'forwarded'), ['for=1.1.1.1;proto=https']);
  });

  test('without client values the gateway sets them from the connection', async () => {
    const res = await rawRequest(gw.port, 'GET /public/fwd HTTP/1.1\r\nHost: internal.lb\r\nConnection: close\r\n\r\n');
    assert.equal(res.status, 200);
    const s = api.received[0]!;
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-host'), ['internal.lb']);
  });
});

describe('reverse proxy: routing and upstream path rewriting (nginx proxy_pass semantics)', { timeout: 10_000 }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: secret
routes:
  - path: /api
    upstream: ${api.url}/v1
    phantom_token: false
  - path: /api/admin
    upstream: ${api.url}/admin
  - path: /slash
    upstream: ${api.url}/v2/
    phantom_token: false
  - path: /root
    upstream: ${api.url}/
    phantom_token: false
  - path: /same
    upstream: ${api.url}
    phantom_token: false
`);
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
  });
  beforeEach(() => {
    as.calls.length = 0;
    api.received.length = 0;
  });

  const cases: Array<[string, string]> = [
    ['/api/x?q=1', '/v1/x?q=1'],
    ['/api', '/v1'],
    ['/api/', '/v1/'],
    ['/api?q=1&r=%2f', '/v1?q=1&r=%2f'],
    ['/api/a/b/c', '/v1/a/b/c'],
    ['/slash/x', '/v2/x'],
    ['/slash', '/v2/'],
    ['/root/x?y', '/x?y'],
    ['/same/x?y=1', '/same/x?y=1'],
  ];
  for (const [from, to] of cases) {
    test(`${from} reaches the upstream as ${to}`, async () => {
      const res = await request(`${gw.url}${from}`);
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal(api.received.length, 1);
      assert.equal(api.received[0]!.url, to);
    });
  }

  test('/apix does not match /api: 404 not_found, nothing forwarded', async () => {
    const res = await request(`${gw.url}/apix`);
    assert.equal(res.statusCode, 404);
    assert.deepEqual(await res.body.json(), { code: 'not_found', message: 'No route for this path' });
    assert.equal(api.received.length, 0);
  });

  test('the longest prefix wins: /api/admin/x is protected though /api is open', async () => {
    const res = await request(`${gw.url}/api/admin/x`);
    assert.equal(res.statusCode, 401);
    await res.body.dump();
    assert.equal(api.received.length, 0);
    assert.equal(as.calls.length, 0);
  });

  test('/api/administrator is not under /api/admin: it takes the open /api route', async () => {
    const res = await request(`${gw.url}/api/administrator`);
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(api.received[0]!.url, '/v1/administrator');
  });
});

describe('reverse proxy: streaming bodies', { timeout: 10_000 }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  const MiB = 1024 * 1024;

  let stack: Stack;
  before(async () => {
    ({ as, api, gw } = stack = await startStack((as, api) =>
      basicConfig(as.url, api.url, `  - path: /stream
    upstream: ${api.url}
    request_buffering: false
`),
    ));
  });
  after(() => stack.close());
  beforeEach(() => {
    api.received.length = 0;
  });

  test('a 1 MiB upload with Content-Length arrives intact at the upstream', async () => {
    const token = freshToken();
    await as.activate(token);
    const body = randomBytes(MiB);
    const res = await request(`${gw.url}/api/upload`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const s = api.received[0]!;
    assert.equal(s.headers['content-length'], String(MiB));
    assert.equal(s.bodyBytes, MiB);
    assert.equal(s.bodySha256, createHash('sha256').update(body).digest('hex'));
  });

  for (const [route, framing] of [['/api', 'length-framed (buffered route)'], ['/stream', 'still chunked (streaming route)']] as const) {
    test(`a 1 MiB chunked upload arrives intact at the upstream, ${framing}`, async () => {
      const token = freshToken();
      await as.activate(token);
      const hash = createHash('sha256');
      const parts: Buffer[] = [];
      for (let i = 0; i < 16; i++) {
        const p = randomBytes(MiB / 16);
        hash.update(p);
        parts.push(p);
      }
      const res = await request(`${gw.url}${route}/upload`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: Readable.from(parts) });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      const s = api.received[0]!;
      if (route === '/api') {
        assert.equal(s.headers['transfer-encoding'], undefined);
        assert.equal(s.headers['content-length'], String(MiB));
      } else {
        assert.equal(s.headers['transfer-encoding'], 'chunked');
        assert.equal(s.headers['content-length'], undefined);
      }
      assert.equal(s.bodyBytes, MiB);
      assert.equal(s.bodySha256, hash.digest('hex'));
    });
  }

  test('a 1 MiB upload with Content-Length on a streaming route arrives intact', async () => {
    const token = freshToken();
    await as.activate(token);
    const body = randomBytes(MiB);
    const res = await request(`${gw.url}/stream/upload`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(api.received[0]!.headers['content-length'], String(MiB));
    assert.equal(api.received[0]!.bodySha256, createHash('sha256').update(body).digest('hex'));
  });

  test('a 1.5 MiB download arrives intact with its Content-Length', async () => {
    const bytes = MiB + MiB / 2 + 7;
    const res = await request(`${gw.url}/public/big?bytes=${bytes}`);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(bytes));
    const got = Buffer.from(await res.body.arrayBuffer());
    assert.equal(got.length, bytes);
    assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(Buffer.alloc(bytes, 0x61)).digest('hex'));
  });
});

describe('reverse proxy: streaming, against a scripted upstream', { timeout: 10_000 }, () => {
  let as: ScriptedIntrospection;
  let up: Started;
  let gw: TestGateway;
  let release: () => void = () => {};
  let firstChunkSeen: Promise<void>;
  let onFirstChunk: () => void = () => {};

  before(async () => {
    as = await startScriptedIntrospection();
    // /upload answers as soon as the first request chunk arrives, and then
    // reads the rest; /download sends a first chunk and holds the rest until
    // the test releases it. Both deadlock if the gateway buffers whole
    // bodies (which it does for requests, unless the route opts out).
    up = await listen(
      createServer((req: IncomingMessage, res: ServerResponse) => {
        if (req.url === '/stream/upload') {
          req.once('data', () => {
            onFirstChunk();
            res.writeHead(200, { 'content-type': 'text/plain' });
            res.write('got-first-chunk\n');
            let total = 0;
            req.on('data', (c: Buffer) => (total += c.length));
            req.on('end', () => res.end(`rest=${total}\n`));
          });
          return;
        }
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first-part\n');
        const done = new Promise<void>((r) => (release = r));
        void done.then(() => res.end('second-part\n'));
      }),
    );
    gw = await startGateway(basicConfig(as.url, up.url, `  - path: /stream
    upstream: ${up.url}
    phantom_token: false
    request_buffering: false
`));
  });
  after(async () => {
    release();
    await gw.close();
    await as.close();
    await up.close();
  });

  test('on a streaming route (request_buffering: false) the request body is streamed: the upstream sees the first chunk before the client sends the rest', { timeout: 3000 }, async () => {
    firstChunkSeen = new Promise<void>((r) => (onFirstChunk = r));
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(1000, 0x62));
    const pending = request(`${gw.url}/stream/upload`, { method: 'POST', body });
    await firstChunkSeen;
    const res = await pending;
    assert.equal(res.statusCode, 200);
    // Only now does the client send the rest of its body.
    body.push(Buffer.alloc(5000, 0x63));
    body.push(null);
    const text = await res.body.text();
    assert.match(text, /^got-first-chunk\nrest=\d+\n$/);
  });

  test('the response body is streamed: the client reads the first part before the upstream sends the rest', { timeout: 3000 }, async () => {
    const res = await request(`${gw.url}/public/download`);
    assert.equal(res.statusCode, 200);
    const it = res.body[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(Buffer.from(first.value as Buffer).toString(), 'first-part\n');
    release();
    let rest = '';
    for (let r = await it.next(); !r.done; r = await it.next()) rest += Buffer.from(r.value as Buffer).toString();
    assert.equal(rest, 'second-part\n');
  });
});

describe('reverse proxy: upstream faults', { timeout: 10_000 }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const port = await closedPort();
    gw = await startGateway(
      basicConfig(
        as.url,
        api.url,
        `  - path: /down
    upstream: http://127.0.0.1:${port}
    phantom_token: false
upstream:
  response_timeout_ms: 200
`,
      ),
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
  });

  test('upstream unreachable (closed port): 502 server_error', async () => {
    const res = await request(`${gw.url}/down/x`);
    assert.equal(res.statusCode, 502);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.deepEqual(await res.body.json(), { code: 'server_error', message: 'The upstream API is unavailable' });
  });

  test('upstream unreachable, HEAD: 502 with no body', async () => {
    const res = await rawRequest(gw.port, 'HEAD /down/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    assert.equal(res.status, 502);
    assert.equal(res.body, '');
  });

  test('upstream slower than upstream.response_timeout_ms (echo upstream /slow): 504 server_error, in time', async () => {
    const started = Date.now();
    const res = await request(`${gw.url}/public/slow?ms=2500`);
    assert.equal(res.statusCode, 504);
    assert.deepEqual(await res.body.json(), { code: 'server_error', message: 'The upstream API timed out' });
    // undici's timers tick every ~0.5 s, so a 200 ms timeout fires within about a second.
    assert.ok(Date.now() - started < 2000, `answered after ${Date.now() - started} ms`);
  });

  test('a protected route whose upstream is slow still answers 504, with one introspection', async () => {
    const token = freshToken();
    await as.activate(token);
    const res = await request(`${gw.url}/api/slow?ms=2500`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.statusCode, 504);
    await res.body.dump();
    assert.equal(as.callsFor(token), 1);
  });

  test('after a fault, the next request to a healthy upstream is served', async () => {
    const res = await request(`${gw.url}/public/ok`);
    assert.equal(res.statusCode, 200);
    await res.body.dump();
  });
});

describe('reverse proxy: one deadline for an upstream answer (upstream.response_timeout_ms)', { timeout: 10_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack((as, api) => basicConfig(as.url, api.url, 'upstream:\n  connections: 1\n  response_timeout_ms: 800\n'));
  });
  after(() => stack.close());

  test('response timeout exceeded twice over: a request queued for the only connection gets 504 within the bound, not 200 after the wait plus a fresh bound', async () => {
    const { gw } = stack;
    // The first request holds the only connection for most of the bound.
    const first = request(`${gw.url}/public/slow?ms=500`);
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    // Queued until ~500 ms, then the upstream takes another 500 ms: 1000 ms
    // in all, past the 800 ms bound, though each part alone is within it.
    const second = await request(`${gw.url}/public/slow?ms=500`);
    const elapsed = Date.now() - started;
    assert.equal(second.statusCode, 504);
    assert.deepEqual(await second.body.json(), { code: 'server_error', message: 'The upstream API timed out' });
    assert.ok(elapsed < 800 + 700, `answered after ${elapsed} ms`);
    const res = await first;
    assert.equal(res.statusCode, 200);
    await res.body.dump();
  });
});
