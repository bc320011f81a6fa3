/*
 * Discovery: `issuer` in place of `introspection_endpoint` (and of `jwks_uri`
 * for signed answers). Against the real oidc-provider: the endpoints are
 * found and used; a metadata `issuer` that is not the configured one,
 * exactly, leaves the route unready (503, never a pass); an issuer that is
 * down at start is picked up when it comes up, without a restart. Scripted
 * metadata servers cover the lookup order, waiting for a fetch under way,
 * refreshes and what the warnings say.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { MockAgent } from 'undici';
import { startDevAuthorizationServer, DEV_CLIENTS, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { GatewayError } from '../../src/core/errors.js';
import { Discovery, wellKnownUrls } from '../../src/introspection/discovery.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call, closedPort } from '../helpers/core.js';
import { freePort } from '../helpers/cli.js';
import { listen, startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection, type Started } from '../helpers/servers.js';
import { devIntrospect, devToken, verifyForwarded } from '../helpers/signed-answers.js';

const NOT_READY = '{"code":"server_error","message":"Token validation is temporarily unavailable"}';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits until `cond()` holds (polling), at most `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await sleep(10);
}

function gatewayYaml(issuer: string, api: EchoUpstream, extra = '', dialect = 'json'): string {
  return `
phantom_token:
  issuer: ${issuer}
  introspection_response: ${dialect}
  client_id: ${DEV_CLIENTS.introspection.id}
  client_secret: ${DEV_CLIENTS.introspection.secret}
  scope: read
minting:
  issuer: https://gateway.test
routes:
  - path: /api
    upstream: ${api.url}
${extra}`;
}

describe('wellKnownUrls: where the metadata of an issuer is looked for', () => {
  test('an issuer without a path: RFC 8414, then OpenID', () => {
    assert.deepEqual(wellKnownUrls('https://as.example.com'), [
      'https://as.example.com/.well-known/oauth-authorization-server',
      'https://as.example.com/.well-known/openid-configuration',
    ]);
  });
  test('an issuer with a path: RFC 8414 §3.1 inserts the well-known part before it (trailing / removed); OpenID appends', () => {
    assert.deepEqual(wellKnownUrls('https://as.example.com:8443/realms/demo/'), [
      'https://as.example.com:8443/.well-known/oauth-authorization-server/realms/demo',
      'https://as.example.com:8443/realms/demo/.well-known/openid-configuration',
    ]);
  });
});

describe('discovery against oidc-provider', () => {
  let as: DevAuthorizationServer; // issuer http://127.0.0.1:<port>
  let signing: DevAuthorizationServer; // RFC 9701 signed answers
  let other: DevAuthorizationServer; // issuer http://localhost:<port>
  let api: EchoUpstream;
  let gw: TestGateway;
  let signedGw: TestGateway;

  before(async () => {
    [as, signing, other] = await Promise.all([
      startDevAuthorizationServer({ port: 0, publicHost: '127.0.0.1' }),
      startDevAuthorizationServer({ port: 0, publicHost: '127.0.0.1', features: { jwtIntrospection: { enabled: true } } }),
      startDevAuthorizationServer({ port: 0 }),
    ]);
    api = await startEchoUpstream();
    gw = await startGateway(
      gatewayYaml(
        as.issuer,
        api,
        `  - path: /mismatch
    upstream: ${api.url}
    phantom_token:
      issuer: http://127.0.0.1:${other.port}
  - path: /slash
    upstream: ${api.url}
    phantom_token:
      issuer: ${as.issuer}/
`,
      ),
    );
    signedGw = await startGateway(gatewayYaml(signing.issuer, api, '', 'token_introspection_jwt'));
  });
  after(async () => {
    await Promise.all([gw?.close(), signedGw?.close()]);
    await api?.close();
    await Promise.all([as?.close(), signing?.close(), other?.close()]);
  });

  test('issuer only (json): the introspection endpoint is discovered; the upstream gets a minted JWT', async () => {
    const token = await devToken(as);
    const truth = await devIntrospect(as, token);
    const r = await call(`${gw.url}/api/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    const { payload } = await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
    assert.equal(payload.client_id, DEV_CLIENTS.client.id);
    assert.ok(payload.exp! <= (truth.exp as number));
    assert.equal((await call(`${gw.url}/api/x`, 'Bearer never-issued')).status, 401);
    assert.ok(gw.logs.some((l) => l.level === 'info' && String(l.msg).includes(`introspection endpoint ${as.introspectionEndpoint}`)));
  });

  test('issuer only (token_introspection_jwt): endpoint and JWKS are discovered; signed answers are verified', async () => {
    const token = await devToken(signing);
    const r = await call(`${signedGw.url}/api/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    await verifyForwarded(api.received.at(-1)!.headers.authorization, signedGw.gateway.guards.jwks());
    assert.equal((await call(`${signedGw.url}/api/x`, 'Bearer never-issued')).status, 401);
  });

  for (const [path, what] of [
    ['/mismatch', 'metadata naming another issuer (localhost for 127.0.0.1)'],
    ['/slash', 'the configured issuer with a trailing / the metadata does not have'],
  ] as const) {
    test(`${what}: not ready, 503 with Retry-After, never a pass; warned once, naming the issuer`, async () => {
      const token = await devToken(path === '/mismatch' ? other : as);
      const before = api.received.length;
      for (let i = 0; i < 3; i++) {
        const r = await call(`${gw.url}${path}/x`, `Bearer ${token}`);
        assert.equal(r.status, 503, r.body);
        assert.equal(r.body, NOT_READY);
        assert.match(String(r.headers['retry-after']), /^\d+$/);
      }
      assert.equal(api.received.length, before);
      assert.equal(gw.gateway.guards.ready, false);
      const issuer = path === '/mismatch' ? `http://127.0.0.1:${other.port}` : `${as.issuer}/`;
      const warned = gw.logs.filter((l) => l.code === 'ERR_INTROSPECTION_NOT_READY' && l.issuer === issuer);
      assert.equal(warned.length, 1, JSON.stringify(warned));
      assert.match(String(warned[0]!.msg), /RFC 8414 §3\.3/);
    });
  }
});

describe('discovery: the issuer unreachable at start, then up', () => {
  let as: DevAuthorizationServer | undefined;
  let api: EchoUpstream;
  let gw: TestGateway;
  after(async () => {
    await gw?.close();
    await api?.close();
    await as?.close();
  });

  test('503 (never anything else) while it is down, then 200 without a restart; one warning, then one info line', async () => {
    const port = await freePort();
    api = await startEchoUpstream();
    gw = await startGateway(gatewayYaml(`http://127.0.0.1:${port}`, api));
    const first = await call(`${gw.url}/api/x`, 'Bearer some-token');
    assert.equal(first.status, 503);
    assert.equal(first.body, NOT_READY);
    assert.match(String(first.headers['retry-after']), /^\d+$/);
    assert.equal(gw.gateway.guards.ready, false);

    as = await startDevAuthorizationServer({ port, publicHost: '127.0.0.1' });
    const token = await devToken(as);
    const deadline = Date.now() + 20_000;
    let status = 0;
    while (Date.now() < deadline) {
      const r = await call(`${gw.url}/api/x`, `Bearer ${token}`);
      status = r.status;
      if (status === 200) break;
      assert.equal(status, 503, `only 503 until discovered, got ${status} ${r.body}`);
      await sleep(100);
    }
    assert.equal(status, 200);
    assert.equal(gw.gateway.guards.ready, true);
    await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
    const discoveryLines = gw.logs.filter((l) => l.issuer === `http://127.0.0.1:${port}`);
    assert.deepEqual(
      discoveryLines.map((l) => l.level),
      ['warn', 'info'],
      JSON.stringify(discoveryLines),
    );
  });
});

/** A scripted metadata server: records the paths asked for; `doc(path)` decides the answer. */
async function startMetadata(doc: (path: string) => { status: number; body?: object; delayMs?: number }): Promise<Started & { paths: string[] }> {
  const paths: string[] = [];
  const server = createServer(async (req, res) => {
    paths.push(req.url!);
    const a = doc(req.url!);
    if (a.delayMs) await sleep(a.delayMs);
    res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body ? JSON.stringify(a.body) : undefined);
  });
  return Object.assign(await listen(server), { paths });
}

describe('discovery: scripted metadata', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  const closers: Array<() => Promise<void>> = [];
  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
  });
  after(async () => {
    for (const c of closers) await c();
    await as.close();
    await api.close();
  });

  test('an issuer with a path: RFC 8414 path first, then OpenID appended; a request during the first fetch waits for it (no 503)', async () => {
    let issuer = '';
    const meta = await startMetadata((path) =>
      path === '/tenant/a/.well-known/openid-configuration'
        ? { status: 200, delayMs: 300, body: { issuer, introspection_endpoint: `${as.url}/introspect`, token_endpoint: `${as.url}/token` } }
        : { status: 404 },
    );
    closers.push(meta.close);
    issuer = `${meta.url}/tenant/a`;
    const gw = await startGateway(gatewayYaml(issuer, api));
    closers.push(() => gw.close());
    const token = 'scripted-discovered';
    const now = Math.floor(Date.now() / 1000);
    as.answers.set(token, { status: 200, body: JSON.stringify({ active: true, sub: 'alice', iss: issuer, exp: now + 600, scope: 'read' }), headers: { 'content-type': 'application/json' } });
    const r = await call(`${gw.url}/api/x`, `Bearer ${token}`);
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(meta.paths, ['/.well-known/oauth-authorization-server/tenant/a', '/tenant/a/.well-known/openid-configuration']);
    const { payload } = await verifyForwarded(api.received.at(-1)!.headers.authorization, gw.gateway.guards.jwks());
    assert.equal(payload.sub, 'alice');
  });

  test('a refresh that fails keeps the metadata; a later one that succeeds takes the new endpoints; warned once; close() stops fetching', async () => {
    let mode: 'ok' | 'down' | 'moved' = 'ok';
    let issuer = '';
    const meta = await startMetadata(() =>
      mode === 'down'
        ? { status: 500 }
        : { status: 200, body: { issuer, introspection_endpoint: mode === 'ok' ? 'http://127.0.0.1:1/a' : 'http://127.0.0.1:1/b' } },
    );
    closers.push(meta.close);
    issuer = meta.url;
    const warnings: Array<{ code: string; detail: string }> = [];
    const infos: string[] = [];
    const d = new Discovery({ issuer, timeoutMs: 1000, verifySsl: true, refreshMs: 30, retryMinMs: 10, retryMaxMs: 20, warn: (e) => warnings.push(e), info: (m) => infos.push(m) });
    try {
      assert.equal((await d.get()).introspectionEndpoint.href, 'http://127.0.0.1:1/a');
      mode = 'down';
      const at = meta.paths.length;
      await until(() => meta.paths.length > at + 6);
      assert.ok(meta.paths.length > at + 6, 'kept retrying');
      assert.equal(d.ready, true);
      assert.equal(d.current!.introspectionEndpoint.href, 'http://127.0.0.1:1/a');
      assert.deepEqual(warnings.map((w) => w.code), ['WARN_DISCOVERY_REFRESH_FAILED']);
      assert.match(warnings[0]!.detail, new RegExp(`refreshing the discovery metadata of ${issuer}`));
      mode = 'moved';
      await until(() => d.current!.introspectionEndpoint.href.endsWith('/b'));
      assert.equal(d.current!.introspectionEndpoint.href, 'http://127.0.0.1:1/b');
      assert.equal(infos.length, 2);
    } finally {
      d.close();
    }
    await sleep(50); // a fetch under way at close() may still arrive
    const stopped = meta.paths.length;
    await sleep(150);
    assert.equal(meta.paths.length, stopped, 'no fetch after close()');
  });

  test('an unreachable issuer: get() is refused at once with a 503 GatewayError and Retry-After; one warning across many retries', async () => {
    const port = await closedPort();
    const warnings: string[] = [];
    const d = new Discovery({ issuer: `http://127.0.0.1:${port}`, timeoutMs: 1000, verifySsl: true, retryMinMs: 10, retryMaxMs: 20, warn: (e) => warnings.push(e.detail) });
    try {
      await sleep(200);
      await assert.rejects(d.get(), (e: unknown) => e instanceof GatewayError && e.code === 'ERR_INTROSPECTION_NOT_READY' && e.status === 503 && /^\d+$/.test(e.retryAfter ?? ''));
      assert.equal(d.ready, false);
      assert.equal(d.current, undefined);
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0]!, new RegExp(`discovery of http://127.0.0.1:${port} failed: GET .* failed \\(ECONNREFUSED\\)`));
    } finally {
      d.close();
    }
  });

  test('an https issuer whose metadata sends the gateway to plain http, or that lacks a JWKS a signed dialect needs: unusable', async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    const pool = agent.get('https://as.example.com');
    const doc = { issuer: 'https://as.example.com', introspection_endpoint: 'http://as.example.com/introspect', jwks_uri: 'https://as.example.com/jwks' };
    pool.intercept({ path: '/.well-known/oauth-authorization-server' }).reply(200, doc).persist();
    pool.intercept({ path: '/.well-known/openid-configuration' }).reply(404, {}).persist();
    const warnings: string[] = [];
    const d = new Discovery({ issuer: 'https://as.example.com', timeoutMs: 1000, verifySsl: true, dispatcher: agent, warn: (e) => warnings.push(e.detail) });
    await sleep(50);
    assert.equal(d.ready, false);
    assert.match(warnings[0] ?? '', /introspection_endpoint that is not an https URL/);
    d.close();

    const agent2 = new MockAgent();
    agent2.disableNetConnect();
    const pool2 = agent2.get('https://as.example.com');
    pool2.intercept({ path: '/.well-known/oauth-authorization-server' }).reply(200, { issuer: 'https://as.example.com', introspection_endpoint: 'https://as.example.com/introspect' }).persist();
    pool2.intercept({ path: '/.well-known/openid-configuration' }).reply(404, {}).persist();
    const warnings2: string[] = [];
    const d2 = new Discovery({ issuer: 'https://as.example.com', requireJwksUri: true, timeoutMs: 1000, verifySsl: true, dispatcher: agent2, warn: (e) => warnings2.push(e.detail) });
    await sleep(50);
    assert.equal(d2.ready, false);
    assert.match(warnings2[0] ?? '', /has no jwks_uri/);
    d2.close();
    await Promise.all([agent.close(), agent2.close()]);
  });
});
