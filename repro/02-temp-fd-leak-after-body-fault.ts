/*
 * A buffered body that has spilled to its temporary file, then faults in a way
 * Node's parser reports through 'clientError' (half-close mid-body, a malformed
 * chunk, request_timeout_ms): the gateway answers 400/408 through bodyFailed(),
 * but the BodyBuffer is never settled: after the response finishes, Node has
 * detached the request from the connection, so it never emits 'close' or
 * 'error', and the unlinked temp file's descriptor (plus up to
 * body_buffer_bytes of memory) stays open. With min_body_rate_bytes: 0 nothing
 * closes it until a major GC finds the FileHandle (Node then warns
 * "Closing file descriptor N on garbage collection", DEP0137: a future Node
 * throws there); with the default rate check it is held until the next rate
 * window ends. Each leaked descriptor also pins its unlinked file's disk
 * space: up to max_body_bytes (10 MiB) per faulted upload.
 * (Run with --expose-gc and call gc() to see them reclaimed only by GC.)
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { startGateway } from '../test/helpers/gateway.js';
import { startEchoUpstream } from '../test/helpers/servers.js';

const tempFds = () =>
  readdirSync('/proc/self/fd')
    .map((x) => {
      try {
        return readlinkSync(`/proc/self/fd/${x}`);
      } catch {
        return '';
      }
    })
    .filter((x) => x.includes('phantom-gateway-body')).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const api = await startEchoUpstream();
const gw = await startGateway(`
phantom_token:
  introspection_endpoint: http://127.0.0.1:9/introspect
  client_id: c
  client_secret: s
routes:
  - path: /open
    upstream: ${api.url}
    phantom_token: false
server:
  body_buffer_bytes: 1024
  min_body_rate_bytes: 0
`);

const N = 20;
const statuses: string[] = [];
for (let i = 0; i < N; i++) {
  const c = connect(gw.port, '127.0.0.1');
  let got = '';
  c.on('data', (d) => (got += d.toString('latin1')));
  c.on('error', () => {});
  const variant = i % 2;
  if (variant === 0) {
    // half the announced body, then FIN
    c.write(`POST /open/up HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n${'a'.repeat(8000)}`);
    await sleep(50);
    c.end();
  } else {
    // a chunked body past the memory bound, then a malformed chunk size
    c.write(`POST /open/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1f40\r\n${'a'.repeat(8000)}\r\n`);
    await sleep(50);
    c.write('zz\r\n');
  }
  const until = Date.now() + 2000;
  while (!got.includes('\r\n\r\n') && Date.now() < until) await sleep(20);
  statuses.push(got.split('\r\n')[0] ?? '(none)');
  c.destroy();
}
await sleep(1500);
const open = tempFds();
console.log('answers:', [...new Set(statuses)].join(' | '));
console.log(`${N} faulted uploads answered; temp-file descriptors still open 1.5 s later: ${open}`);
await gw.close();
await api.close();
if (open > 0) {
  console.log('BUG: descriptors of finished requests leaked');
  process.exit(1);
}
console.log('ok');
