/*
 * The Express middleware and the Fastify plugin with sender-constrained
 * tokens where only the app's own server can tell: a client certificate on
 * the app's TLS connection (RFC 8705), and the URL the client addressed
 * (htu) as the framework reads it, following its own proxy trust. Real apps
 * over HTTPS with a test PKI; scripted introspection (JWTs with cnf).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { Agent, request } from 'undici';
import { createLogger } from '../../src/observability/logger.js';
import { phantomToken as expressPhantomToken } from '../../src/middleware/express.js';
import { phantomToken as fastifyPhantomToken } from '../../src/middleware/fastify.js';
import { makeTestPki, type TestPki } from '../client-auth/certs.js';
import { dpopClient, dpopProof, x5tS256, type DpopClient } from '../frontdoors/dpop.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { middlewareConfig } from './apps.js';

interface App {
  url: string;
  port: number;
  close(): Promise<void>;
}

const EXTRA = `
  - path: /dpop
    phantom_token: { scheme: DPoP }
`;

/** Echoes what the handler was given: Authorization, DPoP, X-DPoP-Verified. */
const seen = (h: Record<string, string | string[] | undefined>) => ({ authorization: h.authorization, dpop: h.dpop, verified: h['x-dpop-verified'] });

async function expressApp(as: ScriptedIntrospection, pki: TestPki | undefined, trustProxy: boolean): Promise<App> {
  const app = express();
  if (trustProxy) app.set('trust proxy', 'loopback');
  const mw = expressPhantomToken({ config: middlewareConfig(as.url, EXTRA), logger: createLogger('silent') });
  app.use(mw);
  app.all('/{*rest}', (req, res) => res.json(seen(req.headers)));
  let server: Server | import('node:http').Server;
  if (pki !== undefined) {
    server = createHttpsServer({ cert: pki.server.cert, key: pki.server.key, requestCert: true, rejectUnauthorized: false }, app);
    server.listen(0, '127.0.0.1');
  } else {
    server = app.listen(0, '127.0.0.1');
  }
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `${pki ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await mw.close();
    },
  };
}

async function fastifyApp(as: ScriptedIntrospection, pki: TestPki | undefined, trustProxy: boolean): Promise<App> {
  const app: FastifyInstance = (
    pki === undefined
      ? Fastify({ trustProxy })
      : Fastify({ trustProxy, https: { cert: pki.server.cert, key: pki.server.key, requestCert: true, rejectUnauthorized: false } })
  ) as FastifyInstance;
  await app.register(fastifyPhantomToken, { config: middlewareConfig(as.url, EXTRA), logger: createLogger('silent') });
  app.all('/*', async (request) => seen(request.headers));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `${pki ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    close: async () => {
      app.server.closeAllConnections();
      await app.close();
    },
  };
}

for (const [name, start] of [['Express middleware', expressApp], ['Fastify plugin', fastifyApp]] as const) {
  describe(`${name}: sender-constrained tokens`, () => {
    let as: ScriptedIntrospection;
    let pki: TestPki;
    let key: DpopClient;
    let tls: App;
    let trusting: App;
    let plain: App;
    let withCert: Agent;
    let withoutCert: Agent;
    let n = 0;

    before(async () => {
      as = await startScriptedIntrospection();
      pki = makeTestPki(`mw-${name}`);
      key = await dpopClient();
      tls = await start(as, pki, false);
      trusting = await start(as, undefined, true);
      plain = await start(as, undefined, false);
      withCert = new Agent({ connect: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key } });
      withoutCert = new Agent({ connect: { ca: pki.ca } });
    });
    after(async () => {
      await withCert?.close();
      await withoutCert?.close();
      await tls?.close();
      await trusting?.close();
      await plain?.close();
      await as?.close();
      pki?.cleanup();
    });

    test('a certificate-bound token (scripted cnf x5t#S256) over the app\'s TLS: allowed with that certificate, 401 invalid_token without', async () => {
      const t = `mw-mtls-${name.length}-${++n}`;
      const jwt = await as.activate(t, { scope: 'read', cnf: { 'x5t#S256': x5tS256(pki.client.cert) } });
      const ok = await request(`${tls.url}/api/x`, { dispatcher: withCert, headers: { authorization: `Bearer ${t}` } });
      assert.equal(ok.statusCode, 200);
      assert.equal(((await ok.body.json()) as { authorization: string }).authorization, `Bearer ${jwt}`);
      const no = await request(`${tls.url}/api/x`, { dispatcher: withoutCert, headers: { authorization: `Bearer ${t}` } });
      assert.equal(no.statusCode, 401);
      assert.equal(no.headers['www-authenticate'], 'Bearer error="invalid_token"');
      await no.body.dump();
      // A header is never a certificate to the middleware.
      const header = await request(`${tls.url}/api/x`, { dispatcher: withoutCert, headers: { authorization: `Bearer ${t}`, 'client-cert': `:${Buffer.from('x').toString('base64')}:` } });
      assert.equal(header.statusCode, 401);
      await header.body.dump();
    });

    test('DPoP: the handler gets DPoP <jwt>, the proof and X-DPoP-Verified; htu is the scheme and host the framework reads (X-Forwarded-* only behind a trusted proxy)', async () => {
      const t = `mw-dpop-${name.length}-${++n}`;
      const jwt = await as.activate(t, { scope: 'read', cnf: { jkt: key.jkt } });
      const forwardedHeaders = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' };
      // Behind a trusted proxy: the public URL.
      const proof = await dpopProof(key, 'GET', 'https://api.example.com/dpop/x', t);
      const ok = await request(`${trusting.url}/dpop/x?q=1`, { headers: { authorization: `DPoP ${t}`, dpop: proof, 'x-dpop-verified': 'forged', ...forwardedHeaders } });
      assert.equal(ok.statusCode, 200);
      assert.deepEqual(await ok.body.json(), { authorization: `DPoP ${jwt}`, dpop: proof, verified: key.jkt });
      // Without trust, the same headers are the client's own: the proof for the public URL is refused...
      const refused = await request(`${plain.url}/dpop/x`, { headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(key, 'GET', 'https://api.example.com/dpop/x', t), ...forwardedHeaders } });
      assert.equal(refused.statusCode, 401);
      assert.match(String(refused.headers['www-authenticate']), /^DPoP error="invalid_dpop_proof"/);
      await refused.body.dump();
      // ...and one for the URL the client really addressed is allowed.
      const direct = await request(`${plain.url}/dpop/x`, { headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(key, 'GET', `${plain.url}/dpop/x`, t), ...forwardedHeaders } });
      assert.equal(direct.statusCode, 200);
      await direct.body.dump();
    });

    test('a Bearer allow: the handler sees neither a client\'s DPoP nor its X-DPoP-Verified', async () => {
      const t = `mw-bearer-${name.length}-${++n}`;
      await as.activate(t, { scope: 'read' });
      const res = await request(`${plain.url}/api/x`, { headers: { authorization: `Bearer ${t}`, dpop: 'a.b.c', 'x-dpop-verified': 'forged' } });
      assert.equal(res.statusCode, 200);
      const body = (await res.body.json()) as Record<string, unknown>;
      assert.equal(body.dpop, undefined);
      assert.equal(body.verified, undefined);
    });
  });
}
