/*
 * Sender-constrained tokens from the real development authorization server
 * (oidc-provider over https with a test CA: DPoP-bound tokens for a proof at
 * its token endpoint, certificate-bound ones for a token request over mTLS)
 * through the front doors that do not carry the request themselves: a real
 * NGINX running the generated configuration (its own TLS, asking for client
 * certificates) in front of the forward-auth listener, Envoy's gRPC check,
 * and the Express middleware.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { decodeJwt } from 'jose';
import express from 'express';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { DEV_CLIENTS, startDevAuthorizationServer, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { parseConfig } from '../../src/config/load.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { phantomToken } from '../../src/middleware/express.js';
import { createLogger } from '../../src/observability/logger.js';
import { makeTestPki } from '../client-auth/certs.js';
import { freePort } from '../helpers/cli.js';
import { certBoundToken, certThumbprint, dpopBoundToken, dpopKey, proof, type DpopKey } from '../helpers/dpop.js';
import { skip as nginxSkip, startGeneratedNginx, type NginxInstance } from '../helpers/nginx.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { envoyGrpcDoor } from '../forward-auth/envoy-grpc.door.js';

const pki = makeTestPki(DEV_CLIENTS.certificateBound.id);
const der = (pem: Buffer) => new X509Certificate(pem).raw;

const gatewayYaml = (as: DevAuthorizationServer, api: EchoUpstream, extra = '') => `
phantom_token:
  introspection_endpoint: ${as.introspectionEndpoint}
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  ca_file: ${pki.caFile}
  scope: read
routes:
  - path: /api
    upstream: ${api.url}
  - path: /dpop
    upstream: ${api.url}
    phantom_token: { scheme: DPoP }
  - path: /any
    upstream: ${api.url}
    phantom_token: { scheme: any }
trusted_proxies: [127.0.0.1]
trust_client_cert_header: true
log: { level: silent }
${extra}`;

describe('sender-constrained tokens from the real oidc-provider at the front doors', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  let key: DpopKey;

  before(async () => {
    as = await startDevAuthorizationServer({ port: 0, publicHost: '127.0.0.1', https: { key: pki.server.key, cert: pki.server.cert, ca: pki.ca } });
    api = await startEchoUpstream();
    key = await dpopKey('ES256');
  });
  after(async () => {
    await api?.close();
    await as?.close();
    pki.cleanup();
  });
  beforeEach(() => {
    api.received.length = 0;
  });

  describe('NGINX (generated, TLS asking for client certificates) + forward-auth listener', { skip: nginxSkip }, () => {
    let listener: ForwardAuthListener;
    let nginx: NginxInstance;
    let site: string;
    const agents: Agent[] = [];
    const agent = (withCert: boolean) => {
      const a = new Agent({ connect: { ca: pki.ca, ...(withCert ? { cert: pki.client.cert, key: pki.client.key } : {}) } });
      agents.push(a);
      return a;
    };

    before(async () => {
      const config = parseConfig(
        gatewayYaml(
          as,
          api,
          `forward_auth: { listen: { host: 127.0.0.1, port: ${await freePort()} } }
listen:
  host: 127.0.0.1
  port: 0
  tls: { cert_file: ${pki.server.certFile}, key_file: ${pki.server.keyFile}, request_client_certificates: true }
`,
        ),
        { file: 'real-as.yaml', env: {} },
      );
      listener = new ForwardAuthListener(config, { logger: createLogger('silent') });
      await listener.listen();
      const started = await startGeneratedNginx(config);
      nginx = started.instance;
      site = `https://127.0.0.1:${started.port}`;
    });
    after(async () => {
      for (const a of agents) await a.close();
      await nginx?.stop();
      await listener?.close();
    });

    test('a DPoP-bound token with a valid proof: 200, the API gets DPoP <jwt> (cnf.jkt), the proof and X-DPoP-Verified; a proof for another method: 401 invalid_dpop_proof', async () => {
      const token = await dpopBoundToken(as, key, 'read', pki.ca);
      const none = agent(false);
      const dpop = await proof({ key, htm: 'GET', htu: `${site}/dpop/items`, accessToken: token });
      const res = await request(`${site}/dpop/items?page=1`, { dispatcher: none, headers: { authorization: `DPoP ${token}`, dpop } });
      assert.equal(res.statusCode, 200, await res.body.text());
      const seen = api.received[0]!.headers;
      assert.deepEqual(decodeJwt(String(seen.authorization).replace(/^DPoP /, '')).cnf, { jkt: key.jkt });
      assert.equal(seen.dpop, dpop);
      assert.equal(seen['x-dpop-verified'], key.jkt);
      const post = await request(`${site}/dpop/items`, { dispatcher: none, headers: { authorization: `DPoP ${token}`, dpop: await proof({ key, htm: 'POST', htu: `${site}/dpop/items`, accessToken: token }) } });
      assert.equal(post.statusCode, 401);
      assert.equal(post.headers['www-authenticate'], 'DPoP error="invalid_dpop_proof", algs="ES256 EdDSA Ed25519 PS256 RS256"');
      assert.deepEqual(await post.body.json(), { code: 'unauthorized', message: 'Invalid DPoP proof' });
      // The same token as a bearer token (RFC 9449 §7.2).
      const downgrade = await request(`${site}/any/items`, { dispatcher: none, headers: { authorization: `Bearer ${token}` } });
      assert.equal(downgrade.statusCode, 401);
      assert.match(String(downgrade.headers['www-authenticate']), /^DPoP error="invalid_token"/);
      await downgrade.body.dump();
    });

    test('a certificate-bound token: 200 over NGINX\'s TLS with its certificate (cnf x5t#S256 in the JWT); 401 invalid_token without one', async () => {
      const token = await certBoundToken(as, pki);
      const ok = await request(`${site}/api/items`, { dispatcher: agent(true), headers: { authorization: `Bearer ${token}` } });
      assert.equal(ok.statusCode, 200, await ok.body.text());
      assert.deepEqual(decodeJwt(String(api.received[0]!.headers.authorization).replace(/^Bearer /, '')).cnf, { 'x5t#S256': certThumbprint(pki.client.cert) });
      const no = await request(`${site}/api/items`, { dispatcher: agent(false), headers: { authorization: `Bearer ${token}` } });
      assert.equal(no.statusCode, 401);
      assert.equal(no.headers['www-authenticate'], 'Bearer error="invalid_token"');
      await no.body.dump();
    });
  });

  describe('Envoy gRPC check', () => {
    let door: Awaited<ReturnType<typeof envoyGrpcDoor.start>>;
    before(async () => {
      door = await envoyGrpcDoor.start(gatewayYaml(as, api));
    });
    after(async () => {
      await door?.close();
    });

    test('a DPoP-bound token: allowed with a proof for http://<:authority>/path; a certificate-bound one with attributes.source.certificate only', async () => {
      const token = await dpopBoundToken(as, key, 'read', pki.ca);
      const dpop = await proof({ key, htm: 'GET', htu: `${door.origin}/dpop/x`, accessToken: token });
      const ok = await door.call({ target: '/dpop/x', authorization: `DPoP ${token}`, dpop: [dpop] });
      assert.equal(ok.status, 200);
      assert.match(String(ok.forwarded), /^DPoP /);
      assert.equal(ok.dpopVerified, key.jkt);
      const bound = await certBoundToken(as, pki);
      assert.equal((await door.call({ target: '/api/x', authorization: `Bearer ${bound}`, clientCert: der(pki.client.cert) })).status, 200);
      const without = await door.call({ target: '/api/x', authorization: `Bearer ${bound}` });
      assert.equal(without.status, 401);
      assert.equal(without.challenge, 'Bearer error="invalid_token"');
    });
  });

  describe('Express middleware', () => {
    let server: Server;
    let url: string;
    let close: () => Promise<void>;
    before(async () => {
      const app = express();
      const mw = phantomToken({ config: parseConfig(gatewayYaml(as, api), { file: 'mw.yaml', env: {}, proxy: false }), logger: createLogger('silent') });
      app.use(mw);
      app.all('/{*rest}', (req, res) => res.json({ authorization: req.headers.authorization, dpop: req.headers.dpop, verified: req.headers['x-dpop-verified'] }));
      server = app.listen(0, '127.0.0.1');
      await once(server, 'listening');
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      close = async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await mw.close();
      };
    });
    after(async () => {
      await close?.();
    });

    test('a DPoP-bound token with a valid proof: the handler gets DPoP <jwt>, the proof and X-DPoP-Verified; the proof again: 401', async () => {
      const token = await dpopBoundToken(as, key, 'read', pki.ca);
      const dpop = await proof({ key, htm: 'GET', htu: `${url}/dpop/x`, accessToken: token });
      const res = await request(`${url}/dpop/x`, { headers: { authorization: `DPoP ${token}`, dpop } });
      assert.equal(res.statusCode, 200);
      const body = (await res.body.json()) as { authorization: string; dpop: string; verified: string };
      assert.deepEqual(decodeJwt(body.authorization.replace(/^DPoP /, '')).cnf, { jkt: key.jkt });
      assert.equal(body.dpop, dpop);
      assert.equal(body.verified, key.jkt);
      const again = await request(`${url}/dpop/x`, { headers: { authorization: `DPoP ${token}`, dpop } });
      assert.equal(again.statusCode, 401);
      assert.match(String(again.headers['www-authenticate']), /^DPoP error="invalid_dpop_proof"/);
      await again.body.dump();
    });
  });
});
