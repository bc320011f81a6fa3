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

export interface FrontDoorRequest {
  method?: string;
  /** Origin-form target, path and query. */
  target: string;
  /** An array sends the header once per value. */
  authorization?: string | string[];
  headers?: Record<string, string>;
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
}

export interface RunningFrontDoor {
  call(req: FrontDoorRequest): Promise<Outcome>;
  close(): Promise<void>;
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
