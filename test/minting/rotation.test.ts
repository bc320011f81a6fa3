/*
 * Key rotation: a key that stops signing stays published until the last
 * token it signed expires, in a running gateway (`KeySet.rotate`) and across
 * restarts (`published_key_files`), against the real oidc-provider (json).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { errors, type JSONWebKeySet } from 'jose';
import type { DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { KeySet, loadSigningKeyFile, Minter, generateSigningKey } from '../../src/minting/index.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { bearerOf, clientCredentials, fetchJwks, jsonPhantomToken, keyDir, kidOf, startDevAs, verifyMinted } from './helpers.js';

const kids = (jwks: JSONWebKeySet) => jwks.keys.map((k) => k.kid).sort();

describe('rotation in a running gateway (KeySet.rotate), fake clock, real oidc-provider', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  let gw: TestGateway;
  let clock = Date.now();
  const keys = keyDir();
  before(async () => {
    as = await startDevAs();
    api = await startEchoUpstream();
    const k1 = keys.key('k1', 'ec');
    gw = await startGateway(
      `
phantom_token:
${jsonPhantomToken(as)}
minting:
  issuer: https://gw.example.com
  signing_key_file: ${k1.pem}
  max_lifetime_seconds: 60
routes:
  - path: /api
    upstream: ${api.url}
`,
      { now: () => clock },
    );
  });
  after(async () => {
    await gw.close();
    await api.close();
    await as.close();
    keys.cleanup();
  });

  async function mintedFor(token: string): Promise<string> {
    const res = await request(`${gw.url}/api`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    return bearerOf(api.received.at(-1)!.headers.authorization);
  }

  test('tokens of the old key verify with the served JWKS until they expire; then the old key is gone', async () => {
    const minting = gw.gateway.guards.minting!;
    const oldKid = minting.keys.signer.kid;
    const tokenA = await clientCredentials(as);
    const jwtA = await mintedFor(tokenA);
    assert.equal(kidOf(jwtA), oldKid);

    const next = loadSigningKeyFile(keys.key('k2', 'ed25519').jwk);
    minting.keys.rotate(next);
    clock += 30_000;
    const afterRotation = await fetchJwks(gw.url);
    assert.deepEqual(kids(afterRotation), [oldKid, next.kid].sort(), 'the old key is still published');
    const { payload } = await verifyMinted(jwtA, afterRotation, { now: clock });
    assert.equal(payload.client_id, 'test-client');

    const jwtB = await mintedFor(await clientCredentials(as));
    assert.equal(kidOf(jwtB), next.kid, 'new tokens are signed with the new key');
    assert.equal((await verifyMinted(jwtB, afterRotation, { now: clock })).header.alg, 'EdDSA');
    assert.equal(await mintedFor(tokenA), jwtA, 'the cached token of the old key is still served while it lives');

    clock += 31_000; // past jwtA's exp (60 s after it was minted)
    const later = await fetchJwks(gw.url);
    assert.deepEqual(kids(later), [next.kid], 'the old key is gone once its last token expired');
    await assert.rejects(verifyMinted(jwtA, later, { now: clock - 40_000 }), errors.JWKSNoMatchingKey);
    const jwtA2 = await mintedFor(tokenA);
    assert.notEqual(jwtA2, jwtA, 'the expired minted token is not served again: introspected and minted anew');
    assert.equal(kidOf(jwtA2), next.kid);
    await verifyMinted(jwtA2, later, { now: clock });
  });
});

describe('rotation across restarts with published_key_files (real oidc-provider)', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  const keys = keyDir();
  let k1: string;
  let k2: string;
  before(async () => {
    as = await startDevAs();
    api = await startEchoUpstream();
    k1 = keys.key('k1', 'rsa').pem;
    k2 = keys.key('k2', 'ec').jwk;
  });
  after(async () => {
    await api.close();
    await as.close();
    keys.cleanup();
  });

  const start = (signing: string, published: string[]) =>
    startGateway(`
phantom_token:
${jsonPhantomToken(as)}
minting:
  issuer: https://gw.example.com
  signing_key_file: ${signing}
  published_key_files: [${published.join(', ')}]
routes:
  - path: /api
    upstream: ${api.url}
`);

  async function mint(gw: TestGateway): Promise<string> {
    const res = await request(`${gw.url}/api`, { headers: { authorization: `Bearer ${await clientCredentials(as)}` } });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    return bearerOf(api.received.at(-1)!.headers.authorization);
  }

  async function step(signing: string, published: string[], check: (gw: TestGateway) => Promise<void>): Promise<void> {
    const gw = await start(signing, published);
    try {
      await check(gw);
    } finally {
      await gw.close();
    }
  }

  test('publish the next key first, then sign with it and keep the old one published; old tokens verify throughout', async () => {
    const kid1 = loadSigningKeyFile(k1).kid;
    const kid2 = loadSigningKeyFile(k2).kid;
    let old = '';
    await step(k1, [], async (gw) => {
      old = await mint(gw);
      assert.equal(kidOf(old), kid1);
      assert.deepEqual(kids(await fetchJwks(gw.url)), [kid1]);
    });
    await step(k1, [k2], async (gw) => {
      const jwks = await fetchJwks(gw.url);
      assert.deepEqual(kids(jwks), [kid1, kid2].sort(), 'the next key is announced ahead of use');
      assert.equal(kidOf(await mint(gw)), kid1, 'still signing with the current key');
      await verifyMinted(old, jwks);
    });
    await step(k2, [k1], async (gw) => {
      const jwks = await fetchJwks(gw.url);
      assert.deepEqual(kids(jwks), [kid1, kid2].sort());
      const fresh = await mint(gw);
      assert.equal(kidOf(fresh), kid2, 'the switch: new tokens carry the new key');
      await verifyMinted(fresh, jwks);
      assert.equal((await verifyMinted(old, jwks)).header.alg, 'RS256', 'a token minted before the restart still verifies');
    });
    await step(k2, [], async (gw) => {
      assert.deepEqual(kids(await fetchJwks(gw.url)), [kid2], 'after max_lifetime_seconds the old key is dropped');
    });
  });
});

describe('KeySet and Minter', () => {
  test('a key rotated away while it was signing stays published for the token it signed', async () => {
    const first = generateSigningKey();
    const second = generateSigningKey();
    const keys = new KeySet(first);
    const minter = new Minter({ issuer: 'https://gw', maxLifetimeSeconds: 60, copyClaims: [], keys });
    const pending = minter.mint({ client_id: 'c' });
    keys.rotate(second); // before the signature is done: nothing was signed with `first` yet
    const { jwt } = await pending;
    assert.equal(kidOf(jwt), first.kid);
    assert.deepEqual(keys.jwks().keys.map((k) => k.kid).sort(), [first.kid, second.kid].sort());
    await verifyMinted(jwt, keys.jwks() as JSONWebKeySet);
  });

  test('a key that signed nothing is dropped at once on rotation; published keys stay, each once', () => {
    const [a, b, c] = [generateSigningKey(), generateSigningKey(), generateSigningKey()];
    const keys = new KeySet(a, [c, a]);
    assert.deepEqual(keys.jwks().keys.map((k) => k.kid), [a.kid, c.kid]);
    keys.rotate(b);
    assert.deepEqual(keys.jwks().keys.map((k) => k.kid), [b.kid, c.kid]);
    keys.rotate(c);
    assert.deepEqual(keys.jwks().keys.map((k) => k.kid), [c.kid]);
  });

  test("the answer's aud wins over minting.audience; copy_claims never overrides the RFC 9068 claims; exp is the sooner", async () => {
    const keys = new KeySet(generateSigningKey());
    const minter = new Minter({ issuer: 'https://gw', maxLifetimeSeconds: 300, copyClaims: ['iss', 'aud', 'exp', 'jti', 'cnf', 'groups'], keys, audience: ['a', 'b'] });
    const now = Date.now();
    const exp = Math.floor(now / 1000) + 100;
    const own = await minter.mint({ iss: 'https://as', aud: 'api', exp, jti: 'server-jti', groups: ['g'], client_id: 'c' }, now);
    assert.equal(own.claims.iss, 'https://gw');
    assert.equal(own.claims.aud, 'api');
    assert.equal(own.claims.exp, exp);
    assert.notEqual(own.claims.jti, 'server-jti');
    assert.deepEqual(own.claims.groups, ['g']);
    const none = await minter.mint({ client_id: 'c', exp: exp + 1000 }, now);
    assert.deepEqual(none.claims.aud, ['a', 'b']);
    assert.equal(none.claims.exp, Math.floor(now / 1000) + 300);
    assert.throws(() => new Minter({ issuer: 'x', maxLifetimeSeconds: 1, copyClaims: [], keys, audience: [] }), /"audience"/);
  });
});
