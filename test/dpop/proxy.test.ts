/*
 * DPoP end to end through the standalone proxy (RFC 9449): the real
 * development authorization server (oidc-provider) issues DPoP-bound opaque
 * tokens to a client that sends a proof to its token endpoint; the gateway
 * verifies every request's proof (ath against the opaque token included)
 * before the token is used, matches the proof key with the introspected
 * cnf.jkt, and forwards the JWT to an upstream that records what reached it.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { request } from 'undici';
import { DEV_CLIENTS, startDevAuthorizationServer, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';
import { bearerToken, dpopBoundToken, dpopKey, hs256Proof, proof, type DpopKey, type ProofOptions } from '../helpers/dpop.js';

/** The algorithms the routes accept, in the order the challenge names them. */
const ALGS = ['ES256', 'EdDSA', 'PS256', 'RS256'];
const INVALID_PROOF = `DPoP error="invalid_dpop_proof", algs="${ALGS.join(' ')}"`;
const PUBLIC_BASE = 'https://api.example.com/edge';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

describe('DPoP through the proxy (real oidc-provider)', () => {
  let as: DevAuthorizationServer;
  let api: EchoUpstream;
  /** Trusts no proxy: htu is built from Host. */
  let gw: TestGateway;
  /** Trusts 127.0.0.1: htu from its X-Forwarded-Proto/-Host. */
  let behind: TestGateway;
  let key: DpopKey;

  const phantom = () => `phantom_token:
  introspection_endpoint: ${as.introspectionEndpoint}
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  scope: read
  scheme: DPoP
  dpop:
    algorithms: [${ALGS.join(', ')}]
`;
  const routes = () => `routes:
  - path: /api
    upstream: ${api.url}
  - path: /as-bearer
    upstream: ${api.url}
    phantom_token:
      dpop:
        forward: bearer
  - path: /any
    upstream: ${api.url}
    phantom_token:
      scheme: any
  - path: /bearer
    upstream: ${api.url}
    phantom_token:
      scheme: Bearer
  - path: /rewrite
    upstream: ${api.url}/inner
  - path: /edge-api
    upstream: ${api.url}
    phantom_token:
      dpop:
        public_base_url: ${PUBLIC_BASE}
  - path: /nonce
    upstream: ${api.url}
    phantom_token:
      dpop:
        nonce: true
`;

  before(async () => {
    as = await startDevAuthorizationServer({ port: 0, publicHost: '127.0.0.1' });
    api = await startEchoUpstream();
    gw = await startGateway(phantom() + routes());
    behind = await startGateway(`trusted_proxies: [127.0.0.1]\n${phantom()}${routes()}`);
    key = await dpopKey('ES256');
  });
  after(async () => {
    await gw?.close();
    await behind?.close();
    await api?.close();
    await as?.close();
  });
  beforeEach(() => {
    api.received.length = 0;
  });

  /** The URL the client addresses (and so the htu of a correct proof). */
  const urlOf = (g: TestGateway, path: string) => `${g.url}${path}`;

  /** A request with `Authorization: <scheme> <token>` and `proof` (a string, several, or none). */
  async function call(path: string, o: { token?: string; scheme?: string; dpop?: string | string[]; method?: string; headers?: Record<string, string>; via?: TestGateway } = {}): Promise<Answer> {
    const g = o.via ?? gw;
    const headers: string[] = [];
    if (o.token !== undefined) headers.push('authorization', `${o.scheme ?? 'DPoP'} ${o.token}`);
    for (const p of o.dpop === undefined ? [] : Array.isArray(o.dpop) ? o.dpop : [o.dpop]) headers.push('dpop', p);
    for (const [k, v] of Object.entries(o.headers ?? {})) headers.push(k, v);
    const res = await request(urlOf(g, path), { method: (o.method ?? 'GET') as 'GET', headers });
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  }

  /** A correct proof for `path` on `gw` with `token`, with `over` applied. */
  const proofFor = (path: string, token: string, over: Partial<ProofOptions> = {}) =>
    proof({ key, htm: 'GET', htu: urlOf(gw, path), accessToken: token, ...over });

  /** The access-log line of the last request to `path`. */
  const lastLog = (g: TestGateway, path: string) => g.logs.findLast((l) => l.msg === 'request' && typeof l.path === 'string' && l.path.startsWith(path));

  function assertRefused(res: Answer, challenge: string, what: string): void {
    assert.equal(res.status, 401, `${what}: ${res.body}`);
    assert.equal(res.headers['www-authenticate'], challenge, what);
    const body = JSON.parse(res.body) as { code: string; message: string };
    assert.equal(body.code, 'unauthorized', what);
  }

  describe('a valid proof', () => {
    for (const alg of ALGS) {
      test(`${alg}: 200; the upstream gets Authorization: DPoP <jwt> with cnf.jkt, the client's DPoP header and X-DPoP-Verified: <jkt>`, async () => {
        const k = await dpopKey(alg);
        const token = await dpopBoundToken(as, k);
        const dpop = await proof({ key: k, htm: 'GET', htu: urlOf(gw, '/api/items'), accessToken: token });
        const res = await call('/api/items', { token, dpop });
        assert.equal(res.status, 200, res.body);
        assert.equal(api.received.length, 1);
        const seen = api.received[0]!.headers;
        const m = /^DPoP ([\w-]+\.[\w-]+\.[\w-]+)$/.exec(String(seen.authorization));
        assert.ok(m, `Authorization: ${seen.authorization}`);
        const claims = decodeJwt(m[1]!) as { cnf?: { jkt?: string }; client_id?: string };
        assert.deepEqual(claims.cnf, { jkt: k.jkt });
        assert.equal(claims.client_id, DEV_CLIENTS.client.id);
        assert.equal(seen.dpop, dpop);
        assert.equal(seen['x-dpop-verified'], k.jkt);
        assert.ok(!JSON.stringify(seen).includes(token), 'the opaque token never reaches the upstream');
      });
    }

    test('dpop.forward: bearer: the upstream gets Bearer <jwt> (cnf.jkt in it), no DPoP header and no X-DPoP-Verified', async () => {
      const token = await dpopBoundToken(as, key);
      const res = await call('/as-bearer/items', { token, dpop: await proofFor('/as-bearer/items', token) });
      assert.equal(res.status, 200, res.body);
      const seen = api.received[0]!.headers;
      assert.match(String(seen.authorization), /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
      assert.deepEqual(decodeJwt(String(seen.authorization).slice(7)).cnf, { jkt: key.jkt });
      assert.equal(seen.dpop, undefined);
      assert.equal(seen['x-dpop-verified'], undefined);
    });

    test('a POST with a proof for POST, and a query string the proof leaves out: 200', async () => {
      const token = await dpopBoundToken(as, key);
      const res = await call('/api/items?page=2', { token, method: 'POST', dpop: await proofFor('/api/items', token, { htm: 'POST' }) });
      assert.equal(res.status, 200, res.body);
      assert.equal(api.received[0]!.url, '/api/items?page=2');
    });

    test('a client\'s own X-DPoP-Verified never reaches the upstream: the gateway\'s value replaces it', async () => {
      const token = await dpopBoundToken(as, key);
      const res = await call('/api/items', { token, dpop: await proofFor('/api/items', token), headers: { 'x-dpop-verified': 'forged-thumbprint' } });
      assert.equal(res.status, 200, res.body);
      assert.equal(api.received[0]!.headers['x-dpop-verified'], key.jkt);
    });

    test('neither the opaque token nor the proof is logged', async () => {
      const token = await dpopBoundToken(as, key);
      const dpop = await proofFor('/api/logged', token);
      assert.equal((await call('/api/logged', { token, dpop })).status, 200);
      const bad = await proofFor('/api/logged', token, { htm: 'PUT' });
      assert.equal((await call('/api/logged', { token, dpop: bad })).status, 401);
      const logs = gw.rawLogs();
      for (const secret of [token, dpop, bad, dpop.split('.')[2]!]) assert.ok(!logs.includes(secret), 'a token or proof in the log');
    });
  });

  describe('the cache', () => {
    test('a second request with a fresh proof is served from the cache (one introspection in all), and its proof is checked again', async () => {
      const token = await dpopBoundToken(as, key);
      const before = as.stats.introspections;
      assert.equal((await call('/api/items', { token, dpop: await proofFor('/api/items', token) })).status, 200);
      assert.equal((await call('/api/items', { token, dpop: await proofFor('/api/items', token) })).status, 200);
      assert.equal(as.stats.introspections - before, 1, 'one introspection');
      assert.equal(api.received.length, 2);

      // Cache hits: a proof by another key, a replayed proof, a wrong htm are refused.
      const other = await dpopKey('ES256');
      assertRefused(await call('/api/items', { token, dpop: await proof({ key: other, htm: 'GET', htu: urlOf(gw, '/api/items'), accessToken: token }) }), INVALID_PROOF, 'another key on a cache hit');
      const once = await proofFor('/api/items', token);
      assert.equal((await call('/api/items', { token, dpop: once })).status, 200);
      assertRefused(await call('/api/items', { token, dpop: once }), INVALID_PROOF, 'a replay on a cache hit');
      assertRefused(await call('/api/items', { token, dpop: await proofFor('/api/items', token, { htm: 'DELETE' }) }), INVALID_PROOF, 'wrong htm on a cache hit');
      // scheme: DPoP takes no Bearer at all: to this route that is no token.
      assertRefused(await call('/api/items', { token, scheme: 'Bearer' }), `DPoP algs="${ALGS.join(' ')}"`, 'as Bearer, no proof, on a cache hit');
      assert.equal(as.stats.introspections - before, 1, 'still one introspection');
      assert.equal(api.received.length, 3, 'none of the refused requests reached the upstream');
    });
  });

  describe('every broken proof field: 401 invalid_dpop_proof, the same body, nothing upstream', () => {
    const now = () => Math.floor(Date.now() / 1000);
    const path = '/api/items';
    /** name, how the request's DPoP header(s) are made from the token, the internal code logged, whether the token is introspected first. */
    const cases: [string, (token: string) => Promise<string | string[] | undefined>, string][] = [
      ['wrong htm (POST for a GET)', (t) => proofFor(path, t, { htm: 'POST' }), 'ERR_DPOP_PROOF_MISMATCH'],
      ['wrong htu: another path', (t) => proofFor(path, t, { htu: urlOf(gw, '/api/other') }), 'ERR_DPOP_PROOF_MISMATCH'],
      ['wrong htu: another host', (t) => proofFor(path, t, { htu: `http://other.example:${gw.port}${path}` }), 'ERR_DPOP_PROOF_MISMATCH'],
      ['wrong htu: another scheme', (t) => proofFor(path, t, { htu: `https://127.0.0.1:${gw.port}${path}` }), 'ERR_DPOP_PROOF_MISMATCH'],
      ['wrong htu: another port', (t) => proofFor(path, t, { htu: `http://127.0.0.1:${gw.port === 65535 ? 1 : gw.port + 1}${path}` }), 'ERR_DPOP_PROOF_MISMATCH'],
      ['stale iat (two minutes old)', (t) => proofFor(path, t, { iat: now() - 120 }), 'ERR_DPOP_PROOF_STALE'],
      ['future iat (a minute ahead)', (t) => proofFor(path, t, { iat: now() + 60 }), 'ERR_DPOP_PROOF_STALE'],
      ['wrong ath (another token\'s hash)', (t) => proofFor(path, t, { accessToken: `${t}x` }), 'ERR_DPOP_PROOF_MISMATCH'],
      ['no ath', (t) => proofFor(path, t, { claims: { ath: undefined } }), 'ERR_DPOP_PROOF_MISMATCH'],
      ['alg: none (unsigned)', (t) => proofFor(path, t, { alg: 'none' }), 'ERR_DPOP_PROOF_INVALID'],
      ['HS256 with a symmetric jwk', (t) => hs256Proof({ htm: 'GET', htu: urlOf(gw, path), accessToken: t }), 'ERR_DPOP_PROOF_INVALID'],
      ['an asymmetric alg the route does not allow (ES384)', async (t) => proof({ key: await dpopKey('ES384'), htm: 'GET', htu: urlOf(gw, path), accessToken: t }), 'ERR_DPOP_PROOF_INVALID'],
      ['typ: JWT', (t) => proofFor(path, t, { typ: 'JWT' }), 'ERR_DPOP_PROOF_INVALID'],
      ['a private key in jwk', (t) => proofFor(path, t, { jwk: key.privateJwk }), 'ERR_DPOP_PROOF_INVALID'],
      ['no jwk', (t) => proofFor(path, t, { jwk: null }), 'ERR_DPOP_PROOF_INVALID'],
      ['a jwk that is not the signing key', async (t) => proofFor(path, t, { jwk: (await dpopKey('ES256')).publicJwk }), 'ERR_DPOP_PROOF_INVALID'],
      ['no jti', (t) => proofFor(path, t, { claims: { jti: undefined } }), 'ERR_DPOP_PROOF_INVALID'],
      ['a signature altered', async (t) => {
        const p = await proofFor(path, t);
        const [h, b, s] = p.split('.');
        return `${h}.${b}.${s!.startsWith('A') ? 'B' : 'A'}${s!.slice(1)}`;
      }, 'ERR_DPOP_PROOF_INVALID'],
      ['not a JWS', async () => 'not-a-proof', 'ERR_DPOP_PROOF_INVALID'],
      ['two DPoP headers (both valid)', async (t) => [await proofFor(path, t), await proofFor(path, t)], 'ERR_DPOP_PROOF_INVALID'],
      ['two proofs in one DPoP header', async (t) => `${await proofFor(path, t)}, ${await proofFor(path, t)}`, 'ERR_DPOP_PROOF_INVALID'],
      ['no DPoP header', async () => undefined, 'ERR_DPOP_PROOF_MISSING'],
    ];

    const bodies = new Set<string>();
    for (const [name, make, code] of cases) {
      test(`${name} -> 401 (${code}), no introspection`, async () => {
        const token = await dpopBoundToken(as, key);
        const before = as.stats.introspections;
        const res = await call(path, { token, dpop: await make(token) });
        assertRefused(res, INVALID_PROOF, name);
        bodies.add(res.body);
        assert.equal(api.received.length, 0, 'nothing reached the upstream');
        assert.equal(as.stats.introspections, before, 'the proof is checked before the token is introspected');
        assert.equal(lastLog(gw, path)?.code, code);
      });
    }

    test('a replayed proof (the same proof again, or another proof with the same jti) -> 401 (ERR_DPOP_PROOF_REPLAYED)', async () => {
      const token = await dpopBoundToken(as, key);
      const dpop = await proofFor(path, token);
      assert.equal((await call(path, { token, dpop })).status, 200);
      const again = await call(path, { token, dpop });
      assertRefused(again, INVALID_PROOF, 'replay');
      bodies.add(again.body);
      assert.equal(lastLog(gw, path)?.code, 'ERR_DPOP_PROOF_REPLAYED');
      const { jti } = decodeJwt(dpop);
      assertRefused(await call(path, { token, dpop: await proofFor(path, token, { jti: jti! }) }), INVALID_PROOF, 'same jti, new proof');
      assert.equal(api.received.length, 1, 'only the first reached the upstream');
    });

    test('a valid proof by another key than the token is bound to -> 401 (ERR_DPOP_KEY_MISMATCH), after one introspection', async () => {
      const token = await dpopBoundToken(as, key);
      const other = await dpopKey('ES256');
      const before = as.stats.introspections;
      const res = await call(path, { token, dpop: await proof({ key: other, htm: 'GET', htu: urlOf(gw, path), accessToken: token }) });
      assertRefused(res, INVALID_PROOF, 'another key');
      bodies.add(res.body);
      assert.equal(as.stats.introspections - before, 1);
      assert.equal(api.received.length, 0);
      assert.equal(lastLog(gw, path)?.code, 'ERR_DPOP_KEY_MISMATCH');
    });

    test('every refusal has the same body (which check failed is not told)', () => {
      assert.equal(bodies.size, 1, [...bodies].join('\n'));
    });
  });

  describe('scheme: which Authorization scheme a route takes', () => {
    for (const scheme of ['dpop', 'DPOP', 'DpOp']) {
      test(`Authorization: ${scheme} <token> (any case) -> 200, forwarded as DPoP <jwt>`, async () => {
        const token = await dpopBoundToken(as, key);
        const res = await call('/api/items', { token, scheme, dpop: await proofFor('/api/items', token) });
        assert.equal(res.status, 200, res.body);
        assert.match(String(api.received[0]!.headers.authorization), /^DPoP [\w-]+\.[\w-]+\.[\w-]+$/);
      });
    }

    test('scheme: DPoP refuses Bearer <token> (a bearer token, or a DPoP-bound one with its proof): 401 with a DPoP challenge', async () => {
      const bearer = await bearerToken(as);
      const res = await call('/api/items', { token: bearer, scheme: 'Bearer' });
      assert.equal(res.status, 401);
      assert.match(String(res.headers['www-authenticate']), /^DPoP /);
      const bound = await dpopBoundToken(as, key);
      const withProof = await call('/api/items', { token: bound, scheme: 'Bearer', dpop: await proofFor('/api/items', bound) });
      assert.equal(withProof.status, 401);
      assert.match(String(withProof.headers['www-authenticate']), /^DPoP /);
      assert.equal(api.received.length, 0);
    });

    test('a DPoP-bound token sent as Bearer on scheme: any -> 401 DPoP invalid_token (downgrade, RFC 9449 §7.2), with or without a proof', async () => {
      const token = await dpopBoundToken(as, key);
      const challenge = `DPoP error="invalid_token", algs="${ALGS.join(' ')}"`;
      assertRefused(await call('/any/items', { token, scheme: 'Bearer' }), challenge, 'as Bearer');
      assert.equal(lastLog(gw, '/any/items')?.code, 'ERR_TOKEN_DPOP_BOUND');
      assertRefused(await call('/any/items', { token, scheme: 'Bearer', dpop: await proofFor('/any/items', token) }), challenge, 'as Bearer with a proof');
      assert.equal(api.received.length, 0);
    });

    test('a DPoP-bound token sent as Bearer on scheme: Bearer -> 401, nothing upstream', async () => {
      const token = await dpopBoundToken(as, key);
      const res = await call('/bearer/items', { token, scheme: 'Bearer' });
      assert.equal(res.status, 401, res.body);
      assert.equal(JSON.parse(res.body).code, 'unauthorized');
      assert.equal(lastLog(gw, '/bearer/items')?.code, 'ERR_TOKEN_DPOP_BOUND');
      assert.equal(api.received.length, 0);
    });

    test('scheme: any takes both: a DPoP-bound token with its proof, and a bearer token as Bearer (no DPoP header forwarded, even one the client sent)', async () => {
      const bound = await dpopBoundToken(as, key);
      assert.equal((await call('/any/items', { token: bound, dpop: await proofFor('/any/items', bound) })).status, 200);
      assert.match(String(api.received[0]!.headers.authorization), /^DPoP /);
      const bearer = await bearerToken(as);
      const res = await call('/any/items', { token: bearer, scheme: 'Bearer', headers: { dpop: 'client-junk', 'x-dpop-verified': 'forged' } });
      assert.equal(res.status, 200, res.body);
      const seen = api.received[1]!.headers;
      assert.match(String(seen.authorization), /^Bearer /);
      assert.equal(seen.dpop, undefined);
      assert.equal(seen['x-dpop-verified'], undefined);
    });

    test('scheme: any, no token -> 401 with both challenges', async () => {
      const res = await call('/any/items');
      assertRefused(res, `Bearer, DPoP algs="${ALGS.join(' ')}"`, 'no token');
    });

    test('scheme: Bearer (the default): a bearer token as before; the client\'s DPoP and X-DPoP-Verified never reach the upstream', async () => {
      const token = await bearerToken(as);
      const res = await call('/bearer/items', { token, scheme: 'Bearer', headers: { dpop: 'client-junk', 'x-dpop-verified': 'forged' } });
      assert.equal(res.status, 200, res.body);
      const seen = api.received[0]!.headers;
      assert.match(String(seen.authorization), /^Bearer /);
      assert.equal(seen.dpop, undefined);
      assert.equal(seen['x-dpop-verified'], undefined);
    });

    test('an unbound (bearer) token sent with the DPoP scheme and a valid proof -> 401 DPoP invalid_token', async () => {
      const token = await bearerToken(as);
      const res = await call('/api/items', { token, dpop: await proofFor('/api/items', token) });
      assertRefused(res, `DPoP error="invalid_token", algs="${ALGS.join(' ')}"`, 'unbound token as DPoP');
      assert.equal(lastLog(gw, '/api/items')?.code, 'ERR_TOKEN_NOT_DPOP_BOUND');
      assert.equal(api.received.length, 0);
    });

    test('on a DPoP route, no token -> 401 DPoP algs="..."; an inactive token -> DPoP invalid_token', async () => {
      assertRefused(await call('/api/items'), `DPoP algs="${ALGS.join(' ')}"`, 'no token');
      const fake = 'not-a-token-the-server-issued';
      assertRefused(await call('/api/items', { token: fake, dpop: await proofFor('/api/items', fake) }), `DPoP error="invalid_token", algs="${ALGS.join(' ')}"`, 'inactive');
    });

    test('on a DPoP route, a token without scope read -> 403 with a DPoP insufficient_scope challenge', async () => {
      const token = await dpopBoundToken(as, key, 'write');
      const res = await call('/api/items', { token, dpop: await proofFor('/api/items', token) });
      assert.equal(res.status, 403, res.body);
      assert.match(String(res.headers['www-authenticate']), /^DPoP error="insufficient_scope"/);
      assert.match(String(res.headers['www-authenticate']), new RegExp(`algs="${ALGS.join(' ')}"`));
      assert.equal(api.received.length, 0);
    });
  });

  describe('htu: the URL the client used', () => {
    test('a prefix-rewriting route: htu is the client\'s path, not the upstream\'s', async () => {
      const token = await dpopBoundToken(as, key);
      const ok = await call('/rewrite/items', { token, dpop: await proofFor('/rewrite/items', token) });
      assert.equal(ok.status, 200, ok.body);
      assert.equal(api.received[0]!.url, '/inner/items');
      assertRefused(await call('/rewrite/items', { token, dpop: await proofFor('/rewrite/items', token, { htu: `${api.url}/inner/items` }) }), INVALID_PROOF, 'the upstream URL');
      assertRefused(await call('/rewrite/items', { token, dpop: await proofFor('/rewrite/items', token, { htu: urlOf(gw, '/inner/items') }) }), INVALID_PROOF, 'the upstream path');
      assert.equal(api.received.length, 1);
    });

    test('dpop.public_base_url: htu is that origin and path prefix + the request path; the listener\'s own URL is refused', async () => {
      const token = await dpopBoundToken(as, key);
      const ok = await call('/edge-api/items', { token, dpop: await proofFor('/edge-api/items', token, { htu: `${PUBLIC_BASE}/edge-api/items` }) });
      assert.equal(ok.status, 200, ok.body);
      assertRefused(await call('/edge-api/items', { token, dpop: await proofFor('/edge-api/items', token) }), INVALID_PROOF, 'the listener URL');
      assertRefused(
        await call('/edge-api/items', { token, dpop: await proofFor('/edge-api/items', token, { htu: `https://api.example.com/edge-api/items` }) }),
        INVALID_PROOF,
        'without the base URL\'s path',
      );
    });

    test('behind a trusted proxy: htu from its X-Forwarded-Proto and X-Forwarded-Host', async () => {
      const token = await dpopBoundToken(as, key);
      const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' };
      const dpop = await proof({ key, htm: 'GET', htu: 'https://api.example.com/api/items', accessToken: token });
      const ok = await call('/api/items', { via: behind, token, dpop, headers: forwarded });
      assert.equal(ok.status, 200, ok.body);
      const local = await proof({ key, htm: 'GET', htu: urlOf(behind, '/api/items'), accessToken: token });
      assertRefused(await call('/api/items', { via: behind, token, dpop: local, headers: forwarded }), INVALID_PROOF, 'the listener URL behind a proxy');
      // Without forwarded headers the trusted peer's own Host counts.
      assert.equal((await call('/api/items', { via: behind, token, dpop: await proof({ key, htm: 'GET', htu: urlOf(behind, '/api/items'), accessToken: token }) })).status, 200);
    });

    test('X-Forwarded-Proto/-Host from a peer that is not trusted do not change htu', async () => {
      const token = await dpopBoundToken(as, key);
      const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' };
      const spoofed = await proof({ key, htm: 'GET', htu: 'https://api.example.com/api/items', accessToken: token });
      assertRefused(await call('/api/items', { token, dpop: spoofed, headers: forwarded }), INVALID_PROOF, 'forwarded headers from an untrusted peer');
      const ok = await call('/api/items', { token, dpop: await proofFor('/api/items', token), headers: forwarded });
      assert.equal(ok.status, 200, ok.body);
    });
  });

  describe('dpop.nonce: true', () => {
    test('a proof without a nonce -> 401 use_dpop_nonce with a DPoP-Nonce; the same request with that nonce -> 200', async () => {
      const token = await dpopBoundToken(as, key);
      const first = await call('/nonce/items', { token, dpop: await proofFor('/nonce/items', token) });
      assertRefused(first, `DPoP error="use_dpop_nonce", algs="${ALGS.join(' ')}"`, 'no nonce');
      const nonce = first.headers['dpop-nonce'];
      assert.equal(typeof nonce, 'string');
      assert.ok((nonce as string).length > 0);
      assert.equal(lastLog(gw, '/nonce/items')?.code, 'ERR_DPOP_NONCE');
      const second = await call('/nonce/items', { token, dpop: await proofFor('/nonce/items', token, { nonce: nonce as string }) });
      assert.equal(second.status, 200, second.body);
      assert.equal(api.received.length, 1);
      assertRefused(await call('/nonce/items', { token, dpop: await proofFor('/nonce/items', token, { nonce: 'made-up' }) }), `DPoP error="use_dpop_nonce", algs="${ALGS.join(' ')}"`, 'a nonce the gateway never issued');
    });
  });

  test('two DPoP header lines sent raw (not folded by a client library) -> 401 invalid_dpop_proof', async () => {
    const token = await dpopBoundToken(as, key);
    const p1 = await proofFor('/api/raw', token);
    const p2 = await proofFor('/api/raw', token);
    const res = await rawRequest(gw.port, `GET /api/raw HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nAuthorization: DPoP ${token}\r\nDPoP: ${p1}\r\nDPoP: ${p2}\r\nConnection: close\r\n\r\n`);
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], INVALID_PROOF);
    assert.equal(api.received.length, 0);
  });
});
