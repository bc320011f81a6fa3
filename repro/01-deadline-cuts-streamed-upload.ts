/*
 * A streamed upload (request_buffering: false) that keeps sending well above
 * min_body_rate gets 504 "upstream timed out" once it has lasted longer than
 * upstream.response_timeout_ms, although the upstream is only waiting for the
 * rest of the body (the README promises body_idle_timeout_ms bounds pauses,
 * and request_timeout_ms bounds the whole request).
 * Same for a buffered route: the deadline also runs while a spilled body is
 * being written to a slow-reading upstream.
 */
import { connect } from 'node:net';
import { startGateway } from '../test/helpers/gateway.js';
import { startEchoUpstream } from '../test/helpers/servers.js';

const api = await startEchoUpstream();
const gw = await startGateway(`
phantom_token:
  introspection_endpoint: http://127.0.0.1:9/introspect
  client_id: c
  client_secret: s
routes:
  - path: /stream
    upstream: ${api.url}
    phantom_token: false
    request_buffering: false
    body_idle_timeout_ms: 2000
upstream:
  response_timeout_ms: 1000
server:
  request_timeout_ms: 20000
  min_body_rate_bytes: 100
  min_body_rate_window_ms: 1000
`);

const sock = connect(gw.port, '127.0.0.1');
let got = '';
sock.on('data', (d) => (got += d.toString('latin1')));
sock.on('error', () => {});
sock.write('POST /stream/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
const started = Date.now();
// 1 KiB every 100 ms for 3 s: 10 KiB/s, far above min_body_rate_bytes 100.
for (let i = 0; i < 30 && !sock.destroyed && got === ''; i++) {
  await new Promise((r) => setTimeout(r, 100));
  sock.write(`400\r\n${'a'.repeat(1024)}\r\n`);
}
if (!sock.destroyed && got === '') sock.write('0\r\n\r\n');
const deadline = Date.now() + 3000;
while (!/\r\n\r\n/.test(got) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
const status = got.split('\r\n')[0];
console.log(`after ${Date.now() - started} ms the client got: ${status}`);
console.log(`upstream received ${api.received.length} complete request(s)`);
sock.destroy();
await gw.close();
await api.close();
if (!/ 200 /.test(status ?? '')) {
  console.log('BUG: an actively streaming upload was cut with', status);
  process.exit(1);
}
console.log('ok');
