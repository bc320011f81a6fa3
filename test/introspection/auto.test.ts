/*
 * introspection_response: auto. One Accept header, and the answer read by the
 * content type that comes back. Against the real oidc-provider in each of its
 * answer forms (the development server's Curity-style JWT; plain RFC 7662
 * JSON; RFC 9701 signed), and against a scripted endpoint for the Keycloak
 * shape and for answers auto must refuse.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startDevAuthorizationServer, DEV_CLIENTS, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { AUTO_ACCEPT, AUTO_ACCEPT_UNSIGNED } from '../../src/introspection/dialects/auto.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call } from '../helpers/core.js';
import { signJwt, startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { activeAnswer, devIntrospect, devToken, newSignerKey, SCRIPTED_CLIENT, SCRIPTED_ISSUER, signAnswer, startScriptedJwks, verifyForwarded, type ScriptedKeys } from '../helpers/signed-answers.js';

const UNAVAILABLE = '{"code":"server_error","message":"Token validation is unavailable"}';

/** A gateway in front of `as` with introspection_response auto; `issuer`: configure the issuer (and so accept signed answers). */
function autoConfig(as: DevAuthorizationServer, api: EchoUpstream, opts: { issuer: boolean; path: string }): string {
  return `
  - path: ${opts.path}
    upstream: ${api.url}
    phantom_token:
      introspection_endpoint: ${as.introspectionEndpoint}
${opts.issuer ? `      issuer: ${as.issuer}\n      jwks_uri: ${as.jwksUri}\n` : ''}`;
}

describe('auto against oidc-provider in each of its answer forms', () => {
  let curity: DevAuthorizationServer; // the development server's phantom token answer (application/jwt)
  let plain: DevAuthorizationServer; // oidc-provider's own RFC 7662 JSON
  let signing: DevAuthorizationServer; // oidc-provider with jwtIntrospection (RFC 9701)
  let api: EchoUpstream;
  let gw: TestGateway;

  before(async () => {
    [curity, plain, signing] = await Promise.all([
      startDevAuthorizationServer({ port: 0 }),
      startDevAuthorizationServer({ port: 0, phantomAnswer: false }),
      startDevAuthorizationServer({ port: 0, phantomAnswer: false, features: { jwtIntrospection: { enabled: true } } }),
    ]);
    api = await startEchoUpstream();
    gw = await startGateway(`
phantom_token:
  introspection_response: auto
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  scope: read
minting:
  issuer: https://gateway.test
routes:
${autoConfig(curity, api, { issuer: false, path: '/curity' })}
${autoConfig(plain, api, { issuer: true, path: '/plain' })}
${autoConfig(signing, api, { issuer: true, path: '/signed' })}
${autoConfig(signing, api, { issuer: false, path: '/signed-unverifiable' })}
  - path: /signed-other-keys
    upstream: ${api.url}
    phantom_token:
      introspection_endpoint: ${signing.introspectionEndpoint}
      issuer: ${signing.issuer}
      jwks_uri: ${plain.jwksUri}
`);
  });
  after(async () => {
    await gw?.close();
    await api?.close();
    await Promise.all([curity?.close(), plain?.close(), signing?.close()]);
  });

  test('the Curity-style answer (application/jwt): the server JWT is forwarded as it came, nothing minted', async () => {
    const token = await devToken(curity);
    const before = curity.stats.jwtIntrospections;
    const r = await call(`${gw.url}/curity/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    assert.equal(curity.stats.jwtIntrospections, before + 1);
    const auth = String(api.received.at(-1)!.headers.authorization);
    const { payload } = await jwtVerify(auth.slice('Bearer '.length), createRemoteJWKSet(new URL(curity.jwksUri)), { issuer: curity.issuer });
    assert.equal(payload.client_id, DEV_CLIENTS.client.id);
  });

  test('plain RFC 7662 JSON: the gateway mints, the JWT verifies against its JWKS, exp no later than the token', async () => {
    const token = await devToken(plain);
    const truth = await devIntrospect(plain, token);
    const r = await call(`${gw.url}/plain/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    const { payload } = await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
    assert.equal(payload.iss, 'https://gateway.test');
    assert.equal(payload.client_id, DEV_CLIENTS.client.id);
    assert.ok(payload.exp! <= (truth.exp as number));
  });

  test('RFC 9701 signed (issuer configured): verified, then minted', async () => {
    const token = await devToken(signing);
    const truth = await devIntrospect(signing, token);
    const r = await call(`${gw.url}/signed/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    const { payload } = await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
    assert.equal(payload.client_id, DEV_CLIENTS.client.id);
    assert.ok(payload.exp! <= (truth.exp as number));
    // The answer was signed, and checked: against another server's keys it is refused.
    const r2 = await call(`${gw.url}/signed-other-keys/x`, `Bearer ${token}`);
    assert.equal(r2.status, 502);
    assert.equal(r2.body, UNAVAILABLE);
  });

  test('a server that can sign, no issuer configured: the Accept header prefers JSON, and the answer is minted from it', async () => {
    const token = await devToken(signing);
    const r = await call(`${gw.url}/signed-unverifiable/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
  });

  test('an inactive token in each form: 401', async () => {
    for (const path of ['/curity', '/plain', '/signed', '/signed-unverifiable']) {
      const r = await call(`${gw.url}${path}/x`, 'Bearer never-issued-by-the-server');
      assert.equal(r.status, 401, path);
    }
  });
});

describe('auto: scripted answers', () => {
  let as: ScriptedIntrospection;
  let jwks: ScriptedKeys;
  let api: EchoUpstream;
  let gw: TestGateway;
  let serial = 0;
  const fresh = () => `scripted-auto-${++serial}`;

  before(async () => {
    as = await startScriptedIntrospection();
    jwks = await startScriptedJwks();
    api = await startEchoUpstream();
    gw = await startGateway(`
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  introspection_response: auto
  client_id: ${SCRIPTED_CLIENT}
  client_secret: s3cret
minting:
  issuer: https://gateway.test
routes:
  - path: /api
    upstream: ${api.url}
  - path: /verified
    upstream: ${api.url}
    phantom_token:
      issuer: ${SCRIPTED_ISSUER}
      jwks_uri: ${jwks.jwksUri}
`);
  });
  after(async () => {
    await gw?.close();
    await Promise.all([as?.close(), jwks?.close(), api?.close()]);
  });

  test('the Accept header lists the three forms; signed answers rank below JSON when they cannot be verified', async () => {
    const t1 = fresh();
    const t2 = fresh();
    await call(`${gw.url}/api/x`, `Bearer ${t1}`);
    await call(`${gw.url}/verified/x`, `Bearer ${t2}`);
    assert.equal(as.calls.find((c) => c.token === t1)!.headers.accept, AUTO_ACCEPT_UNSIGNED);
    assert.equal(as.calls.find((c) => c.token === t2)!.headers.accept, AUTO_ACCEPT);
  });

  test('Keycloak shape (JSON with a jwt member): the jwt member is forwarded as it came', async () => {
    const token = fresh();
    const jwt = await signJwt({ sub: 'kc-user' });
    as.answers.set(token, { status: 200, body: JSON.stringify({ active: true, sub: 'kc-user', jwt }), headers: { 'content-type': 'application/json' } });
    const r = await call(`${gw.url}/api/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    assert.equal(api.received.at(-1)!.headers.authorization, `Bearer ${jwt}`);
  });

  test('JSON active false: 401', async () => {
    const token = fresh();
    as.answers.set(token, { status: 200, body: '{"active":false}', headers: { 'content-type': 'application/json; charset=utf-8' } });
    assert.equal((await call(`${gw.url}/api/x`, `Bearer ${token}`)).status, 401);
  });

  test('a signed answer on a route without an issuer: 502 with a warning saying what to configure', async () => {
    const key = await newSignerKey('k');
    const token = fresh();
    as.answers.set(token, { status: 200, body: await signAnswer(activeAnswer('alice'), key), headers: { 'content-type': 'application/token-introspection+jwt' } });
    const mark = gw.logs.length;
    const r = await call(`${gw.url}/api/x`, `Bearer ${token}`);
    assert.equal(r.status, 502);
    assert.equal(r.body, UNAVAILABLE);
    assert.ok(gw.logs.slice(mark).some((l) => l.level === 'warn' && /set issuer/.test(String(l.msg))));
  });

  test('a signed answer labelled application/jwt (RFC 9701 drafts) is verified as one, never forwarded', async () => {
    const key = await newSignerKey('draft');
    jwks.published = [key.publicJwk];
    const good = fresh();
    as.answers.set(good, { status: 200, body: await signAnswer(activeAnswer('alice'), key), headers: { 'content-type': 'application/jwt' } });
    const r = await call(`${gw.url}/verified/x`, `Bearer ${good}`);
    assert.equal(r.status, 200, r.body);
    const { payload, jwt } = await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
    assert.equal(payload.sub, 'alice');
    assert.notEqual(jwt, as.answers.get(good) && (as.answers.get(good) as { body: string }).body);
    const forged = fresh();
    as.answers.set(forged, { status: 200, body: await signAnswer(activeAnswer('alice'), await newSignerKey('draft')), headers: { 'content-type': 'application/jwt' } });
    assert.equal((await call(`${gw.url}/verified/x`, `Bearer ${forged}`)).status, 502);
  });

  test('an answer without a content type, or of another type: 502', async () => {
    const types: Array<Record<string, string>> = [{}, { 'content-type': 'text/plain' }, { 'content-type': 'text/html' }];
    for (const headers of types) {
      const token = fresh();
      as.answers.set(token, { status: 200, body: JSON.stringify(activeAnswer('alice')), headers });
      const r = await call(`${gw.url}/api/x`, `Bearer ${token}`);
      assert.equal(r.status, 502, JSON.stringify(headers));
    }
  });
});
