/*
 * A real Caddy (Debian's `caddy`) serving HTTPS and asking for client
 * certificates, in front of the forward-auth listener, as the README shows
 * it for sender-constrained tokens: the client's certificate passed on in
 * Client-Cert from Caddy's own TLS (a client's header replaced), DPoP and
 * X-DPoP-Verified copied from the decision. Scripted introspection (JWTs
 * with cnf), echo upstream.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Agent, request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { createLogger } from '../../src/observability/logger.js';
import { freePort, startCaddy, type RunningCaddy } from '../helpers/caddy.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { findProgram } from '../helpers/services.js';
import { makeTestPki, type TestPki } from '../client-auth/certs.js';
import { dpopClient, dpopProof, x5tS256, type DpopClient } from '../frontdoors/dpop.js';

const caddy = findProgram('caddy', 'caddy');

/** The README's Caddyfile for sender-constrained tokens, with this test's addresses. */
export function senderCaddyfile(o: { port: number; decisions: number; api: number; certFile: string; keyFile: string }): string {
  return `{
	auto_https off
	admin off
}
https://localhost:${o.port} {
	bind 127.0.0.1
	tls ${o.certFile} ${o.keyFile} {
		# Ask for a client certificate; a certificate-bound token names it by its thumbprint.
		client_auth {
			mode request
		}
	}
	route {
		forward_auth 127.0.0.1:${o.decisions} {
			uri /
			# The certificate of this TLS connection, never a header the client sent.
			header_up Client-Cert ":{http.request.tls.client.certificate_der_base64}:"
			header_up -Client-Cert-Chain
			copy_headers Authorization DPoP X-DPoP-Verified
		}
		# Caddy before 2.9 copies a header the decision lacks as its placeholder's text.
		@unset_authorization header_regexp Authorization ^\\{http\\.reverse_proxy\\.header\\.
		request_header @unset_authorization -Authorization
		@unset_dpop header_regexp DPoP ^\\{http\\.reverse_proxy\\.header\\.
		request_header @unset_dpop -DPoP
		@unset_verified header_regexp X-DPoP-Verified ^\\{http\\.reverse_proxy\\.header\\.
		request_header @unset_verified -X-DPoP-Verified
		request_header -Client-Cert
		request_header -Client-Cert-Chain
		reverse_proxy 127.0.0.1:${o.api}
	}
}
`;
}

describe('Caddy (HTTPS, client certificates requested) in front of the forward-auth listener: sender-constrained tokens', { skip: caddy.skip }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let listener: ForwardAuthListener;
  let running: RunningCaddy;
  let pki: TestPki;
  let key: DpopClient;
  let site: string;
  let host: string;
  let withCert: Agent;
  let withoutCert: Agent;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    pki = makeTestPki('caddy-mtls');
    key = await dpopClient();
    const config = parseConfig(
      `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: caddy
  client_secret: s3cret
  scope: read
routes:
  - path: /api
  - path: /dpop
    phantom_token: { scheme: DPoP }
forward_auth: { listen: { host: 127.0.0.1, port: 0 } }
trusted_proxies: [127.0.0.1]
trust_client_cert_header: true
log: { level: silent }
`,
      { file: 'caddy.yaml', env: {} },
    );
    listener = new ForwardAuthListener(config, { logger: createLogger('silent') });
    const decisions = await listener.listen(0, '127.0.0.1');
    const port = await freePort();
    running = await startCaddy(caddy.path!, senderCaddyfile({ port, decisions: decisions.port, api: api.port, certFile: pki.server.certFile, keyFile: pki.server.keyFile }));
    // Caddy asks for client certificates only with SNI, and holds Host to it: localhost, reached at 127.0.0.1.
    site = `https://127.0.0.1:${port}`;
    host = `localhost:${port}`;
    withCert = new Agent({ connect: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key, servername: 'localhost' } });
    withoutCert = new Agent({ connect: { ca: pki.ca, servername: 'localhost' } });
  });
  after(async () => {
    await withCert?.close();
    await withoutCert?.close();
    await running?.close();
    await listener?.close();
    await as?.close();
    await api?.close();
    pki?.cleanup();
  });
  beforeEach(() => {
    api.received.length = 0;
  });

  test('a certificate-bound token with its certificate: allowed; without, or with only a Client-Cert header of its own: 401 invalid_token', async () => {
    const jwt = await as.activate('caddy-mtls-1', { scope: 'read', cnf: { 'x5t#S256': x5tS256(pki.client.cert) } });
    const ok = await request(`${site}/api/x`, { dispatcher: withCert, headers: { host, authorization: 'Bearer caddy-mtls-1' } });
    assert.equal(ok.statusCode, 200);
    await ok.body.dump();
    assert.equal(api.received[0]!.headers.authorization, `Bearer ${jwt}`);
    assert.equal(api.received[0]!.headers['client-cert'], undefined);
    const forged = `:${new X509Certificate(pki.client.cert).raw.toString('base64')}:`;
    for (const headers of [{}, { 'client-cert': forged }]) {
      const no = await request(`${site}/api/x`, { dispatcher: withoutCert, headers: { host, authorization: 'Bearer caddy-mtls-1', ...headers } });
      assert.equal(no.statusCode, 401);
      assert.equal(no.headers['www-authenticate'], 'Bearer error="invalid_token"');
      await no.body.dump();
    }
  });

  test('DPoP: htu https://localhost:<port>/path as Caddy forwards it (X-Forwarded-Proto/-Host); the API gets DPoP <jwt>, the proof and X-DPoP-Verified', async () => {
    const jwt = await as.activate('caddy-dpop-1', { scope: 'read', cnf: { jkt: key.jkt } });
    const proof = await dpopProof(key, 'GET', `https://${host}/dpop/x`, 'caddy-dpop-1');
    const res = await request(`${site}/dpop/x?y=1`, { dispatcher: withoutCert, headers: { host, authorization: 'DPoP caddy-dpop-1', dpop: proof, 'x-dpop-verified': 'forged' } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const seen = api.received[0]!;
    assert.equal(seen.headers.authorization, `DPoP ${jwt}`);
    assert.equal(seen.headers.dpop, proof);
    assert.equal(seen.headers['x-dpop-verified'], key.jkt);
  });
});
