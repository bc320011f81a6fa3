/*
 * Route prefixes may contain the sub-delims ! $ & ' ( ) * + , = : @ (the
 * config's routePath allows them), and the request-target check lets their
 * percent-encoded forms through (%3A, %40, %21, ...: "reserved characters stay
 * allowed encoded"). The router compares raw text, so `/v1/projects%3Apurge`
 * does not match the protected route `/v1/projects:purge` and falls to the
 * open `/` route. An upstream that decodes the path before routing (Go's
 * ServeMux on r.URL.Path, Spring's UrlPathHelper, Werkzeug/Flask, Django)
 * serves it as `/v1/projects:purge`: reached with no token and no JWT. The
 * README's rule for encoded paths is "refuse whatever an upstream could map
 * onto a different ASCII path".
 */
import { startGateway } from '../test/helpers/gateway.js';
import { startEchoUpstream, startScriptedIntrospection } from '../test/helpers/servers.js';
import { rawRequest } from '../test/helpers/raw.js';

const as = await startScriptedIntrospection();
const api = await startEchoUpstream();
const gw = await startGateway(`
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: c
  client_secret: s
routes:
  - path: /
    upstream: ${api.url}
    phantom_token: false
  - path: /v1/projects:purge
    upstream: ${api.url}
  - path: /@admin/
    upstream: ${api.url}
`);
let bad = false;
for (const p of ['/v1/projects:purge', '/v1/projects%3Apurge', '/v1/projects%3apurge', '/@admin/users', '/%40admin/users']) {
  api.received.length = 0;
  const r = await rawRequest(gw.port, `POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
  const up = api.received[0];
  const decoded = decodeURIComponent(p);
  console.log(`${p.padEnd(22)} (decoded ${decoded.padEnd(18)}) -> ${r.status}; upstream got it: ${up !== undefined}; with JWT: ${up?.headers.authorization !== undefined}`);
  if (p.includes('%') && up !== undefined && up.headers.authorization === undefined) bad = true;
}
await gw.close();
await as.close();
await api.close();
if (bad) {
  console.log('BUG: an encoded spelling of a protected route reaches the upstream unauthenticated');
  process.exit(1);
}
console.log('ok');
