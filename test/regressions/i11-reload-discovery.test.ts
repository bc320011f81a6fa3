/*
 * Review of issue 11 (reload fail-safety): with `issuer` (endpoints from
 * discovery), each reload builds new guards whose Discovery starts from
 * nothing. If the discovery document cannot be fetched at that moment (a
 * blip of the authorization server's metadata endpoint, while introspection
 * itself works), the reloaded gateway refuses every uncached token with 503
 * and its guards report not ready (/readyz 503 on every instance that
 * reloaded) although the metadata in use a moment before was fine: a reload
 * of an unchanged file takes the gateway down (scripted discovery endpoint).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/observability/logger.js';
import { Runtime } from '../../src/runtime.js';
import { jwtWithPayload, listen, startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

describe('review i11 reload: discovery metadata across a reload, scripted', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let disco: Server;
  let issuer: string;
  let discoveryUp = true;
  let runtime: Runtime;
  let port: number;
  let yaml: string;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    disco = createServer((req, res) => {
      if (!discoveryUp) {
        res.writeHead(503).end();
        return;
      }
      if (req.url === '/.well-known/oauth-authorization-server' || req.url === '/.well-known/openid-configuration') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer, introspection_endpoint: `${as.url}/introspect`, token_endpoint: `${issuer}/token` }));
      } else res.writeHead(404).end();
    });
    issuer = (await listen(disco)).url;
    yaml = `listen: { host: 127.0.0.1, port: 0 }
phantom_token:
  issuer: ${issuer}
  client_id: gateway-client
  client_secret: s3cret
  timeout_ms: 1000
routes:
  - path: /api
    upstream: ${api.url}
`;
    const load = (): GatewayConfig => parseConfig(yaml, { file: 'gateway.yaml', env: {} });
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    runtime = new Runtime(load(), { logger: createLogger('info', sink), load });
    port = (await runtime.gateway!.listen(0, '127.0.0.1')).port;
    for (let i = 0; i < 200 && !runtime.guards.ready; i++) await new Promise((r) => setTimeout(r, 10));
  });
  after(async () => {
    await runtime?.close();
    await new Promise((r) => disco?.close(r));
    await Promise.all([as?.close(), api?.close()]);
  });

  /** The server answers `token` with a JWT naming the configured issuer (the gateway checks iss, not the signature). */
  const activate = (token: string) => {
    const now = Math.floor(Date.now() / 1000);
    const jwt = jwtWithPayload(JSON.stringify({ iss: issuer, sub: 'user-1', client_id: 'c', scope: 'read', iat: now, exp: now + 300 }));
    as.answers.set(token, { status: 200, body: jwt, headers: { 'content-type': 'application/jwt' } });
  };
  const get = async (token: string) => {
    const r = await request(`http://127.0.0.1:${port}/api/x`, { headers: { authorization: `Bearer ${token}` } });
    await r.body.text();
    return r.statusCode;
  };

  // Defect: Runtime.#build -> createGuards makes a new Discovery per generation (src/core/guards.ts metadataFor); the running one's metadata is not carried over.
  test('a reload of the same file while the discovery document answers 503: new tokens still work and the guards stay ready', async () => {
    assert.ok(runtime.guards.ready, 'discovery done at start');
    activate('token-before');
    assert.equal(await get('token-before'), 200);

    discoveryUp = false; // a blip of the metadata endpoint only
    assert.deepEqual(await runtime.reload(), { ok: true });
    activate('token-after');
    assert.equal(await get('token-after'), 200, 'an uncached token is introspected at the endpoint known before the reload');
    assert.equal(runtime.guards.ready, true, 'the reloaded gateway is as ready as before (readiness reads these guards)');
  });
});
