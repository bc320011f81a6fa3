import { rawRequest } from '../helpers/raw.js';
import { startReviewStack } from './nginx-stack.js';
const s = await startReviewStack();
await s.as.activate('p-1', { scope: 'read' });
const reqs = [
  'GET http://evil/api/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
  'GET http://evil/public/../api/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
  'GET /api/x HTTP/1.0\r\n\r\n',
  'GET /API/x HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n',
  'GET /public/%2561pi HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n',
  'GET /api/x HTTP/1.1\r\nHost: l\r\nAuthorization: bearer p-1\r\nConnection: close\r\n\r\n',
  'GET /api/x HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer  p-1\r\nConnection: close\r\n\r\n',
  'GET /api/x HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer p-1\r\nConnection: close, Authorization\r\n\r\n',
  'GET /api/x HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer p-1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc',
  'OPTIONS /api/x HTTP/1.1\r\nHost: l\r\nOrigin: a\r\nAccess-Control-Request-Method:\r\nConnection: close\r\n\r\n',
  'GET /public/x?x=1 HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer p-1\r\nAuthorization: Bearer q\r\nConnection: close\r\n\r\n',
];
for (const r of reqs) {
  s.api.received.length = 0;
  const x = await rawRequest(s.port, r);
  console.log(JSON.stringify(r.split('\r\n').slice(0, 1)[0]), r.includes('Authorization') ? '(auth)' : '', x.status, x.body.slice(0, 70), '| upstream:', s.api.received.map((u) => `${u.url} auth=${(u.headers.authorization ?? '').slice(0, 12)}`).join(','));
}
await s.stop();
