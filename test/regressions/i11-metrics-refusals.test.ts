/*
 * Review of issue 11: phantom_gateway_requests_total is documented as
 * "Requests answered", but requests the proxy refuses before routing
 * (CONNECT 405, headers too large 431, malformed 400: written straight to the
 * socket by Gateway#rawRefusal) are never counted: a flood of malformed
 * requests is invisible on the dashboards (it only shows in the logs).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rawRequest } from '../helpers/raw.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { startAdminStack, type AdminStack } from '../admin/helpers.js';
import { total } from '../admin/prometheus.js';

describe('review i11 metrics: requests refused before routing are counted', () => {
  let api: EchoUpstream;
  let stack: AdminStack;
  before(async () => {
    api = await startEchoUpstream();
    stack = await startAdminStack(`
admin:
  listen: { host: 127.0.0.1, port: 0 }
phantom_token:
  introspection_endpoint: http://127.0.0.1:9/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /public
    upstream: ${api.url}
    phantom_token: false
`);
  });
  after(async () => {
    await stack?.close();
    await api?.close();
  });

  // Defect: Gateway#rawRefusal (src/proxy/server.ts) logs "request refused before routing" but never calls metrics.request().
  test('CONNECT (405), a 70 kB header (431) and a malformed header line (400) each appear in phantom_gateway_requests_total', async () => {
    const port = Number(new URL(stack.url).port);
    const statuses = [
      (await rawRequest(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')).status,
      (await rawRequest(port, `GET /public HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(70_000)}\r\n\r\n`)).status,
      (await rawRequest(port, 'GET /public HTTP/1.1\r\nHost: a\r\nbad header line\r\n\r\n')).status,
    ];
    assert.deepEqual(statuses, [405, 431, 400], 'the refusals themselves are right');
    const m = await stack.scrape();
    assert.equal(total(m, 'phantom_gateway_requests_total', { door: 'proxy', status: '405' }), 1, 'CONNECT counted');
    assert.equal(total(m, 'phantom_gateway_requests_total', { door: 'proxy', status: '431' }), 1, 'headers too large counted');
    assert.equal(total(m, 'phantom_gateway_requests_total', { door: 'proxy', status: '400' }), 1, 'malformed request counted');
  });
});
