/*
 * tls_client_auth (RFC 8705 §2.1) against the real oidc-provider over https,
 * asking for client certificates and matching the registered subject DN;
 * the gateway trusts the server through ca_file. Certificates are made with
 * openssl at the start.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer } from 'node:https';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { request } from 'undici';
import { DEV_CLIENTS, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { makeTestPki } from './certs.js';
import { methodSuite } from './method.case.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { accessLog, callApi, clientCredentialsToken, introspectionWarnings, startAs, startGatewayFor, type Stack } from './peers.js';

const SUBJECT = `CN=${DEV_CLIENTS.introspection.id}`;
const pki = makeTestPki(DEV_CLIENTS.introspection.id);
after(() => pki.cleanup());

type Ctx = { socket: TLSSocket };
function peerCertificate(ctx: Ctx): X509Certificate | undefined {
  const raw = ctx.socket.getPeerCertificate?.(false)?.raw;
  return raw === undefined ? undefined : new X509Certificate(raw);
}

/** The https server asks for a client certificate; oidc-provider's mTLS feature decides what it is worth. */
const startMtlsAs = () =>
  startAs({
    https: { key: pki.server.key, cert: pki.server.cert, ca: pki.ca },
    introspectionClient: { token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: SUBJECT, client_secret: undefined },
    features: {
      mTLS: {
        enabled: true,
        tlsClientAuth: true,
        getCertificate: (ctx: Ctx) => peerCertificate(ctx),
        certificateAuthorized: (ctx: Ctx) => ctx.socket.authorized === true,
        certificateSubjectMatches: (ctx: Ctx, property: string, expected: string) =>
          property === 'tls_client_auth_subject_dn' && peerCertificate(ctx)?.subject === expected,
      },
    },
  });

const phantom = (as: DevAuthorizationServer, pair: { certFile: string; keyFile: string }) => `  introspection_endpoint: ${as.introspectionEndpoint}
  introspection_response: json
  client_auth_method: tls_client_auth
  client_cert_file: ${pair.certFile}
  client_key_file: ${pair.keyFile}
  ca_file: ${pki.caFile}`;

methodSuite({
  name: 'tls_client_auth, json (real oidc-provider over https, client certificate checked)',
  method: 'tls_client_auth',
  startAs: startMtlsAs,
  accepted: (as) => phantom(as, pki.client),
  // A certificate from the trusted CA, for another subject.
  refused: (as) => phantom(as, pki.otherSubject),
  secrets: [pki.client.key.toString('utf8').split('\n')[1]!, pki.otherSubject.key.toString('utf8').split('\n')[1]!],
  ca: pki.ca,
  tokenClientId: DEV_CLIENTS.client.id,
  mints: true,
});

describe('tls_client_auth: certificates the server does not accept (real oidc-provider over https)', () => {
  let as: DevAuthorizationServer;
  let untrusted: Stack;
  let secretPost: Stack;
  before(async () => {
    as = await startMtlsAs();
    untrusted = await startGatewayFor(as, phantom(as, pki.untrusted));
    // No certificate at all: the right client, but not the method it registered.
    secretPost = await startGatewayFor(
      as,
      `  introspection_endpoint: ${as.introspectionEndpoint}\n  introspection_response: json\n  client_auth_method: client_secret_post\n  client_secret: ${DEV_CLIENTS.introspection.secret}\n  ca_file: ${pki.caFile}`,
    );
  });
  after(async () => {
    await Promise.allSettled([untrusted?.close(), secretPost?.close()]);
    await as?.close();
  });

  test('the registered subject under a CA the server does not trust: 502 with the tls_client_auth hint', async () => {
    const { token } = await clientCredentialsToken(as, pki.ca);
    const res = await callApi(untrusted, token);
    assert.equal(res.status, 502);
    assert.equal(accessLog(untrusted).at(-1)?.code, 'ERR_INTROSPECTION_REJECTED');
    const [warning] = introspectionWarnings(untrusted);
    assert.equal(warning?.status, 401);
    assert.match(String(warning?.msg), /client_cert_file.*\(tls_client_auth\)$/);
  });

  test('no client certificate: 502, never a pass', async () => {
    const { token } = await clientCredentialsToken(as, pki.ca);
    const res = await callApi(secretPost, token);
    assert.equal(res.status, 502);
    assert.equal(accessLog(secretPost).at(-1)?.code, 'ERR_INTROSPECTION_REJECTED');
    assert.equal(secretPost.api.received.length, 0);
  });
});

describe('tls_client_auth: a server that refuses the certificate in the handshake (scripted https endpoint)', () => {
  let server: Server;
  let port = 0;
  let api: EchoUpstream;
  let gw: TestGateway;
  before(async () => {
    // Like NGINX with ssl_verify_client on: no HTTP answer for a certificate it does not trust.
    server = createHttpsServer({ key: pki.server.key, cert: pki.server.cert, ca: pki.ca, requestCert: true, rejectUnauthorized: true }, (_req, res) => {
      res.writeHead(204).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
    api = await startEchoUpstream();
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: https://127.0.0.1:${port}/introspect
  client_id: ${DEV_CLIENTS.introspection.id}
  client_auth_method: tls_client_auth
  client_cert_file: ${pki.untrusted.certFile}
  client_key_file: ${pki.untrusted.keyFile}
  ca_file: ${pki.caFile}
routes:
  - path: /api
    upstream: ${api.url}
`);
  });
  after(async () => {
    await Promise.allSettled([gw?.close(), api?.close()]);
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('502, and the warning says the client certificate may be why', async () => {
    const res = await request(`${gw.url}/api/x`, { headers: { authorization: 'Bearer some-token' } });
    await res.body.dump();
    assert.equal(res.statusCode, 502);
    const warning = gw.logs.find((l) => l.code === 'ERR_INTROSPECTION_UNREACHABLE' && l.msg !== 'request');
    assert.match(String(warning?.msg), /^introspection endpoint unreachable \([\w-]+\): if the server refuses the client certificate.*\(tls_client_auth\)$/);
    assert.equal(api.received.length, 0);
  });
});
