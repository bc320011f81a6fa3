/*
 * Open routes (phantom_token: false) and the client's Authorization behind
 * the decision services: the HTTP listener's answer, Envoy's gRPC check, and
 * the NGINX configuration `nginx-conf` generates (run by a real NGINX), and
 * the shipped Caddyfile in front of a real Caddy.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { decide } from '../../src/core/decide.js';
import { createGuards } from '../../src/core/guards.js';
import { checkResponse } from '../../src/forward-auth/envoy-grpc.js';
import { nginxConf } from '../../src/forward-auth/nginx-conf.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { createLogger } from '../../src/observability/logger.js';
import { freePort } from '../helpers/cli.js';
import { ask, forwarded, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startCaddy, type RunningCaddy } from '../helpers/caddy.js';
import { skip, startGeneratedNginx, type NginxInstance } from '../helpers/nginx.js';
import { findProgram } from '../helpers/services.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const yaml = (as: string, api = 'http://127.0.0.1:3000', faPort = 0) => `
phantom_token:
  introspection_endpoint: ${as}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
routes:
  - path: /api
    upstream: ${api}
  - path: /public
    upstream: ${api}
    phantom_token: false
  - path: /legacy
    upstream: ${api}
    phantom_token: false
    forward_authorization: true
forward_auth:
  listen: { host: 127.0.0.1, port: ${faPort} }
log: { level: silent }
`;

describe('forward-auth listener: the answer for an open route', () => {
  let as: ScriptedIntrospection;
  let fa: TestForwardAuth;
  before(async () => {
    as = await startScriptedIntrospection();
    fa = await startForwardAuth(yaml(as.url));
  });
  after(async () => {
    await fa.close();
    await as.close();
  });

  test('no Authorization in the allow, and Envoy is told to remove the client\'s, with any DPoP proof and X-DPoP-Verified (X-Envoy-Auth-Headers-To-Remove)', async () => {
    const a = await ask(fa.url, [...forwarded('GET', '/public/x', 'Bearer opaque-abc'), 'dpop', 'a.b.c', 'x-dpop-verified', 'forged']);
    assert.equal(a.status, 200);
    assert.equal(a.headers.authorization, undefined);
    assert.equal(a.headers.dpop, undefined);
    assert.equal(a.headers['x-dpop-verified'], undefined);
    assert.equal(a.headers['x-envoy-auth-headers-to-remove'], 'authorization, dpop, x-dpop-verified, client-cert, client-cert-chain');
    assert.equal(a.headers['x-accel-expires'], '0');
    assert.equal(as.calls.length, 0);
  });

  test('forward_authorization: true hands the client\'s own Authorization (and DPoP proof) back (for proxies that copy them), never cached; never X-DPoP-Verified', async () => {
    const a = await ask(fa.url, [...forwarded('GET', '/legacy/x', 'Basic dTpw'), 'dpop', 'a.b.c', 'x-dpop-verified', 'forged']);
    assert.equal(a.status, 200);
    assert.equal(a.headers.authorization, 'Basic dTpw');
    assert.equal(a.headers.dpop, 'a.b.c');
    assert.equal(a.headers['x-dpop-verified'], undefined);
    assert.equal(a.headers['x-envoy-auth-headers-to-remove'], 'x-dpop-verified, client-cert, client-cert-chain');
    assert.equal(a.headers['x-accel-expires'], '0');
    const none = await ask(fa.url, forwarded('GET', '/legacy/x'));
    assert.equal(none.status, 200);
    assert.equal(none.headers.authorization, undefined);
  });

  test('a CORS preflight on a protected route keeps its Authorization (the option concerns open routes); a DPoP proof and X-DPoP-Verified are removed', async () => {
    const a = await ask(fa.url, [...forwarded('OPTIONS', '/api/x'), 'origin', 'https://app.example', 'access-control-request-method', 'GET']);
    assert.equal(a.status, 200);
    assert.equal(a.headers['x-envoy-auth-headers-to-remove'], 'dpop, x-dpop-verified, client-cert, client-cert-chain');
  });
});

describe('Envoy gRPC check: an open route', () => {
  test('removes the client\'s Authorization and DPoP proof (headers_to_remove), unless forward_authorization: true; X-DPoP-Verified always', async () => {
    const config = parseConfig(yaml('https://as.example'), { env: {} });
    const guards = createGuards(config, { logger: createLogger('silent') });
    try {
      const ask = async (target: string) =>
        checkResponse(await decide(guards, { method: 'GET', target, authorization: ['Bearer opaque-abc'], preflight: false, clientAddress: '127.0.0.1' }));
      const open = await ask('/public/x');
      assert.equal(open.status.code, 0);
      assert.deepEqual(open.ok_response, { headers: [], headers_to_remove: ['authorization', 'dpop', 'x-dpop-verified', 'client-cert', 'client-cert-chain'] });
      const kept = await ask('/legacy/x');
      assert.equal(kept.status.code, 0);
      assert.deepEqual(kept.ok_response, { headers: [], headers_to_remove: ['x-dpop-verified', 'client-cert', 'client-cert-chain'] });
    } finally {
      await guards.close();
    }
  });
});

describe('nginx-conf: an open route', () => {
  test('the generated location clears Authorization, except with forward_authorization: true', () => {
    const text = nginxConf(parseConfig(yaml('https://as.example', 'http://127.0.0.1:3000', 8081), { env: {} }), { listen: { host: '127.0.0.1', port: 8080 } });
    const location = (path: string) => {
      const at = text.indexOf(`location "${path}/" {`);
      assert.ok(at !== -1, `no location for ${path}/ in:\n${text}`);
      return text.slice(at, text.indexOf('\n  }', at));
    };
    assert.match(location('/public'), /proxy_set_header Authorization "";/);
    assert.doesNotMatch(location('/legacy'), /proxy_set_header Authorization/);
  });

  describe('run by a real NGINX', { skip }, () => {
    let as: ScriptedIntrospection;
    let api: EchoUpstream;
    let listener: ForwardAuthListener;
    let nginx: NginxInstance;
    let url: string;
    before(async () => {
      as = await startScriptedIntrospection();
      api = await startEchoUpstream();
      const config = parseConfig(yaml(as.url, api.url, await freePort()), { env: {} });
      listener = new ForwardAuthListener(config, { logger: createLogger('silent') });
      await listener.listen();
      const started = await startGeneratedNginx(config);
      nginx = started.instance;
      url = `http://127.0.0.1:${started.port}`;
    });
    after(async () => {
      await nginx?.stop();
      await listener?.close();
      await as?.close();
      await api?.close();
    });

    test('the upstream of an open route receives no Authorization; with forward_authorization: true it receives the client\'s', async () => {
      for (const [path, expected] of [['/public/x', undefined], ['/legacy/x', 'Basic dTpw']] as const) {
        api.received.length = 0;
        const res = await request(`${url}${path}`, { headers: { authorization: 'Basic dTpw' } });
        assert.equal(res.statusCode, 200, path);
        await res.body.dump();
        assert.equal(api.received.length, 1);
        assert.equal(api.received[0]!.headers.authorization, expected, path);
      }
      assert.equal(as.calls.length, 0);
    });
  });
});

describe('Caddy forward_auth (examples/caddy/Caddyfile as shipped) in front of the listener: an open route', { skip: findProgram('caddy', 'caddy').skip }, () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let listener: ForwardAuthListener;
  let caddy: RunningCaddy;
  let site: string;
  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const config = parseConfig(yaml(as.url, api.url), { env: {} });
    listener = new ForwardAuthListener(config, { logger: createLogger('silent') });
    const decisions = await listener.listen(0, '127.0.0.1');
    const port = await freePort();
    const caddyfile = readFileSync(new URL('../../examples/caddy/Caddyfile', import.meta.url), 'utf8')
      .replace('admin localhost:2019', 'admin off')
      .replace('http://:8080', `http://127.0.0.1:${port}`)
      .replaceAll('127.0.0.1:8081', `127.0.0.1:${decisions.port}`)
      .replaceAll('127.0.0.1:3000', `127.0.0.1:${api.port}`);
    caddy = await startCaddy(findProgram('caddy', 'caddy').path!, caddyfile);
    site = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await caddy?.close();
    await listener?.close();
    await as?.close();
    await api?.close();
  });

  test("the upstream of an open route receives no Authorization; with forward_authorization: true it receives the client's", async () => {
    for (const [path, expected] of [['/public/x', undefined], ['/legacy/x', 'Bearer opaque-abc']] as const) {
      api.received.length = 0;
      const res = await request(`${site}${path}`, { headers: { authorization: 'Bearer opaque-abc' } });
      assert.equal(res.statusCode, 200, path);
      await res.body.dump();
      assert.equal(api.received.length, 1);
      assert.equal(api.received[0]!.headers.authorization, expected, path);
    }
    assert.equal(as.calls.length, 0);
  });
});
