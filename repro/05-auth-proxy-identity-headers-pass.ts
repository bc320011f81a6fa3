/*
 * README (Proxy headers): "unless the peer is in trusted_proxies, every header
 * an upstream could read as set by a proxy in front of it is dropped". The
 * family covers address/scheme/host/path/TLS headers, but not the identity
 * headers that authenticating proxies set and upstreams trust for exactly
 * that reason (Apache/Authelia Remote-User, oauth2-proxy X-Auth-Request-*,
 * Grafana's X-WEBAUTH-USER, Azure Easy Auth X-MS-CLIENT-PRINCIPAL*, Google
 * IAP X-Goog-Authenticated-User-*, AWS ALB X-Amzn-Oidc-*, Cloudflare Access
 * Cf-Access-Authenticated-User-Email; Cloudflare's CF-Connecting-IP is in
 * the list, its identity header is not). Any client can send them through
 * the gateway, also on protected routes next to the JWT.
 */
import { startGateway, basicConfig } from '../test/helpers/gateway.js';
import { startEchoUpstream, startScriptedIntrospection } from '../test/helpers/servers.js';
import { rawRequest } from '../test/helpers/raw.js';

const as = await startScriptedIntrospection();
const api = await startEchoUpstream();
const gw = await startGateway(basicConfig(as.url, api.url));
await as.activate('good-token');
const identity: Record<string, string> = {
  'Remote-User': 'admin',
  'X-Remote-User': 'admin',
  'X-Auth-Request-User': 'admin',
  'X-Auth-Request-Email': 'admin@example.com',
  'X-WEBAUTH-USER': 'admin',
  'X-MS-CLIENT-PRINCIPAL-NAME': 'admin@example.com',
  'X-Goog-Authenticated-User-Email': 'accounts.google.com:admin@example.com',
  'X-Amzn-Oidc-Identity': 'admin',
  'Cf-Access-Authenticated-User-Email': 'admin@example.com',
};
const head = Object.entries(identity).map(([k, v]) => `${k}: ${v}\r\n`).join('');
const r = await rawRequest(gw.port, `GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good-token\r\n${head}\r\n`);
const seen = api.received[0]?.headers ?? {};
const passed = Object.keys(identity).filter((k) => seen[k.toLowerCase()] !== undefined);
console.log(`status ${r.status}; identity headers from an untrusted client that reached the upstream: ${passed.length}/${Object.keys(identity).length}`);
console.log(passed.join(', '));
await gw.close();
await as.close();
await api.close();
if (passed.length > 0) {
  console.log('BUG: proxy-set identity headers pass from untrusted peers');
  process.exit(1);
}
console.log('ok');
