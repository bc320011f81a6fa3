/*
 * The route guard's DPoP and binding rules through the standalone proxy,
 * with a SCRIPTED introspection endpoint (its JWTs carry whatever `cnf` a
 * test needs) and real proofs made with jose: the scheme, the proof checked
 * on every request (cache hits included), the binding, the challenges, what
 * reaches the upstream, and server nonces.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { suiteStack } from '../helpers/gateway.js';
import { dpopKey, proofFor as proof, type DpopKey as Key } from '../helpers/dpop.js';

const ALGS = 'algs="ES256 EdDSA Ed25519 PS256 RS256"';

describe('DPoP at the proxy (scripted introspection)', () => {
  const s = suiteStack(
    (as, api) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
routes:
  - path: /api
    upstream: ${api.url}
  - path: /bearer-out
    upstream: ${api.url}
    phantom_token:
      dpop: { forward: bearer }
  - path: /any
    upstream: ${api.url}
    phantom_token:
      scheme: any
  - path: /plain
    upstream: ${api.url}
    phantom_token:
      scheme: Bearer
  - path: /nonce
    upstream: ${api.url}
    phantom_token:
      dpop: { nonce: true }
`,
  );
  let key: Key;
  let other: Key;
  const TOKEN = 'dpop-bound-token';

  test('a valid proof: 200, the upstream gets DPoP <jwt>, the proof and X-DPoP-Verified; the next proof is checked on the cache hit', async () => {
    key = await dpopKey();
    other = await dpopKey();
    await s.as.activate(TOKEN, { cnf: { jkt: key.jkt } });
    const url = `${s.gw.url}/api/items`;
    const p = await proof(key, 'GET', url, TOKEN);
    const res = await fetch(`${url}?page=2`, { headers: { authorization: `DPoP ${TOKEN}`, dpop: p } });
    assert.equal(res.status, 200, await res.clone().text());
    const got = s.api.received.at(-1)!.headers;
    assert.match(String(got.authorization), /^DPoP ey/);
    assert.deepEqual(decodeJwt(String(got.authorization).slice(5)).cnf, { jkt: key.jkt });
    assert.equal(got.dpop, p);
    assert.equal(got['x-dpop-verified'], key.jkt);

    // A cache hit: the proof is checked again, the token is not introspected again.
    const ok = await fetch(url, { headers: { authorization: `dpop ${TOKEN}`, dpop: await proof(key, 'GET', url, TOKEN) } });
    assert.equal(ok.status, 200);
    // The same proof again: a replay, refused from the cache too.
    const replay = await fetch(url, { headers: { authorization: `DPoP ${TOKEN}`, dpop: p } });
    assert.equal(replay.status, 401);
    assert.equal(replay.headers.get('www-authenticate'), `DPoP error="invalid_dpop_proof", ${ALGS}`);
    assert.deepEqual(await replay.json(), { code: 'unauthorized', message: 'Invalid DPoP proof' });
    assert.equal(s.as.callsFor(TOKEN), 1);
    assert.equal(s.api.received.length, 2);
  });

  test('every refusal of the proof or the binding is 401 with the DPoP challenge, and nothing reaches the upstream', async () => {
    const url = `${s.gw.url}/api/items`;
    const cases: [string, Record<string, string>][] = [
      ['no proof', { authorization: `DPoP ${TOKEN}` }],
      ['wrong htm', { authorization: `DPoP ${TOKEN}`, dpop: await proof(key, 'POST', url, TOKEN) }],
      ['wrong htu', { authorization: `DPoP ${TOKEN}`, dpop: await proof(key, 'GET', `${s.gw.url}/api/other`, TOKEN) }],
      ['wrong ath', { authorization: `DPoP ${TOKEN}`, dpop: await proof(key, 'GET', url, 'another-token') }],
      ['stale iat', { authorization: `DPoP ${TOKEN}`, dpop: await proof(key, 'GET', url, TOKEN, { iat: Math.floor(Date.now() / 1000) - 600 }) }],
      ['another key than the bound one', { authorization: `DPoP ${TOKEN}`, dpop: await proof(other, 'GET', url, TOKEN) }],
    ];
    for (const [what, headers] of cases) {
      const res = await fetch(url, { headers });
      assert.equal(res.status, 401, what);
      assert.equal(res.headers.get('www-authenticate'), `DPoP error="invalid_dpop_proof", ${ALGS}`, what);
      assert.deepEqual(await res.json(), { code: 'unauthorized', message: 'Invalid DPoP proof' }, what);
    }
    assert.equal(s.api.received.length, 0);
  });

  test('forward: bearer sends Bearer <jwt> and no proof', async () => {
    const url = `${s.gw.url}/bearer-out/x`;
    const res = await fetch(url, { headers: { authorization: `DPoP ${TOKEN}`, dpop: await proof(key, 'GET', url, TOKEN), 'x-dpop-verified': 'forged' } });
    assert.equal(res.status, 200);
    const got = s.api.received.at(-1)!.headers;
    assert.match(String(got.authorization), /^Bearer ey/);
    assert.equal(got.dpop, undefined);
    assert.equal(got['x-dpop-verified'], undefined);
  });

  test('a DPoP-bound token as Bearer is refused (downgrade), on scheme any and Bearer routes', async () => {
    for (const path of ['/any/x', '/plain/x']) {
      const res = await fetch(`${s.gw.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(res.status, 401, path);
      assert.equal(res.headers.get('www-authenticate'), `DPoP error="invalid_token", ${ALGS}`, path);
    }
    // scheme DPoP: a Bearer credential is no credential at all.
    const res = await fetch(`${s.gw.url}/api/x`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), `DPoP ${ALGS}`);
    assert.equal(s.api.received.length, 0);
  });

  test('scheme any: an unbound token works as Bearer, not as DPoP; no credential gets both challenges', async () => {
    await s.as.activate('plain-token');
    const url = `${s.gw.url}/any/x`;
    assert.equal((await fetch(url, { headers: { authorization: 'Bearer plain-token', dpop: await proof(key, 'GET', url, 'plain-token') } })).status, 200);
    assert.equal(s.api.received.at(-1)!.headers.dpop, undefined, 'an unverified proof was forwarded');
    const asDpop = await fetch(url, { headers: { authorization: 'DPoP plain-token', dpop: await proof(key, 'GET', url, 'plain-token') } });
    assert.equal(asDpop.status, 401);
    assert.equal(asDpop.headers.get('www-authenticate'), `DPoP error="invalid_token", ${ALGS}`);
    const none = await fetch(url);
    assert.equal(none.headers.get('www-authenticate'), `Bearer, DPoP ${ALGS}`);
  });

  test('an inactive token and a missing scope keep their meaning, given as DPoP challenges', async () => {
    const url = `${s.gw.url}/api/x`;
    const res = await fetch(url, { headers: { authorization: 'DPoP unknown-token', dpop: await proof(key, 'GET', url, 'unknown-token') } });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), `DPoP error="invalid_token", ${ALGS}`);
  });

  test('nonces: no nonce gets use_dpop_nonce and a DPoP-Nonce; the proof made with it passes', async () => {
    const url = `${s.gw.url}/nonce/x`;
    const first = await fetch(url, { headers: { authorization: `DPoP ${TOKEN}`, dpop: await proof(key, 'GET', url, TOKEN) } });
    assert.equal(first.status, 401);
    assert.equal(first.headers.get('www-authenticate'), `DPoP error="use_dpop_nonce", ${ALGS}`);
    const nonce = first.headers.get('dpop-nonce');
    assert.ok(nonce !== null && nonce.length > 20);
    const bad = await fetch(url, { headers: { authorization: `DPoP ${TOKEN}`, dpop: await proof(key, 'GET', url, TOKEN, { nonce: `${nonce.slice(0, -2)}AA` }) } });
    assert.equal(bad.status, 401);
    const ok = await fetch(url, { headers: { authorization: `DPoP ${TOKEN}`, dpop: await proof(key, 'GET', url, TOKEN, { nonce }) } });
    assert.equal(ok.status, 200, await ok.clone().text());
  });
});

describe('a token bound to both a DPoP key and a certificate (scripted introspection; a trusted proxy passes Client-Cert)', () => {
  const s = suiteStack(
    (as, api) => `
trusted_proxies: [127.0.0.1]
trust_client_cert_header: true
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
routes:
  - path: /api
    upstream: ${api.url}
`,
  );

  test('both are checked: the proof and the certificate', async () => {
    const key = await dpopKey();
    const der = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x07]);
    const other = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x08]);
    await s.as.activate('both-bound', { cnf: { jkt: key.jkt, 'x5t#S256': hash('sha256', der, 'base64url') } });
    const url = `${s.gw.url}/api/x`;
    const call = async (cert?: Buffer) =>
      fetch(url, { headers: { authorization: 'DPoP both-bound', dpop: await proof(key, 'GET', url, 'both-bound'), ...(cert ? { 'client-cert': `:${cert.toString('base64')}:` } : {}) } });
    assert.equal((await call(der)).status, 200);
    for (const cert of [undefined, other]) {
      const res = await call(cert);
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), `DPoP error="invalid_token", ${ALGS}`);
    }
    assert.equal(s.api.received.length, 1);
    // The client's certificate is not passed on unless forward_client_cert says so.
    assert.equal(s.api.received[0]!.headers['client-cert'], undefined);
  });
});

describe('Client-Cert from a trusted proxy without trust_client_cert_header (scripted introspection)', () => {
  const s = suiteStack(
    (as, api) => `
trusted_proxies: [127.0.0.1]
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
routes:
  - path: /api
    upstream: ${api.url}
`,
  );

  test('is not believed: proxies in front pass a client\'s own Client-Cert unless told to set it, and certificates are public', async () => {
    const der = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x07]);
    await s.as.activate('cert-bound', { cnf: { 'x5t#S256': hash('sha256', der, 'base64url') } });
    const res = await fetch(`${s.gw.url}/api/x`, { headers: { authorization: 'Bearer cert-bound', 'client-cert': `:${der.toString('base64')}:` } });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
    assert.equal(s.api.received.length, 0);
  });
});
