import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { Agent, request } from 'undici';
import { listen } from '../helpers/servers.js';
import { startGateway } from '../helpers/gateway.js';

test('graceful stop: a response already streaming when close() is called finishes, and its keep-alive connection is then closed at once (not after keep_alive_timeout_ms)', async () => {
  // An upstream that sends its headers at once and ends its body 500 ms later.
  const upstream = await listen(
    createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part;');
      setTimeout(() => res.end('last part'), 500);
    }),
  );
  const gw = await startGateway(`
routes: [{ path: /, upstream: "${upstream.url}", phantom_token: false }]
server: { keep_alive_timeout_ms: 8000, shutdown_timeout_ms: 8000 }
`);
  const client = new Agent({ keepAliveTimeout: 30_000 });
  try {
    const res = await request(`${gw.url}/stream`, { dispatcher: client });
    assert.equal(res.statusCode, 200);
    assert.notEqual(res.headers.connection, 'close', 'headers went out before the drain began');
    const started = Date.now();
    const closing = gw.close();
    assert.equal(await res.body.text(), 'first part;last part', 'the in-flight response is finished');
    await closing;
    const took = Date.now() - started;
    assert.ok(took < 2500, `close() took ${took} ms; the idle keep-alive connection must not be kept until its timeout`);
  } finally {
    await client.close();
    await upstream.close();
  }
});

test('a client that goes away before the upstream answers: one access line says 499 client_closed', async () => {
  const { startStack, basicConfig } = await import('../helpers/gateway.js');
  const stack = await startStack((as, api) => basicConfig(as.url, api.url));
  try {
    const ac = new AbortController();
    const pending = request(`${stack.gw.url}/public/slow?ms=1500`, { signal: ac.signal }).catch((err: Error) => err);
    const deadline = Date.now() + 2000;
    while (stack.api.received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    assert.ok((await pending) instanceof Error);
    const line = async () => stack.gw.logs.find((l) => l.msg === 'request' && l.path === '/public/slow');
    while (!(await line()) && Date.now() < deadline + 1000) await new Promise((r) => setTimeout(r, 10));
    const entry = await line();
    assert.ok(entry, 'an access log line for the abandoned request');
    assert.equal(entry.status, 499);
    assert.equal(entry.code, 'client_closed');
    assert.equal(stack.gw.logs.filter((l) => l.msg === 'request').length, 1, 'exactly one line for it');
  } finally {
    await stack.close();
  }
});
