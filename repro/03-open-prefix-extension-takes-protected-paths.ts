/*
 * The route-spelling rule (a prefix also takes `<prefix>.<anything>`) is
 * meant to keep `/admin.json` on a protected `/admin/` route instead of
 * letting it fall to a less protected one. It applies to open routes too:
 * with `/` protected and `/status` open, every `/status.<ext>` path, which
 * belongs to the protected root, now goes to the open route, reaching the
 * upstream with no token checked and no JWT (before h4: 401). The attacker
 * picks the extension, so any root-level resource named `status.*`
 * (`/status.bak`, `/status.internal`, `/status.json` served by a handler
 * other than /status) is reachable unauthenticated.
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
  - path: /status
    upstream: ${api.url}
    phantom_token: false
`);
let bad = false;
for (const p of ['/export.csv', '/status', '/status.internal-export', '/status.bak', '/status.json/']) {
  api.received.length = 0;
  const r = await rawRequest(gw.port, `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`);
  const reached = api.received.length > 0;
  const jwt = reached && api.received[0]!.headers.authorization !== undefined;
  console.log(`${p.padEnd(26)} -> ${r.status}; reached upstream: ${reached}; with JWT: ${jwt}`);
  if (p.startsWith('/status.') && reached && !jwt) bad = true;
}
await gw.close();
await as.close();
await api.close();
if (bad) {
  console.log('BUG: paths under the protected root reach the upstream with no token through the open /status route');
  process.exit(1);
}
console.log('ok');
