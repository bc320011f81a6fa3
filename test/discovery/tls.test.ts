/*
 * Discovery and the server's JWKS are fetched with the route's TLS trust:
 * against oidc-provider over https with a self-signed certificate, issuer
 * only, RFC 9701 signed answers (so the metadata, the JWKS and the
 * introspection all cross TLS): `ca_file` works, `verify_ssl: false` works,
 * and the system's CAs alone fail closed (not ready, 503).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startDevAuthorizationServer, DEV_CLIENTS, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call } from '../helpers/core.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { verifyForwarded } from '../helpers/signed-answers.js';

describe('discovery and JWKS over https follow the route TLS settings', () => {
  let dir: string;
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  let gw: TestGateway;
  let token: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'phantom-discovery-tls-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    ], { stdio: 'ignore' });
    const cert = readFileSync(join(dir, 'cert.pem'));
    as = await startDevAuthorizationServer({
      port: 0,
      publicHost: '127.0.0.1',
      https: { key: readFileSync(join(dir, 'key.pem')), cert },
      features: { jwtIntrospection: { enabled: true } },
    });
    api = await startEchoUpstream();
    gw = await startGateway(`
phantom_token:
  issuer: ${as.issuer}
  introspection_response: token_introspection_jwt
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  timeout_ms: 2000
minting:
  issuer: https://gateway.test
routes:
  - path: /ca
    upstream: ${api.url}
    phantom_token:
      ca_file: ${join(dir, 'cert.pem')}
  - path: /unverified
    upstream: ${api.url}
    phantom_token:
      verify_ssl: false
  - path: /system-cas
    upstream: ${api.url}
`);
    const agent = new Agent({ connect: { ca: cert } });
    const res = await request(as.tokenEndpoint, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret, scope: 'read' }).toString(),
    });
    token = ((await res.body.json()) as { access_token: string }).access_token;
    await agent.close();
  });
  after(async () => {
    await gw?.close();
    await api?.close();
    await as?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('ca_file: metadata, JWKS and signed answer all verified; the upstream gets a minted JWT', async () => {
    const r = await call(`${gw.url}/ca/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
  });

  test('verify_ssl: false: works too', async () => {
    const r = await call(`${gw.url}/unverified/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
  });

  test('the system CAs alone do not trust the certificate: not ready, 503, nothing forwarded', async () => {
    const before = api.received.length;
    const r = await call(`${gw.url}/system-cas/x`, `Bearer ${token}`);
    assert.equal(r.status, 503, r.body);
    assert.equal(api.received.length, before);
    assert.ok(gw.logs.some((l) => l.code === 'ERR_INTROSPECTION_NOT_READY' && l.issuer === as.issuer));
  });
});
