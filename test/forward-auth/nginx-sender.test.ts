/*
 * The NGINX configuration `nginx-conf` generates, run by a real NGINX, and
 * the headers of sender-constrained tokens (DPoP proofs, client
 * certificates): what the decision service is told, what the API never gets
 * from a client, and which decisions the NGINX cache never keeps. Scripted
 * introspection endpoint, echo upstream, the real forward-auth listener.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { createLogger } from '../../src/observability/logger.js';
import { freePort } from '../helpers/cli.js';
import { skip, startGeneratedNginx, type NginxInstance } from '../helpers/nginx.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const yaml = (as: string, api: string, faPort: number) => `
phantom_token:
  introspection_endpoint: ${as}/introspect
  client_id: nginx-sender
  client_secret: s3cret
  scope: read
routes:
  - path: /api
    upstream: ${api}
  - path: /public
    upstream: ${api}
    phantom_token: false
forward_auth:
  listen: { host: 127.0.0.1, port: ${faPort} }
trusted_proxies: [127.0.0.1]
log: { level: silent }
`;

/** Headers a client sends to pass itself off as verified, or as holding a certificate. */
const FORGED = {
  'x-dpop-verified': 'forged-jkt',
  'client-cert': ':MAA=:',
  'client-cert-chain': ':MAA=:',
};

describe('nginx-conf: sender-constrained token headers, run by a real NGINX', { skip }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let listener: ForwardAuthListener;
  let nginx: NginxInstance;
  let port: number;
  let url: string;
  /** The headers of every decision request the listener received. */
  const decisions: IncomingHttpHeaders[] = [];

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const config = parseConfig(yaml(as.url, api.url, await freePort()), { file: 'sender.yaml', env: {} });
    listener = new ForwardAuthListener(config, { logger: createLogger('silent') });
    listener.server.on('request', (req) => decisions.push(req.headers));
    await listener.listen();
    const started = await startGeneratedNginx(config);
    nginx = started.instance;
    port = started.port;
    url = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await nginx?.stop();
    await listener?.close();
    await as?.close();
    await api?.close();
  });
  beforeEach(() => {
    decisions.length = 0;
    api.received.length = 0;
  });

  test('a Bearer allow: the API gets the JWT, and no DPoP, X-DPoP-Verified or Client-Cert a client sent', async () => {
    const jwt = await as.activate('nginx-sender-1', { scope: 'read' });
    const res = await request(`${url}/api/x`, { headers: { authorization: 'Bearer nginx-sender-1', dpop: 'a.b.c', ...FORGED } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const seen = api.received[0]!;
    assert.equal(seen.headers.authorization, `Bearer ${jwt}`);
    for (const name of ['dpop', 'x-dpop-verified', 'client-cert', 'client-cert-chain']) assert.equal(seen.headers[name], undefined, name);
  });

  test('an open route: no DPoP, X-DPoP-Verified or Client-Cert a client sent reaches the API', async () => {
    const res = await request(`${url}/public/x`, { headers: { dpop: 'a.b.c', ...FORGED } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const seen = api.received[0]!;
    for (const name of ['dpop', 'x-dpop-verified', 'client-cert', 'client-cert-chain']) assert.equal(seen.headers[name], undefined, name);
  });

  test('the decision request carries the client\'s DPoP proof, the scheme and the Host with its port (htu), and never a client\'s Client-Cert', async () => {
    await as.activate('nginx-sender-2', { scope: 'read' });
    const res = await request(`${url}/api/y?q=1`, { headers: { authorization: 'Bearer nginx-sender-2', dpop: 'a.b.c', ...FORGED } });
    await res.body.dump();
    assert.equal(decisions.length, 1);
    const d = decisions[0]!;
    assert.equal(d.dpop, 'a.b.c');
    assert.equal(d['x-forwarded-proto'], 'http');
    assert.equal(d['x-forwarded-host'], `127.0.0.1:${port}`);
    assert.equal(d['x-original-uri'], '/api/y?q=1');
    assert.equal(d['client-cert'], undefined);
    assert.equal(d['client-cert-chain'], undefined);
  });

  test('a request with a DPoP proof is decided every time (a proof is good once); without one, the decision is cached', async () => {
    await as.activate('nginx-sender-3', { scope: 'read' });
    for (let i = 0; i < 2; i++) {
      const res = await request(`${url}/api/z`, { headers: { authorization: 'Bearer nginx-sender-3', dpop: `proof-${i}` } });
      await res.body.dump();
    }
    assert.equal(decisions.length, 2, 'two requests with proofs: two decisions');
    decisions.length = 0;
    for (let i = 0; i < 2; i++) {
      const res = await request(`${url}/api/z`, { headers: { authorization: 'Bearer nginx-sender-3' } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    }
    assert.equal(decisions.length, 1, 'two requests without: one decision, then the cache');
  });
});
