/*
 * Claim checks against the real oidc-provider (the development authorization
 * server) answering plain RFC 7662 JSON, the gateway minting: `audience` via
 * the `aud` oidc-provider gives tokens for a resource indicator (RFC 8707),
 * or the lack of one; `issuer`; a token shaped like a JWT (an ID token, say),
 * which oidc-provider refuses to introspect (400 unsupported_token_type);
 * and a revoked token. The introspections are counted by a plain forwarder
 * in front of the server.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { generateKeyPair, SignJWT } from 'jose';
import { request } from 'undici';
import { DEV_CLIENTS, DEV_ROUTES, startDevAuthorizationServer, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call } from '../helpers/core.js';
import { listen, startEchoUpstream, type EchoUpstream, type Started } from '../helpers/servers.js';
import { forwardedJwt, nowSeconds, signingKeyDir, verifyForwarded } from '../dialects/support.js';

const RESOURCE = 'https://api.example.com';
const INTROSPECTION_BASIC = `Basic ${Buffer.from(`${DEV_CLIENTS.introspection.id}:${DEV_CLIENTS.introspection.secret}`).toString('base64')}`;

/** A client-credentials access token from `as` (opaque), and when it expires. */
async function accessToken(as: DevAuthorizationServer, scope = 'read'): Promise<string> {
  const res = await request(as.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret, scope }).toString(),
  });
  assert.equal(res.statusCode, 200);
  const body = (await res.body.json()) as { access_token: string };
  return body.access_token;
}

/** What oidc-provider itself says about `token` (RFC 7662 JSON). */
async function introspectDirectly(as: DevAuthorizationServer, token: string): Promise<Record<string, unknown>> {
  const res = await request(as.introspectionEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: INTROSPECTION_BASIC },
    body: `token=${encodeURIComponent(token)}`,
  });
  return (await res.body.json()) as Record<string, unknown>;
}

/** Passes introspection calls on to `target` unchanged, counting them per token. */
async function countingForwarder(target: string): Promise<Started & { calls(token: string): number }> {
  const counts = new Map<string, number>();
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString();
    const token = new URLSearchParams(body).get('token') ?? '';
    counts.set(token, (counts.get(token) ?? 0) + 1);
    const headers: Record<string, string> = {};
    for (const h of ['authorization', 'accept', 'content-type']) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h];
    const up = await request(`${target}${req.url}`, { method: 'POST', headers, body });
    const out: Record<string, string> = {};
    for (const h of ['content-type', 'cache-control']) if (typeof up.headers[h] === 'string') out[h] = up.headers[h];
    res.writeHead(up.statusCode, out).end(Buffer.from(await up.body.arrayBuffer()));
  });
  const started = await listen(server);
  return Object.assign(started, { calls: (token: string) => counts.get(token) ?? 0 });
}

describe('claim checks against the real oidc-provider (json dialect, minted)', () => {
  let withAud: DevAuthorizationServer;
  let plain: DevAuthorizationServer;
  let fwd: Awaited<ReturnType<typeof countingForwarder>>;
  let api: EchoUpstream;
  let gw: TestGateway;
  const keyDir = signingKeyDir();

  before(async () => {
    // Tokens issued for one resource server carry it as aud (RFC 8707), stay opaque.
    withAud = await startDevAuthorizationServer({
      port: 0,
      features: {
        resourceIndicators: {
          enabled: true,
          defaultResource: () => RESOURCE,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({ scope: 'read write', audience: RESOURCE, accessTokenFormat: 'opaque' }),
        },
      },
    });
    plain = await startDevAuthorizationServer({ port: 0 });
    fwd = await countingForwarder(withAud.url);
    api = await startEchoUpstream();
    const client = `client_id: ${DEV_CLIENTS.introspection.id}\n  client_secret: ${DEV_CLIENTS.introspection.secret}`;
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: ${fwd.url}${DEV_ROUTES.introspection}
  issuer: ${withAud.issuer}
  ${client}
  introspection_response: json
  scope: read
minting:
  issuer: https://gateway.test
  signing_key_file: ${keyDir.keyFile}
  max_lifetime_seconds: 3600
routes:
  - path: /api
    upstream: ${api.url}
    phantom_token: { audience: ${RESOURCE} }
  - path: /other
    upstream: ${api.url}
    phantom_token: { audience: https://other.example.com }
  - path: /wrong-issuer
    upstream: ${api.url}
    phantom_token: { introspection_endpoint: ${fwd.url}${DEV_ROUTES.introspection}, issuer: https://elsewhere.example.com }
  - path: /plain-any
    upstream: ${api.url}
    phantom_token: { introspection_endpoint: ${plain.introspectionEndpoint}, issuer: ${plain.issuer} }
  - path: /plain-aud
    upstream: ${api.url}
    phantom_token: { introspection_endpoint: ${plain.introspectionEndpoint}, issuer: ${plain.issuer}, audience: ${RESOURCE} }
  - path: /uncached
    upstream: ${api.url}
    phantom_token: { audience: ${RESOURCE}, token_cache_seconds: 0 }
`);
  });
  after(async () => {
    await gw.close();
    await fwd.close();
    await withAud.close();
    await plain.close();
    await api.close();
    keyDir.remove();
  });

  test('the route\'s audience in the token\'s aud: the upstream gets a JWT minted from the answer, verifying against the gateway\'s JWKS, exp the token\'s', async () => {
    const token = await accessToken(withAud);
    const said = await introspectDirectly(withAud, token);
    assert.equal(said.aud, RESOURCE, 'oidc-provider puts the resource in aud');
    const r = await call(`${gw.url}/api/items`, `Bearer ${token}`);
    assert.equal(r.status, 200);
    const { payload, protectedHeader } = await verifyForwarded(forwardedJwt(api), gw.gateway.guards.jwks()!, said.exp as number, { issuer: 'https://gateway.test', typ: 'at+jwt' });
    assert.equal(payload.exp, said.exp, 'max_lifetime_seconds is above the token\'s lifetime: the token\'s exp');
    assert.equal(payload.aud, RESOURCE);
    assert.equal(payload.client_id, DEV_CLIENTS.client.id);
    assert.equal(payload.sub, DEV_CLIENTS.client.id, 'a client-credentials token\'s sub is its client (RFC 9068 §2.2)');
    assert.equal(payload.scope, 'read');
    assert.equal(protectedHeader.kid, gw.gateway.guards.jwks()!.keys[0]!.kid);
    assert.ok(!JSON.stringify(payload).includes(token), 'the opaque token is not in the JWT');
  });

  test('another audience: 401 invalid_token, nothing reaches the upstream', async () => {
    const token = await accessToken(withAud);
    const before = api.received.length;
    const r = await call(`${gw.url}/other/items`, `Bearer ${token}`);
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Bearer error="invalid_token"');
    assert.equal(api.received.length, before);
  });

  test('a token without aud (no resource indicator): allowed where no audience is required, 401 where one is', async () => {
    const token = await accessToken(plain);
    assert.equal((await introspectDirectly(plain, token)).aud, undefined);
    assert.equal((await call(`${gw.url}/plain-any/items`, `Bearer ${token}`)).status, 200);
    const minted = forwardedJwt(api);
    const { payload } = await verifyForwarded(minted, gw.gateway.guards.jwks()!, nowSeconds() + 900);
    assert.equal(payload.aud, undefined, 'no aud is made up');
    const before = api.received.length;
    assert.equal((await call(`${gw.url}/plain-aud/items`, `Bearer ${token}`)).status, 401);
    assert.equal(api.received.length, before);
  });

  test('issuer: oidc-provider\'s iss is its issuer; a route expecting another issuer refuses its tokens (401)', async () => {
    const token = await accessToken(withAud);
    assert.equal((await introspectDirectly(withAud, token)).iss, withAud.issuer);
    const r = await call(`${gw.url}/wrong-issuer/items`, `Bearer ${token}`);
    assert.equal(r.status, 401);
    assert.ok(gw.logs.some((l) => l.code === 'WARN_TOKEN_ISSUER'), 'the operator is told');
  });

  test('a token shaped like a JWT (an ID token presented as an access token): oidc-provider answers 400 unsupported_token_type; the client gets 401, remembered', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const idToken = await new SignJWT({ sub: 'alice', nonce: 'n' })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setIssuer(withAud.issuer)
      .setAudience(DEV_CLIENTS.client.id)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
    for (let i = 0; i < 2; i++) {
      const r = await call(`${gw.url}/api/items`, `Bearer ${idToken}`);
      assert.equal(r.status, 401, 'not 502: the token is the client\'s fault, not the server\'s');
      assert.equal(r.headers['www-authenticate'], 'Bearer error="invalid_token"');
    }
    assert.equal(fwd.calls(idToken), 1, 'the refusal is remembered like an inactive token');
  });

  test('oidc-provider sends Cache-Control: no-store on every answer: the minted token is cached all the same; token_cache_seconds bounds how long a revocation takes to count (0: at once)', async () => {
    const token = await accessToken(withAud);
    assert.equal((await call(`${gw.url}/api/items`, `Bearer ${token}`)).status, 200);
    assert.equal((await call(`${gw.url}/api/items`, `Bearer ${token}`)).status, 200);
    assert.equal(fwd.calls(token), 1, 'cached despite no-store');
    assert.equal((await call(`${gw.url}/uncached/items`, `Bearer ${token}`)).status, 200);
    assert.equal(fwd.calls(token), 2, 'token_cache_seconds: 0 keeps nothing');
    const revoked = await request(withAud.revocationEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret }).toString(),
    });
    assert.equal(revoked.statusCode, 200);
    await revoked.body.text();
    assert.equal((await call(`${gw.url}/api/items`, `Bearer ${token}`)).status, 200, 'the cached entry serves until it expires');
    const r = await call(`${gw.url}/uncached/items`, `Bearer ${token}`);
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Bearer error="invalid_token"');
  });

});
