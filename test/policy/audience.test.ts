/*
 * A route's `audience` (RFC 9700 §2.3) through the reverse proxy and the
 * forward-auth listener, against a scripted introspection endpoint (scripted:
 * JWTs with chosen `aud` claims, Curity shape; and RFC 7662 JSON, minted).
 * Routes that differ only in audience share one exchange, so a token cached
 * by a route that does not care about audience meets the check as a cache
 * hit on the route that does. And NGINX's decision cache keys them apart.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { parseConfig } from '../../src/config/load.js';
import { nginxConf } from '../../src/forward-auth/nginx-conf.js';
import { startGateway } from '../helpers/gateway.js';
import { ask, forwarded, startForwardAuth } from '../helpers/forward-auth.js';
import { call } from '../helpers/core.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { jsonAnswer, nowSeconds, serverKey, signingKeyDir, verifyForwarded, type ServerKey } from '../dialects/support.js';

const INVALID_TOKEN = 'Bearer error="invalid_token"';

const yaml = (as: string, api: string, keyFile: string) => `
phantom_token:
  introspection_endpoint: ${as}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: ""
minting:
  issuer: https://gateway.test
  signing_key_file: ${keyFile}
forward_auth:
  identity_headers: { sub: X-User }
routes:
  - path: /any
    upstream: ${api}
  - path: /orders
    upstream: ${api}
    phantom_token: { audience: orders-api }
  - path: /either
    upstream: ${api}
    phantom_token: { audience: [billing-api, orders-api] }
  - path: /orders-admin
    upstream: ${api}
    phantom_token: { audience: orders-api, scope: admin }
  - path: /json-any
    upstream: ${api}
    phantom_token: { introspection_response: json }
  - path: /json-orders
    upstream: ${api}
    phantom_token: { introspection_response: json, audience: orders-api }
`;

/** What a client (or the data plane behind forward-auth) sees of one request. */
interface Seen {
  status: number;
  challenge: string | undefined;
  /** The Authorization sent on (proxy: what the upstream got; forward-auth: the allow's header); undefined when refused. */
  forwarded: string | undefined;
  /** forward-auth: how long NGINX may keep the decision (`X-Accel-Expires`). */
  accelExpires?: string | undefined;
}

interface Door {
  readonly name: string;
  start(as: ScriptedIntrospection, api: EchoUpstream, keyFile: string): Promise<void>;
  send(path: string, token: string): Promise<Seen>;
  close(): Promise<void>;
}

function proxyDoor(): Door {
  let gw: Awaited<ReturnType<typeof startGateway>>;
  let api: EchoUpstream;
  return {
    name: 'reverse proxy',
    async start(as, upstream, keyFile) {
      api = upstream;
      gw = await startGateway(yaml(as.url, upstream.url, keyFile));
    },
    async send(path, token) {
      const before = api.received.length;
      const r = await call(`${gw.url}${path}/x`, `Bearer ${token}`);
      const got = api.received.length > before ? api.received.at(-1)!.headers.authorization : undefined;
      if (r.status !== 200) assert.equal(got, undefined, 'a refused request never reaches the upstream');
      return { status: r.status, challenge: r.headers['www-authenticate'] as string | undefined, forwarded: got as string | undefined };
    },
    close: () => gw.close(),
  };
}

function forwardAuthDoor(): Door {
  let fa: Awaited<ReturnType<typeof startForwardAuth>>;
  return {
    name: 'forward-auth (HTTP)',
    async start(as, api, keyFile) {
      fa = await startForwardAuth(yaml(as.url, api.url, keyFile));
    },
    async send(path, token) {
      const r = await ask(fa.url, forwarded('GET', `${path}/x`, `Bearer ${token}`));
      const auth = r.headers.authorization;
      if (r.status !== 200) assert.equal(auth, undefined, 'a refusal carries no JWT for the data plane to forward');
      return {
        status: r.status,
        challenge: r.headers['www-authenticate'] as string | undefined,
        forwarded: typeof auth === 'string' ? auth : undefined,
        accelExpires: r.headers['x-accel-expires'] as string | undefined,
      };
    },
    close: () => fa.close(),
  };
}

let serial = 0;
const fresh = (label: string) => `aud-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;

for (const door of [proxyDoor(), forwardAuthDoor()]) {
  describe(`audience through the ${door.name} (scripted authorization server)`, () => {
    let as: ScriptedIntrospection;
    let api: EchoUpstream;
    let key: ServerKey;
    const keyDir = signingKeyDir();

    before(async () => {
      as = await startScriptedIntrospection();
      api = await startEchoUpstream();
      key = await serverKey();
      await door.start(as, api, keyDir.keyFile);
    });
    after(async () => {
      await door.close();
      await as.close();
      await api.close();
      keyDir.remove();
    });
    beforeEach(() => {
      as.calls.length = 0;
      api.received.length = 0;
    });

    /** Makes the scripted server answer `token` with a JWT carrying `claims` (Curity shape). */
    async function jwtToken(label: string, claims: Record<string, unknown>): Promise<string> {
      const token = fresh(label);
      as.answers.set(token, { status: 200, body: await key.sign({ sub: 'alice', scope: 'read', ...claims }), headers: { 'content-type': 'application/jwt' } });
      return token;
    }

    const refusedAsInvalid = (s: Seen) => {
      assert.equal(s.status, 401);
      assert.equal(s.challenge, INVALID_TOKEN);
      assert.equal(s.forwarded, undefined);
    };

    test('a token for another audience: allowed where no audience is required, then 401 on the route requiring one, from the cache (one introspection)', async () => {
      const token = await jwtToken('other', { aud: ['billing-api'] });
      const first = await door.send('/any', token);
      assert.equal(first.status, 200);
      assert.match(first.forwarded ?? '', /^Bearer /);
      refusedAsInvalid(await door.send('/orders', token));
      refusedAsInvalid(await door.send('/orders', token));
      assert.equal(as.callsFor(token), 1, 'the refusals came from the cached entry, checked on every request');
      // And the entry is still good for the route that does not care.
      assert.equal((await door.send('/any', token)).status, 200);
    });

    if (door.name.startsWith('forward-auth')) {
      test('a wrong-audience refusal may be kept by NGINX like a missing scope: X-Accel-Expires is negative_cache_seconds (10), never longer', async () => {
        const token = await jwtToken('accel', { aud: 'billing-api' });
        const s = await door.send('/orders', token);
        assert.equal(s.status, 401);
        assert.ok(s.accelExpires === '10' || s.accelExpires === '9', `X-Accel-Expires ${s.accelExpires}`);
        const ok = await door.send('/any', token);
        assert.equal(ok.status, 200);
        assert.ok(Number(ok.accelExpires) > 10, 'the allow lives as long as the entry');
      });
    }

    test('the route\'s audience first, from a cold cache too', async () => {
      const token = await jwtToken('other-cold', { aud: 'billing-api' });
      refusedAsInvalid(await door.send('/orders', token));
      assert.equal((await door.send('/any', token)).status, 200, 'the token itself is active: only the audience is wrong');
      assert.equal(as.callsFor(token), 1);
    });

    test('aud as a string, or a list containing the audience: allowed, and the JWT forwarded is the server\'s', async () => {
      const single = await jwtToken('single', { aud: 'orders-api' });
      const listed = await jwtToken('listed', { aud: ['inventory-api', 'orders-api'] });
      for (const token of [single, listed]) {
        const s = await door.send('/orders', token);
        assert.equal(s.status, 200);
        assert.equal(s.forwarded, `Bearer ${as.answers.get(token) && (as.answers.get(token) as { body: string }).body}`);
      }
    });

    test('a route with a list of audiences takes a token for any one of them', async () => {
      assert.equal((await door.send('/either', await jwtToken('either-b', { aud: 'billing-api' }))).status, 200);
      assert.equal((await door.send('/either', await jwtToken('either-o', { aud: ['x', 'orders-api'] }))).status, 200);
      refusedAsInvalid(await door.send('/either', await jwtToken('either-none', { aud: 'inventory-api' })));
    });

    test('a token without aud, or with an aud of the wrong type, has no audience: 401 where one is required', async () => {
      const none = await jwtToken('no-aud', {});
      refusedAsInvalid(await door.send('/orders', none));
      assert.equal((await door.send('/any', none)).status, 200);
      refusedAsInvalid(await door.send('/orders', await jwtToken('aud-number', { aud: 7 })));
      refusedAsInvalid(await door.send('/orders', await jwtToken('aud-case', { aud: 'Orders-API' })));
    });

    test('audience is checked before scope: the wrong audience and a missing scope is 401, the right audience and a missing scope 403', async () => {
      refusedAsInvalid(await door.send('/orders-admin', await jwtToken('aud-scope', { aud: 'billing-api', scope: 'read' })));
      const s = await door.send('/orders-admin', await jwtToken('scope-only', { aud: 'orders-api', scope: 'read' }));
      assert.equal(s.status, 403);
      assert.match(s.challenge ?? '', /insufficient_scope/);
    });

    test('json (minted): the introspected aud is the minted token\'s, and the route checks it, cache hits included', async () => {
      const right = fresh('json-right');
      const wrong = fresh('json-wrong');
      const exp = nowSeconds() + 120;
      as.answers.set(right, jsonAnswer({ active: true, sub: 'alice', client_id: 'web', aud: ['orders-api', 'x'], scope: 'read', exp, token_type: 'Bearer' }));
      as.answers.set(wrong, jsonAnswer({ active: true, sub: 'alice', client_id: 'web', aud: 'billing-api', scope: 'read', exp, token_type: 'Bearer' }));
      const ok = await door.send('/json-orders', right);
      assert.equal(ok.status, 200);
      const minted = ok.forwarded!.slice(7);
      assert.deepEqual(decodeJwt(minted).aud, ['orders-api', 'x']);
      assert.equal((await door.send('/json-any', wrong)).status, 200);
      refusedAsInvalid(await door.send('/json-orders', wrong));
      assert.equal(as.callsFor(wrong), 1);
    });
  });
}

describe('audience and the minted JWT', () => {
  test('the JWT minted for an audience-checked route verifies against the gateway\'s JWKS and keeps exp', async () => {
    const as = await startScriptedIntrospection();
    const api = await startEchoUpstream();
    const keyDir = signingKeyDir();
    const gw = await startGateway(yaml(as.url, api.url, keyDir.keyFile));
    try {
      const exp = nowSeconds() + 90;
      as.answers.set('opaque-1', jsonAnswer({ active: true, sub: 'bob', aud: 'orders-api', scope: 'read', exp }));
      assert.equal((await call(`${gw.url}/json-orders/x`, 'Bearer opaque-1')).status, 200);
      const jwt = (api.received.at(-1)!.headers.authorization as string).slice(7);
      const { payload } = await verifyForwarded(jwt, gw.gateway.guards.jwks()!, exp, { issuer: 'https://gateway.test', typ: 'at+jwt' });
      assert.equal(payload.aud, 'orders-api');
      assert.equal(payload.sub, 'bob');
    } finally {
      await gw.close();
      await as.close();
      await api.close();
      keyDir.remove();
    }
  });
});

describe('NGINX decision cache key', () => {
  test('a route whose audience changes gets another proxy_cache_key prefix (a reload never serves a decision made for the old audience); the same audience, the same key', () => {
    const conf = (aud: string) =>
      nginxConf(
        parseConfig(
          `
forward_auth:
  listen: { host: 127.0.0.1, port: 9000 }
phantom_token:
  introspection_endpoint: http://127.0.0.1:9/introspect
  client_id: c
  client_secret: s
  scope: read
routes:
  - path: /api
    upstream: http://127.0.0.1:9
    phantom_token: { audience: ${aud} }
`,
          { file: 'test.yaml', env: {} },
        ),
        { listen: { host: '127.0.0.1', port: 8080 } },
      );
    const keys = (text: string) => [...text.matchAll(/proxy_cache_key "([^" ]+) \$phantom_token_hash";/g)].map((m) => m[1]);
    const a = keys(conf('orders-api'));
    const b = keys(conf('billing-api'));
    const a2 = keys(conf('orders-api'));
    assert.equal(a.length, 1);
    assert.equal(b.length, 1);
    assert.notEqual(a[0], b[0], 'a decision cached for one audience is never served for the other');
    assert.deepEqual(a, a2, 'the key is a function of the requirements');
    const list = keys(conf('[orders-api, billing-api]'));
    assert.notEqual(list[0], a[0]);
  });
});
