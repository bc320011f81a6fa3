/*
 * Certificate-bound access tokens end to end (RFC 8705 §3) through the
 * standalone proxy: the real development authorization server, over https
 * with a test CA, binds a token to the TLS client certificate of its token
 * request (cnf["x5t#S256"]); the gateway's TLS listener asks clients for a
 * certificate and lets the token through only with that one. Behind a
 * trusted proxy the certificate comes in the RFC 9440 Client-Cert header.
 * Certificates are made with openssl at the start.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { decodeJwt } from 'jose';
import { Agent, request } from 'undici';
import { DEV_CLIENTS, startDevAuthorizationServer, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { makeTestPki, type Pair } from '../client-auth/certs.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { bearerToken, certBoundToken, certThumbprint, dpopBoundToken, dpopKey, proof } from '../helpers/dpop.js';

const pki = makeTestPki(DEV_CLIENTS.certificateBound.id);
const INVALID_TOKEN = 'Bearer error="invalid_token"';

/** RFC 9440 Client-Cert: the DER as a structured-field byte sequence. */
const clientCertHeader = (pair: Pair) => `:${Buffer.from(new X509Certificate(pair.cert).raw).toString('base64')}:`;

describe('certificate-bound tokens through the proxy (real oidc-provider over https, RFC 8705 §3)', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  /** TLS listener asking for client certificates; forwards the certificate in Client-Cert. */
  let gw: TestGateway;
  /** TLS listener that does not ask for one. */
  let noRequest: TestGateway;
  /** Plain http, trusting 127.0.0.1 (a TLS-terminating proxy in front sends Client-Cert). */
  let behind: TestGateway;
  /** Plain http, trusting nobody. */
  let untrusted: TestGateway;
  /** TLS asking for certificates, behind a trusted proxy that sets Client-Cert (trust_client_cert_header). */
  let tlsBehind: TestGateway;
  const agents: Agent[] = [];

  const agent = (pair?: Pair) => {
    const a = new Agent({ connect: { ca: pki.ca, ...(pair ? { cert: pair.cert, key: pair.key } : {}) } });
    agents.push(a);
    return a;
  };
  let withClient: Agent;
  let withOther: Agent;
  let withUntrusted: Agent;
  let withNone: Agent;

  const phantom = () => `phantom_token:
  introspection_endpoint: ${as.introspectionEndpoint}
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  ca_file: ${pki.caFile}
  scope: read
`;
  const tlsListener = (requestCerts: boolean) => `listen:
  host: 127.0.0.1
  port: 0
  tls:
    cert_file: ${pki.server.certFile}
    key_file: ${pki.server.keyFile}
    request_client_certificates: ${requestCerts}
`;
  const routes = (forwardClientCert: boolean) => `routes:
  - path: /api
    upstream: ${api.url}
    phantom_token:
      forward_client_cert: ${forwardClientCert}
  - path: /plain
    upstream: ${api.url}
  - path: /dpop
    upstream: ${api.url}
    phantom_token:
      scheme: DPoP
`;

  before(async () => {
    as = await startDevAuthorizationServer({ port: 0, publicHost: '127.0.0.1', https: { key: pki.server.key, cert: pki.server.cert, ca: pki.ca } });
    api = await startEchoUpstream();
    gw = await startGateway(tlsListener(true) + phantom() + routes(true));
    noRequest = await startGateway(tlsListener(false) + phantom() + routes(false));
    behind = await startGateway(`trusted_proxies: [127.0.0.1]\ntrust_client_cert_header: true\n${phantom()}${routes(false)}`);
    untrusted = await startGateway(phantom() + routes(false));
    tlsBehind = await startGateway(`trusted_proxies: [127.0.0.1]\ntrust_client_cert_header: true\n${tlsListener(true)}${phantom()}${routes(false)}`);
    withClient = agent(pki.client);
    withOther = agent(pki.otherSubject);
    withUntrusted = agent(pki.untrusted);
    withNone = agent();
  });
  after(async () => {
    for (const a of agents) await a.close();
    for (const g of [gw, noRequest, behind, untrusted, tlsBehind]) await g?.close();
    await api?.close();
    await as?.close();
    pki.cleanup();
  });
  beforeEach(() => {
    api.received.length = 0;
  });

  async function call(g: TestGateway, path: string, token: string | undefined, dispatcher?: Agent, headers: Record<string, string> = {}) {
    const url = `${g.gateway.proto}://127.0.0.1:${g.port}${path}`;
    const res = await request(url, { headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...headers }, ...(dispatcher ? { dispatcher } : {}) });
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  }
  const lastCode = (g: TestGateway) => g.logs.findLast((l) => l.msg === 'request')?.code;

  function assertRefused(res: { status: number; headers: Record<string, unknown>; body: string }, what: string) {
    assert.equal(res.status, 401, `${what}: ${res.body}`);
    assert.equal(res.headers['www-authenticate'], INVALID_TOKEN, what);
    assert.equal(JSON.parse(res.body).code, 'unauthorized', what);
  }

  test('over the TLS listener with the certificate the token is bound to -> 200; the JWT carries cnf["x5t#S256"]', async () => {
    const token = await certBoundToken(as, pki);
    const res = await call(gw, '/api/items', token, withClient);
    assert.equal(res.status, 200, res.body);
    const seen = api.received[0]!.headers;
    const jwt = String(seen.authorization).replace(/^Bearer /, '');
    assert.deepEqual(decodeJwt(jwt).cnf, { 'x5t#S256': certThumbprint(pki.client.cert) });
  });

  test("behind a trusted proxy that sets Client-Cert, the certificate of the proxy's own TLS connection is not the client's", async () => {
    const token = await certBoundToken(as, pki);
    // The trusted proxy connects with the bound certificate but passes no Client-Cert: its client had none.
    assertRefused(await call(tlsBehind, '/api/items', token, withClient), "the proxy's own certificate");
    assert.equal(api.received.length, 0);
    // With the client's certificate in Client-Cert, over a connection without one: 200.
    const ok = await call(tlsBehind, '/api/items', token, withNone, { 'client-cert': clientCertHeader(pki.client) });
    assert.equal(ok.status, 200, ok.body);
  });

  test('another certificate from the same CA -> 401 invalid_token (ERR_TOKEN_CERTIFICATE_MISMATCH), nothing upstream', async () => {
    const token = await certBoundToken(as, pki);
    assertRefused(await call(gw, '/api/items', token, withOther), 'another certificate');
    assert.equal(lastCode(gw), 'ERR_TOKEN_CERTIFICATE_MISMATCH');
    assert.equal(api.received.length, 0);
  });

  test('the same subject under a CA nobody trusts (another thumbprint) -> 401', async () => {
    const token = await certBoundToken(as, pki);
    assertRefused(await call(gw, '/api/items', token, withUntrusted), 'same subject, other certificate');
    assert.equal(api.received.length, 0);
  });

  test('no certificate -> 401 invalid_token', async () => {
    const token = await certBoundToken(as, pki);
    assertRefused(await call(gw, '/api/items', token, withNone), 'no certificate');
    assert.equal(lastCode(gw), 'ERR_TOKEN_CERTIFICATE_MISMATCH');
    assert.equal(api.received.length, 0);
  });

  test('the binding is checked on cache hits too: one introspection, then the wrong certificate and none are refused', async () => {
    const token = await certBoundToken(as, pki);
    const before = as.stats.introspections;
    assert.equal((await call(gw, '/api/items', token, withClient)).status, 200);
    assert.equal((await call(gw, '/api/items', token, withClient)).status, 200);
    assertRefused(await call(gw, '/api/items', token, withOther), 'cache hit, another certificate');
    assertRefused(await call(gw, '/api/items', token, withNone), 'cache hit, no certificate');
    assert.equal(as.stats.introspections - before, 1);
    assert.equal(api.received.length, 2);
  });

  test('a TLS listener that does not ask for certificates: a bound token -> 401 even from the right client', async () => {
    const token = await certBoundToken(as, pki);
    assertRefused(await call(noRequest, '/api/items', token, withClient), 'not requested');
    assert.equal(api.received.length, 0);
  });

  test('an unbound token is unaffected: with or without a client certificate -> 200', async () => {
    const token = await bearerToken(as, 'read', pki.ca);
    assert.equal((await call(gw, '/api/items', token, withNone)).status, 200);
    assert.equal((await call(gw, '/api/items', token, withOther)).status, 200);
    assert.equal((await call(noRequest, '/api/items', token, withClient)).status, 200);
  });

  test('forward_client_cert: true -> the upstream gets Client-Cert: :<base64 DER>: of the verified connection; a client-sent Client-Cert never reaches it', async () => {
    const token = await certBoundToken(as, pki);
    const forged = clientCertHeader(pki.otherSubject);
    const res = await call(gw, '/api/items', token, withClient, { 'client-cert': forged, 'client-cert-chain': forged });
    assert.equal(res.status, 200, res.body);
    const seen = api.received[0]!.headers;
    assert.equal(seen['client-cert'], clientCertHeader(pki.client));
    assert.equal(seen['client-cert-chain'], undefined);

    // No certificate on the connection: nothing is forwarded, the client's own header neither.
    const bearer = await bearerToken(as, 'read', pki.ca);
    assert.equal((await call(gw, '/api/items', bearer, withNone, { 'client-cert': forged })).status, 200);
    assert.equal(api.received[1]!.headers['client-cert'], undefined);
  });

  test('forward_client_cert off (the default): no Client-Cert upstream, and a client\'s is stripped', async () => {
    const token = await certBoundToken(as, pki);
    const res = await call(noRequest, '/plain/items', await bearerToken(as, 'read', pki.ca), withClient, { 'client-cert': clientCertHeader(pki.client) });
    assert.equal(res.status, 200, res.body);
    assert.equal(api.received[0]!.headers['client-cert'], undefined);
    assert.equal((await call(gw, '/plain/items', token, withClient)).status, 200);
    assert.equal(api.received[1]!.headers['client-cert'], undefined, 'a route without forward_client_cert');
  });

  test('DPoP over the TLS listener: htu is https://; a proof for http:// is refused', async () => {
    const key = await dpopKey('ES256');
    const token = await dpopBoundToken(as, key, 'read', pki.ca);
    const url = `https://127.0.0.1:${gw.port}/dpop/items`;
    const dpopCall = async (htu: string) =>
      call(gw, '/dpop/items', undefined, withNone, { authorization: `DPoP ${token}`, dpop: await proof({ key, htm: 'GET', htu, accessToken: token }) });
    const ok = await dpopCall(url);
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(decodeJwt(String(api.received[0]!.headers.authorization).replace(/^DPoP /, '')).cnf, { jkt: key.jkt });
    const http = await dpopCall(url.replace('https:', 'http:'));
    assert.equal(http.status, 401);
    assert.match(String(http.headers['www-authenticate']), /^DPoP error="invalid_dpop_proof"/);
    assert.equal(api.received.length, 1);
  });

  describe('behind a TLS-terminating proxy (RFC 9440 Client-Cert)', () => {
    test('from a trusted peer: Client-Cert with the bound certificate -> 200; another -> 401; none -> 401', async () => {
      const token = await certBoundToken(as, pki);
      assert.equal((await call(behind, '/api/items', token, undefined, { 'client-cert': clientCertHeader(pki.client) })).status, 200);
      assertRefused(await call(behind, '/api/items', token, undefined, { 'client-cert': clientCertHeader(pki.otherSubject) }), 'another certificate in Client-Cert');
      assertRefused(await call(behind, '/api/items', token), 'no Client-Cert');
      assert.equal(api.received.length, 1);
      assert.equal(api.received[0]!.headers['client-cert'], undefined, 'not forwarded without forward_client_cert');
    });

    test('from a trusted peer: NGINX\'s $ssl_client_escaped_cert (URL-encoded PEM) -> 200', async () => {
      const token = await certBoundToken(as, pki);
      const res = await call(behind, '/api/items', token, undefined, { 'client-cert': encodeURIComponent(pki.client.cert.toString('utf8')) });
      assert.equal(res.status, 200, res.body);
    });

    test('from a peer that is not trusted: its Client-Cert is ignored -> 401', async () => {
      const token = await certBoundToken(as, pki);
      assertRefused(await call(untrusted, '/api/items', token, undefined, { 'client-cert': clientCertHeader(pki.client) }), 'Client-Cert from an untrusted peer');
      assert.equal(api.received.length, 0);
    });
  });
});
