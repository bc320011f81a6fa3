/*
 * One suite of the exchange's behaviours, run against every front door (the
 * reverse proxy, the library's decide(), the forward-auth listener, NGINX and
 * Caddy in front of it, Envoy's gRPC check, Express and Fastify), as hono
 * runs one router suite against every router. Each front door supplies an
 * adapter that turns a request into what a client, and the API behind, would
 * see; the cases are written once.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { makeTestPki, type TestPki } from '../client-auth/certs.js';
import { X509Certificate } from 'node:crypto';
import { dpopClient, dpopProof, x5tS256, type DpopClient } from './dpop.js';

export interface FrontDoorRequest {
  method?: string;
  /** Origin-form target, path and query. */
  target: string;
  /** An array sends the header once per value. */
  authorization?: string | string[];
  headers?: Record<string, string>;
  /** `DPoP` proofs, one header line each. */
  dpop?: string[];
  /** The DER of a certificate the client presented (for front doors with `certificates`). */
  clientCert?: Buffer;
}

export interface Outcome {
  status: number;
  /** `WWW-Authenticate` the client got, if any. */
  challenge: string | undefined;
  retryAfter: string | undefined;
  /** The JSON body of a refusal, parsed; undefined on an allow. */
  body: unknown;
  /**
   * On an allow: the `Authorization` the API received (or would receive:
   * what the decision tells the data plane to send), or null for none.
   */
  forwarded: string | null | undefined;
  /** On an allow: the `DPoP` the API received (null: none); undefined on a refusal. */
  forwardedDpop?: string | null | undefined;
  /** On an allow: the `X-DPoP-Verified` the API received (null: none); undefined on a refusal. */
  dpopVerified?: string | null | undefined;
  /** `DPoP-Nonce` the client got, if any. */
  dpopNonce?: string | undefined;
}

export interface RunningFrontDoor {
  call(req: FrontDoorRequest): Promise<Outcome>;
  close(): Promise<void>;
  /** The origin a client addresses, `scheme://host[:port]`: where a DPoP proof's htu starts. */
  readonly origin: string;
}

export interface FrontDoor {
  readonly name: string;
  /** Set when the front door cannot run here (a system program missing): the suite is skipped with this reason. */
  readonly skip?: string | false;
  /**
   * Status for a request with two `Authorization` headers (default 401, the
   * gateway's malformed credential). NGINX refuses it in its own parser with
   * 400 before any decision, and its 400 cannot be told apart from another.
   */
  readonly duplicateAuthorizationStatus?: number;
  /**
   * The front door can be shown a client certificate here (`clientCert`): a
   * trusted peer's Client-Cert, Envoy's source certificate, the library's
   * `certThumbprint`. NGINX, Caddy and the middleware need TLS for that:
   * their own tests.
   */
  readonly certificates?: boolean;
  /**
   * Starts the front door for `yaml` (the phantom_token block and routes of
   * `suiteConfig`), in front of `api` (for the front doors that carry the request).
   */
  start(yaml: string, peers: { as: ScriptedIntrospection; api: EchoUpstream }): Promise<RunningFrontDoor>;
}

/**
 * The routes every front door is tested with: `/api` needs `read`, `/admin`
 * needs `admin`, `/public` is open. `extra` is appended (a front door's own
 * listener settings).
 */
export function suiteConfig(as: ScriptedIntrospection, api: EchoUpstream, extra = ''): string {
  return `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: gateway-secret
  negative_cache_seconds: 10
routes:
  - path: /api
    upstream: ${api.url}
    phantom_token: { scope: read }
  - path: /admin
    upstream: ${api.url}
    phantom_token: { scope: admin }
  - path: /public
    upstream: ${api.url}
    phantom_token: false
log: { level: silent }
${extra}`;
}

const UNAUTHORIZED = { code: 'unauthorized', message: 'Access token required' };

export function frontDoorSuite(door: FrontDoor): void {
  describe(`front door behaviour: ${door.name}`, { skip: door.skip || false }, () => {
    let as: ScriptedIntrospection;
    let api: EchoUpstream;
    let fd: RunningFrontDoor;
    let n = 0;
    /** A token name unique to this test run. */
    const fresh = (label: string) => `fd-${door.name.replace(/\W+/g, '-')}-${label}-${++n}`;

    before(async () => {
      as = await startScriptedIntrospection();
      api = await startEchoUpstream();
      fd = await door.start(suiteConfig(as, api), { as, api });
    });
    after(async () => {
      await fd?.close();
      await as?.close();
      await api?.close();
    });
    beforeEach(() => {
      as.calls.length = 0;
    });

    test('a valid token: allowed, and the API gets the JWT in place of the opaque token', async () => {
      const t = fresh('ok');
      const jwt = await as.activate(t, { scope: 'read' });
      const o = await fd.call({ target: '/api/items?x=1', authorization: `Bearer ${t}` });
      assert.equal(o.status, 200);
      assert.equal(o.forwarded, `Bearer ${jwt}`);
    });

    test('no token: 401 with the Bearer challenge and the JSON body, no introspection', async () => {
      const o = await fd.call({ target: '/api/items' });
      assert.equal(o.status, 401);
      assert.equal(o.challenge, 'Bearer');
      assert.deepEqual(o.body, UNAUTHORIZED);
      assert.equal(as.calls.length, 0);
    });

    test('a malformed Authorization header: 401 invalid_request', async () => {
      const o = await fd.call({ target: '/api/items', authorization: 'Bearer a b' });
      assert.equal(o.status, 401);
      assert.equal(o.challenge, 'Bearer error="invalid_request"');
    });

    test('an inactive token: 401 invalid_token', async () => {
      const o = await fd.call({ target: '/api/items', authorization: `Bearer ${fresh('inactive')}` });
      assert.equal(o.status, 401);
      assert.equal(o.challenge, 'Bearer error="invalid_token"');
      assert.deepEqual(o.body, { code: 'unauthorized', message: 'Invalid or expired access token' });
    });

    test('the same token allowed on /api is refused on /admin (403 with the scope the route needs)', async () => {
      const t = fresh('scoped');
      await as.activate(t, { scope: 'read' });
      assert.equal((await fd.call({ target: '/api/x', authorization: `Bearer ${t}` })).status, 200);
      const o = await fd.call({ target: '/admin/x', authorization: `Bearer ${t}` });
      assert.equal(o.status, 403);
      assert.equal(o.challenge, 'Bearer error="insufficient_scope", scope="admin"');
      assert.deepEqual(o.body, { code: 'forbidden', message: 'The access token does not have the required scope' });
      assert.equal(as.callsFor(t), 1, 'one introspection for both routes');
    });

    test('repeated requests with one token cost one introspection', async () => {
      const t = fresh('repeat');
      await as.activate(t, { scope: 'read' });
      for (let i = 0; i < 3; i++) assert.equal((await fd.call({ target: '/api/x', authorization: `Bearer ${t}` })).status, 200);
      assert.equal(as.callsFor(t), 1);
    });

    test('a burst of one new token costs one introspection', async () => {
      const t = fresh('burst');
      await as.activate(t, { scope: 'read' }, { delayMs: 50 });
      const all = await Promise.all(Array.from({ length: 8 }, () => fd.call({ target: '/api/x', authorization: `Bearer ${t}` })));
      for (const o of all) assert.equal(o.status, 200);
      assert.equal(as.callsFor(t), 1);
    });

    test('the authorization server answers 503 (scripted): 503 with its Retry-After, never a 401', async () => {
      const t = fresh('as503');
      as.answers.set(t, { status: 503, headers: { 'retry-after': '7' } });
      const o = await fd.call({ target: '/api/x', authorization: `Bearer ${t}` });
      assert.equal(o.status, 503);
      assert.equal(o.retryAfter, '7');
      assert.deepEqual(o.body, { code: 'server_error', message: 'Token validation is temporarily unavailable' });
    });

    test('the authorization server fails with 500 (scripted): 502, and its body never reaches the client', async () => {
      const t = fresh('as500');
      as.answers.set(t, { status: 500, body: 'stack trace at secret.js:1' });
      const o = await fd.call({ target: '/api/x', authorization: `Bearer ${t}` });
      assert.equal(o.status, 502);
      assert.deepEqual(o.body, { code: 'server_error', message: 'Token validation is unavailable' });
    });

    test('two Authorization headers: refused as a malformed credential, before any introspection', async () => {
      const t = fresh('two');
      await as.activate(t, { scope: 'read' });
      const o = await fd.call({ target: '/api/x', authorization: [`Bearer ${t}`, `Bearer ${t}`] });
      assert.equal(o.status, door.duplicateAuthorizationStatus ?? 401);
      // A JSON refusal either way (bad_request for NGINX's own 400).
      assert.equal((o.body as { code?: string } | undefined)?.code, o.status === 400 ? 'bad_request' : 'unauthorized');
      assert.equal(as.calls.length, 0);
    });

    test('a token in the query string: refused, never introspected', async () => {
      const t = fresh('query');
      const o = await fd.call({ target: `/api/x?access_token=${t}`, authorization: `Bearer ${t}` });
      assert.equal(o.status, 400);
      assert.equal(as.calls.length, 0);
    });

    test('a path that escapes its route (/api/../admin, encoded): refused, never decided as another route', async () => {
      const t = fresh('escape');
      await as.activate(t, { scope: 'read' });
      for (const target of ['/api/%2e%2e/admin/x', '/api/..%2Fadmin']) {
        const o = await fd.call({ target, authorization: `Bearer ${t}` });
        assert.ok(o.status === 400 || o.status === 403 || o.status === 404, `${target}: ${o.status}`);
        assert.notEqual(o.status, 200, target);
      }
    });

    test('an open route: allowed without a token', async () => {
      const o = await fd.call({ target: '/public/page' });
      assert.equal(o.status, 200);
      assert.equal(as.calls.length, 0);
    });

    test('a CORS preflight on a protected route passes without a token; another OPTIONS does not', async () => {
      const pre = await fd.call({ method: 'OPTIONS', target: '/api/x', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
      assert.equal(pre.status, 200);
      const plain = await fd.call({ method: 'OPTIONS', target: '/api/x' });
      assert.equal(plain.status, 401);
    });
  });
}

/**
 * Sender-constrained tokens' routes: `/api` Bearer (the default), `/dpop`
 * `scheme: DPoP`, `/any` `scheme: any`, `/dpop-bearer` `scheme: DPoP` with
 * `dpop.forward: bearer`; 127.0.0.1 a trusted proxy (the gateway in front of
 * a forward-auth listener, the test client before the proxy).
 */
export function senderConfig(as: ScriptedIntrospection, api: EchoUpstream, extra = ''): string {
  return `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: gateway-secret
  scope: read
routes:
  - path: /api
    upstream: ${api.url}
  - path: /dpop
    upstream: ${api.url}
    phantom_token: { scheme: DPoP, dpop: { algorithms: [ES256, EdDSA] } }
  - path: /any
    upstream: ${api.url}
    phantom_token: { scheme: any }
  - path: /dpop-bearer
    upstream: ${api.url}
    phantom_token: { scheme: dpop, dpop: { forward: bearer } }
  - path: /nonce
    upstream: ${api.url}
    phantom_token: { scheme: DPoP, dpop: { nonce: true } }
trusted_proxies: [127.0.0.1]
trust_client_cert_header: true
log: { level: silent }
${extra}`;
}

const INVALID_PROOF = { code: 'unauthorized', message: 'Invalid DPoP proof' };
const INVALID_TOKEN = { code: 'unauthorized', message: 'Invalid or expired access token' };

/** Sender-constrained tokens (DPoP, RFC 9449; certificate-bound, RFC 8705) at one front door. */
export function senderSuite(door: FrontDoor): void {
  describe(`sender-constrained tokens: ${door.name}`, { skip: door.skip || false }, () => {
    let as: ScriptedIntrospection;
    let api: EchoUpstream;
    let fd: RunningFrontDoor;
    let key: DpopClient;
    let n = 0;
    const fresh = (label: string) => `snd-${door.name.replace(/\W+/g, '-')}-${label}-${++n}`;
    /** A DPoP-bound token (scripted: the introspection answer's JWT carries cnf.jkt). */
    const bound = async (label: string, c: DpopClient = key) => {
      const t = fresh(label);
      const jwt = await as.activate(t, { scope: 'read', cnf: { jkt: c.jkt } });
      return { t, jwt };
    };

    before(async () => {
      as = await startScriptedIntrospection();
      api = await startEchoUpstream();
      key = await dpopClient('ES256');
      fd = await door.start(senderConfig(as, api), { as, api });
    });
    after(async () => {
      await fd?.close();
      await as?.close();
      await api?.close();
    });
    beforeEach(() => {
      as.calls.length = 0;
    });

    test('scheme DPoP, a valid proof (scripted cnf.jkt): allowed; the API gets Authorization: DPoP <jwt>, the proof, and X-DPoP-Verified: the key\'s thumbprint', async () => {
      const { t, jwt } = await bound('ok');
      const proof = await dpopProof(key, 'GET', `${fd.origin}/dpop/items`, t);
      const o = await fd.call({ target: '/dpop/items?page=2', authorization: `DPoP ${t}`, dpop: [proof], headers: { 'x-dpop-verified': 'forged' } });
      assert.equal(o.status, 200);
      assert.equal(o.forwarded, `DPoP ${jwt}`);
      assert.equal(o.forwardedDpop, proof);
      assert.equal(o.dpopVerified, key.jkt);
    });

    test('the scheme in any case (Curity: "dpop <token>") is forwarded as DPoP <jwt>', async () => {
      const { t, jwt } = await bound('case');
      const o = await fd.call({ target: '/dpop/x', authorization: `dpop ${t}`, dpop: [await dpopProof(key, 'GET', `${fd.origin}/dpop/x`, t)] });
      assert.equal(o.status, 200);
      assert.equal(o.forwarded, `DPoP ${jwt}`);
    });

    test('a proof for another URL (htu): 401 with the DPoP challenge and its algorithms, the body never says which check', async () => {
      const { t } = await bound('htu');
      const o = await fd.call({ target: '/dpop/x', authorization: `DPoP ${t}`, dpop: [await dpopProof(key, 'GET', `${fd.origin}/dpop/elsewhere`, t)] });
      assert.equal(o.status, 401);
      assert.equal(o.challenge, 'DPoP error="invalid_dpop_proof", algs="ES256 EdDSA"');
      assert.deepEqual(o.body, INVALID_PROOF);
    });

    test('a proof used twice: the second request is refused (jti once)', async () => {
      const { t } = await bound('replay');
      const proof = await dpopProof(key, 'GET', `${fd.origin}/dpop/x`, t);
      assert.equal((await fd.call({ target: '/dpop/x', authorization: `DPoP ${t}`, dpop: [proof] })).status, 200);
      const again = await fd.call({ target: '/dpop/x', authorization: `DPoP ${t}`, dpop: [proof] });
      assert.equal(again.status, 401);
      assert.match(again.challenge ?? '', /^DPoP error="invalid_dpop_proof"/);
    });

    test('no proof, another key, two proofs: 401 invalid_dpop_proof', async () => {
      const { t } = await bound('broken');
      const url = `${fd.origin}/dpop/x`;
      const other = await dpopClient('ES256');
      for (const [what, dpop] of [
        ['no proof', []],
        ['another key than cnf.jkt', [await dpopProof(other, 'GET', url, t)]],
        ['two proofs', [await dpopProof(key, 'GET', url, t), await dpopProof(key, 'GET', url, t)]],
      ] as const) {
        const o = await fd.call({ target: '/dpop/x', authorization: `DPoP ${t}`, dpop: [...dpop] });
        assert.equal(o.status, 401, what);
        assert.match(o.challenge ?? '', /^DPoP error="invalid_dpop_proof"/, what);
        assert.deepEqual(o.body, INVALID_PROOF, what);
      }
    });

    test('dpop.nonce: a proof without the server\'s nonce gets 401 use_dpop_nonce and DPoP-Nonce; the same request with it is allowed', async () => {
      const { t, jwt } = await bound('nonce');
      const url = `${fd.origin}/nonce/x`;
      const first = await fd.call({ target: '/nonce/x', authorization: `DPoP ${t}`, dpop: [await dpopProof(key, 'GET', url, t)] });
      assert.equal(first.status, 401);
      assert.match(first.challenge ?? '', /^DPoP error="use_dpop_nonce", algs="/);
      assert.deepEqual(first.body, { code: 'unauthorized', message: 'DPoP nonce required' });
      assert.ok(first.dpopNonce, 'a DPoP-Nonce to use');
      const again = await fd.call({ target: '/nonce/x', authorization: `DPoP ${t}`, dpop: [await dpopProof(key, 'GET', url, t, { claims: { nonce: first.dpopNonce } })] });
      assert.equal(again.status, 200);
      assert.equal(again.forwarded, `DPoP ${jwt}`);
    });

    test('scheme DPoP, no token at all: 401 with the DPoP challenge (its algorithms) and the body of a missing token', async () => {
      const o = await fd.call({ target: '/dpop/x' });
      assert.equal(o.status, 401);
      assert.equal(o.challenge, 'DPoP algs="ES256 EdDSA"');
      assert.deepEqual(o.body, { code: 'unauthorized', message: 'Access token required' });
    });

    test('dpop.forward: bearer: the API gets Authorization: Bearer <jwt>, and neither the proof nor X-DPoP-Verified', async () => {
      const { t, jwt } = await bound('fwd-bearer');
      const o = await fd.call({ target: '/dpop-bearer/x', authorization: `DPoP ${t}`, dpop: [await dpopProof(key, 'GET', `${fd.origin}/dpop-bearer/x`, t)] });
      assert.equal(o.status, 200);
      assert.equal(o.forwarded, `Bearer ${jwt}`);
      assert.equal(o.forwardedDpop, null);
      assert.equal(o.dpopVerified, null);
    });

    test('scheme any: a DPoP-bound token sent as Bearer is refused (RFC 9449 §7.2) with a DPoP invalid_token challenge', async () => {
      const { t } = await bound('downgrade');
      const o = await fd.call({ target: '/any/x', authorization: `Bearer ${t}` });
      assert.equal(o.status, 401);
      assert.match(o.challenge ?? '', /^DPoP error="invalid_token"/);
      assert.deepEqual(o.body, INVALID_TOKEN);
    });

    test('a Bearer allow: a client\'s DPoP and X-DPoP-Verified never reach the API', async () => {
      const t = fresh('bearer');
      const jwt = await as.activate(t, { scope: 'read' });
      const o = await fd.call({ target: '/api/x', authorization: `Bearer ${t}`, dpop: ['a.b.c'], headers: { 'x-dpop-verified': 'forged' } });
      assert.equal(o.status, 200);
      assert.equal(o.forwarded, `Bearer ${jwt}`);
      assert.equal(o.forwardedDpop ?? null, null);
      assert.equal(o.dpopVerified, null);
    });

    describe('certificate-bound tokens (RFC 8705)', { skip: door.certificates === true ? false : 'this front door sees client certificates over TLS only (tested on its own)' }, () => {
      let pki: TestPki;
      before(() => {
        pki = makeTestPki('bound-client');
      });
      after(() => pki?.cleanup());

      test('cnf x5t#S256 (scripted): allowed with that certificate; 401 invalid_token without one or with another', async () => {
        const t = fresh('mtls');
        const jwt = await as.activate(t, { scope: 'read', cnf: { 'x5t#S256': x5tS256(pki.client.cert) } });
        const der = (pem: Buffer) => new X509Certificate(pem).raw;
        const ok = await fd.call({ target: '/api/x', authorization: `Bearer ${t}`, clientCert: der(pki.client.cert) });
        assert.equal(ok.status, 200);
        assert.equal(ok.forwarded, `Bearer ${jwt}`);
        for (const [what, cert] of [['no certificate', undefined], ['another certificate', der(pki.otherSubject.cert)]] as const) {
          const o = await fd.call({ target: '/api/x', authorization: `Bearer ${t}`, ...(cert === undefined ? {} : { clientCert: cert }) });
          assert.equal(o.status, 401, what);
          assert.equal(o.challenge, 'Bearer error="invalid_token"', what);
          assert.deepEqual(o.body, INVALID_TOKEN, what);
        }
      });
    });
  });
}
