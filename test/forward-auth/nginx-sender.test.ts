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
import { X509Certificate } from 'node:crypto';
import { Agent, request } from 'undici';
import { makeTestPki, type TestPki } from '../client-auth/certs.js';
import { dpopClient, dpopProof, x5tS256, type DpopClient } from '../frontdoors/dpop.js';
import { parseConfig } from '../../src/config/load.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { NginxConfError, nginxConf } from '../../src/forward-auth/nginx-conf.js';
import { createLogger } from '../../src/observability/logger.js';
import { freePort } from '../helpers/cli.js';
import { skip, startGeneratedNginx, type NginxInstance } from '../helpers/nginx.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const yaml = (as: string, api: string, faPort: number, more = '') => `
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
${more}
forward_auth:
  listen: { host: 127.0.0.1, port: ${faPort} }
trusted_proxies: [127.0.0.1]
trust_client_cert_header: true
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

describe('nginx-conf with listen.tls and request_client_certificates, run by a real NGINX', { skip }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let listener: ForwardAuthListener;
  let nginx: NginxInstance;
  let url: string;
  let pki: TestPki;
  let key: DpopClient;
  let withCert: Agent;
  let otherCert: Agent;
  let withoutCert: Agent;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    pki = makeTestPki('nginx-mtls');
    key = await dpopClient();
    const more = `  - path: /dpop
    upstream: ${api.url}
    phantom_token: { scheme: DPoP }`;
    const tlsYaml = `${yaml(as.url, api.url, await freePort(), more)}
listen:
  host: 127.0.0.1
  port: 0
  tls: { cert_file: ${pki.server.certFile}, key_file: ${pki.server.keyFile}, request_client_certificates: true }
`;
    const config = parseConfig(tlsYaml, { file: 'mtls.yaml', env: {} });
    listener = new ForwardAuthListener(config, { logger: createLogger('silent') });
    await listener.listen();
    const started = await startGeneratedNginx(config);
    nginx = started.instance;
    url = `https://127.0.0.1:${started.port}`;
    withCert = new Agent({ connect: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key } });
    otherCert = new Agent({ connect: { ca: pki.ca, cert: pki.otherSubject.cert, key: pki.otherSubject.key } });
    withoutCert = new Agent({ connect: { ca: pki.ca } });
  });
  after(async () => {
    await withCert?.close();
    await otherCert?.close();
    await withoutCert?.close();
    await nginx?.stop();
    await listener?.close();
    await as?.close();
    await api?.close();
    pki?.cleanup();
  });

  test('a certificate-bound token (scripted cnf x5t#S256): allowed with its certificate, never cached; 401 invalid_token with another or none', async () => {
    const jwt = await as.activate('nginx-mtls-1', { scope: 'read', cnf: { 'x5t#S256': x5tS256(pki.client.cert) } });
    for (let i = 0; i < 2; i++) {
      api.received.length = 0;
      const ok = await request(`${url}/api/x`, { dispatcher: withCert, headers: { authorization: 'Bearer nginx-mtls-1' } });
      assert.equal(ok.statusCode, 200);
      await ok.body.dump();
      assert.equal(api.received[0]!.headers.authorization, `Bearer ${jwt}`);
      assert.equal(api.received[0]!.headers['client-cert'], undefined, 'NGINX does not forward the certificate');
    }
    for (const [what, agent] of [['another certificate', otherCert], ['no certificate', withoutCert]] as const) {
      const res = await request(`${url}/api/x`, { dispatcher: agent, headers: { authorization: 'Bearer nginx-mtls-1' } });
      assert.equal(res.statusCode, 401, what);
      assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"', what);
      assert.deepEqual(await res.body.json(), { code: 'unauthorized', message: 'Invalid or expired access token' }, what);
    }
  });

  test('a client\'s own Client-Cert header is not its certificate', async () => {
    await as.activate('nginx-mtls-2', { scope: 'read', cnf: { 'x5t#S256': x5tS256(pki.client.cert) } });
    const forged = `:${new X509Certificate(pki.client.cert).raw.toString('base64')}:`;
    const res = await request(`${url}/api/x`, { dispatcher: withoutCert, headers: { authorization: 'Bearer nginx-mtls-2', 'client-cert': forged } });
    assert.equal(res.statusCode, 401);
    await res.body.dump();
  });

  test('DPoP over NGINX\'s TLS: htu is https://host:port/path', async () => {
    const jwt = await as.activate('nginx-mtls-dpop', { scope: 'read', cnf: { jkt: key.jkt } });
    const proof = await dpopProof(key, 'GET', `${url}/dpop/x`, 'nginx-mtls-dpop');
    api.received.length = 0;
    const res = await request(`${url}/dpop/x?q=1`, { dispatcher: withoutCert, headers: { authorization: 'DPoP nginx-mtls-dpop', dpop: proof } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(api.received[0]!.headers.authorization, `DPoP ${jwt}`);
    assert.equal(api.received[0]!.headers.dpop, proof);
    assert.equal(api.received[0]!.headers['x-dpop-verified'], key.jkt);
  });
});

describe('nginx-conf: the decision cache key and sender constraints', () => {
  test('a route\'s scheme and DPoP settings are part of its cache key: a Bearer allow cached before a switch to DPoP is never used after it', () => {
    const keyOf = (routeOptions: string) => {
      const text = nginxConf(parseConfig(yaml('https://as.example', 'http://127.0.0.1:3000', 8081).replace('  - path: /api\n    upstream: http://127.0.0.1:3000', `  - path: /api\n    upstream: http://127.0.0.1:3000\n    phantom_token: ${routeOptions}`), { file: 'k.yaml', env: {} }), {
        listen: { host: '127.0.0.1', port: 8080 },
      });
      return text.match(/proxy_cache_key "(r0-[0-9a-f]{16}) /)![1];
    };
    const bearer = keyOf('{ scheme: Bearer }');
    assert.equal(keyOf('{ scheme: bearer }'), bearer, 'the same scheme in another case');
    assert.notEqual(keyOf('{ scheme: DPoP }'), bearer);
    assert.notEqual(keyOf('{ scheme: any }'), bearer);
    assert.notEqual(keyOf('{ scheme: any, dpop: { algorithms: [ES256] } }'), keyOf('{ scheme: any }'));
  });
});

describe('nginx-conf: forward_client_cert', () => {
  test('is refused, naming the route and the option (NGINX cannot send an RFC 9440 Client-Cert)', () => {
    const config = parseConfig(yaml('https://as.example', 'http://127.0.0.1:3000', 8081).replace('  scope: read\n', '  scope: read\n  forward_client_cert: true\n'), { file: 'f.yaml', env: {} });
    assert.throws(() => nginxConf(config, { listen: { host: '127.0.0.1', port: 8080 } }), (e: unknown) => e instanceof NginxConfError && /routes: \/api: forward_client_cert/.test(e.message));
  });
});
