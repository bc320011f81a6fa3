/*
 * Review of the generated NGINX configuration (issue 9): refusals that do not
 * look like the proxy's (JSON {"code","message"}, the proxy's status).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawRequest } from '../helpers/raw.js';
import { skip, startReviewStack, type ReviewStack } from './nginx-stack.js';

describe('review: NGINX refusal shapes', { skip }, () => {
  let s: ReviewStack;
  before(async () => {
    s = await startReviewStack();
    await s.as.activate('ok-1', { scope: 'read' });
  });
  after(() => s?.stop());

  it('more headers than server.max_headers (the listener answers 431) gives 431 bad_request JSON, not 500 server_error', async () => {
    let extra = '';
    for (let i = 0; i < 120; i++) extra += `X-Pad-${i}: ${i}\r\n`;
    const r = await rawRequest(s.port, `GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ok-1\r\n${extra}Connection: close\r\n\r\n`);
    assert.deepEqual({ status: r.status, body: r.body }, { status: 431, body: '{"code":"bad_request","message":"Too many request headers"}' });
  });

  it('headers over server.max_header_bytes in total (each line small; NGINX accepts them) gives 431 JSON, not 500', async () => {
    let extra = '';
    for (let i = 0; i < 5; i++) extra += `X-Pad-${i}: ${'a'.repeat(4000)}\r\n`;
    const r = await rawRequest(s.port, `GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ok-1\r\n${extra}Connection: close\r\n\r\n`);
    assert.deepEqual({ status: r.status, body: r.body }, { status: 431, body: '{"code":"bad_request","message":"Request headers too large"}' });
  });

  it('a request line longer than NGINX\'s buffer (414) is refused with a JSON body, not NGINX\'s HTML page', async () => {
    const r = await rawRequest(s.port, `GET /api/${'a'.repeat(9000)} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    assert.equal(r.headers['content-type'], 'application/json', `${r.status} ${r.headers['content-type']}: ${r.body.slice(0, 80)}`);
    assert.doesNotMatch(r.body, /<html>|nginx/i);
  });

  it('one header line longer than NGINX\'s buffer (494) is refused with a JSON body, not NGINX\'s HTML page', async () => {
    const r = await rawRequest(s.port, `GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(9000)}\r\nConnection: close\r\n\r\n`);
    assert.equal(r.headers['content-type'], 'application/json', `${r.status} ${r.headers['content-type']}: ${r.body.slice(0, 80)}`);
    assert.doesNotMatch(r.body, /<html>|nginx/i);
  });
});
