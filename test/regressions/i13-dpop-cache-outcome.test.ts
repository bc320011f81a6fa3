/*
 * i13 regression: every DPoP request is reported as a cache miss, in the
 * proxy's access log and in `decide()`'s Decision.cache (what the
 * forward-auth listener and middleware log and return), even when the
 * token came from the cache and no introspection was made.
 *
 * RouteGuard.authorize always returns a promise for the DPoP scheme (the
 * proof's signature is checked asynchronously), and both the proxy
 * (`if (verdict instanceof Promise) pr.cache = 'miss'`, plus an
 * introspection_ms that is really the proof check) and decide.ts
 * (`settle(v, route, 'miss', ...)`) read "promise" as "introspected". On a
 * DPoP route the access log then says `cache: "miss"` for 100% of requests
 * while phantom_gateway_cache_hits_total counts hits: an operator sizing
 * the cache, or looking for why the authorization server is hammered, is
 * told the opposite of what happens.
 *
 * Fix: let the exchange say whether it answered from the cache (Seen could
 * carry it: `seen.hit = true` in TokenExchange.resolve) and have both
 * front doors take the outcome from there rather than from the promise.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { decide } from '../../src/core/decide.js';
import { createLogger } from '../../src/observability/logger.js';
import { suiteStack } from '../helpers/gateway.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { dpopKey, proof } from './i13-helpers.js';

describe('i13: the cache outcome of DPoP requests (scripted introspection)', () => {
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
`,
  );

  test('proxy: the second request with the same token is logged as a cache hit', async () => {
    const key = await dpopKey();
    await s.as.activate('tok', { cnf: { jkt: key.jkt } });
    const url = `${s.gw.url}/api/x`;
    for (let i = 0; i < 2; i++) {
      const res = await fetch(url, { headers: { authorization: 'DPoP tok', dpop: await proof(key, 'GET', url, 'tok') } });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    }
    assert.equal(s.as.callsFor('tok'), 1, 'introspected once');
    const requests = s.gw.logs.filter((l) => l.msg === 'request' && l.path === '/api/x');
    assert.equal(requests.length, 2);
    assert.equal(requests[0]!.cache, 'miss');
    assert.equal(requests[1]!.cache, 'hit', 'a DPoP request answered from the cache is logged as a miss');
  });
});

describe('i13: decide() on a DPoP cache hit (scripted introspection)', () => {
  let as: ScriptedIntrospection;
  let guards: Guards;
  before(async () => {
    as = await startScriptedIntrospection();
    const config = parseConfig(
      `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`,
      { file: 'decide.yaml', env: {} },
    );
    guards = createGuards(config, { logger: createLogger('silent') });
  });
  after(async () => {
    await guards.close();
    await as.close();
  });

  test('Decision.cache is "hit" for the second request with the same token', async () => {
    const key = await dpopKey();
    await as.activate('tok', { cnf: { jkt: key.jkt } });
    const url = 'https://api.example.com/api/x';
    const outcomes: string[] = [];
    for (let i = 0; i < 2; i++) {
      const d = await decide(guards, { method: 'GET', target: '/api/x', authorization: ['DPoP tok'], preflight: false, clientAddress: '10.0.0.1', dpop: [await proof(key, 'GET', url, 'tok')], url });
      assert.equal(d.allow, true);
      outcomes.push(d.cache);
    }
    assert.equal(as.callsFor('tok'), 1);
    assert.deepEqual(outcomes, ['miss', 'hit']);
  });
});
