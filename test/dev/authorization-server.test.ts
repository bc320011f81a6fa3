/*
 * The development authorization server issues sender-constrained tokens
 * (real oidc-provider): DPoP-bound to the key of a proof sent to its token
 * endpoint, certificate-bound to the TLS client certificate of the token
 * request; both its own RFC 7662 JSON and the Curity-style JWT answer carry
 * the binding in `cnf`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { Agent, request } from 'undici';
import { DEV_CLIENTS, startDevAuthorizationServer, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { makeTestPki } from '../client-auth/certs.js';
import { bearerToken, certBoundToken, certThumbprint, dpopBoundToken, dpopKey, proof } from '../helpers/dpop.js';

const basic = `Basic ${Buffer.from(`${DEV_CLIENTS.introspection.id}:${DEV_CLIENTS.introspection.secret}`).toString('base64')}`;

async function introspect(as: DevAuthorizationServer, token: string, accept: string, dispatcher?: Agent) {
  const res = await request(as.introspectionEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic, accept },
    body: new URLSearchParams({ token }).toString(),
    ...(dispatcher ? { dispatcher } : {}),
  });
  const text = await res.body.text();
  assert.equal(res.statusCode, 200, text);
  return accept === 'application/jwt' ? (decodeJwt(text) as Record<string, any>) : (JSON.parse(text) as Record<string, any>);
}

describe('dev authorization server: DPoP-bound tokens (real oidc-provider)', () => {
  let as: DevAuthorizationServer;
  before(async () => {
    as = await startDevAuthorizationServer({ port: 0 });
  });
  after(() => as.close());

  for (const alg of ['ES256', 'EdDSA', 'PS256', 'RS256']) {
    test(`a token request with a ${alg} proof gets a DPoP token; JSON and JWT introspection carry cnf.jkt = the key's thumbprint`, async () => {
      const key = await dpopKey(alg);
      const token = await dpopBoundToken(as, key);
      const json = await introspect(as, token, 'application/json');
      assert.equal(json.active, true);
      assert.equal(json.token_type, 'DPoP');
      assert.deepEqual(json.cnf, { jkt: key.jkt });
      const jwt = await introspect(as, token, 'application/jwt');
      assert.deepEqual(jwt.cnf, { jkt: key.jkt });
      assert.equal(jwt.scope, 'read');
    });
  }

  test('a token request without a proof still gets a bearer token, with no cnf', async () => {
    const token = await bearerToken(as);
    assert.equal((await introspect(as, token, 'application/json')).cnf, undefined);
    assert.equal((await introspect(as, token, 'application/jwt')).cnf, undefined);
  });

  test('the token endpoint checks the proof: one for another URL is refused', async () => {
    const key = await dpopKey();
    const res = await request(as.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await proof({ key, htm: 'POST', htu: `${as.issuer}/elsewhere` }) },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret }).toString(),
    });
    const body = (await res.body.json()) as { error: string };
    assert.equal(res.statusCode, 400);
    assert.equal(body.error, 'invalid_dpop_proof');
  });
});

describe('dev authorization server over https with a CA: certificate-bound tokens (real oidc-provider)', () => {
  const pki = makeTestPki('certificate-bound-client');
  let as: DevAuthorizationServer;
  let trusting: Agent;
  before(async () => {
    as = await startDevAuthorizationServer({ port: 0, https: { key: pki.server.key, cert: pki.server.cert, ca: pki.ca } });
    trusting = new Agent({ connect: { ca: pki.ca } });
  });
  after(async () => {
    await trusting.close();
    await as.close();
    pki.cleanup();
  });

  test('a token request over mTLS gets a token bound to that certificate: cnf["x5t#S256"] in JSON and JWT introspection', async () => {
    const token = await certBoundToken(as, pki);
    const expected = certThumbprint(pki.client.cert);
    assert.deepEqual((await introspect(as, token, 'application/json', trusting)).cnf, { 'x5t#S256': expected });
    assert.deepEqual((await introspect(as, token, 'application/jwt', trusting)).cnf, { 'x5t#S256': expected });
    const other = await certBoundToken(as, pki, pki.otherSubject);
    assert.deepEqual((await introspect(as, other, 'application/jwt', trusting)).cnf, { 'x5t#S256': certThumbprint(pki.otherSubject.cert) });
  });

  test('the certificate-bound client without a certificate is refused a token', async () => {
    const res = await request(as.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: DEV_CLIENTS.certificateBound.id, client_secret: DEV_CLIENTS.certificateBound.secret }).toString(),
      dispatcher: trusting,
    });
    const body = (await res.body.json()) as { error: string };
    assert.equal(res.statusCode, 400);
    assert.equal(body.error, 'invalid_grant');
  });

  test('the tutorial client over the same server still gets an unbound token', async () => {
    const res = await request(as.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret, scope: 'read' }).toString(),
      dispatcher: trusting,
    });
    const { access_token } = (await res.body.json()) as { access_token: string };
    assert.equal((await introspect(as, access_token, 'application/jwt', trusting)).cnf, undefined);
  });
});
