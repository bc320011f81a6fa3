import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { createLogger } from '../../src/observability/logger.js';
import { fakeClock, type FakeClock } from '../helpers/core.js';
import { ask, forwarded, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';

/*
 * Review findings (correctness): X-Accel-Expires on refusals is always the
 * route's negative_cache_seconds (decide.ts settle), not what is left of the
 * answer our own cache keeps, so NGINX may keep a refusal longer than we do:
 * - an answer our cache refuses to keep at all (`{"active":true}` without a
 *   JWT: exchange.ts does not remember `no_jwt`, so fixing the authorization
 *   server takes effect at once) is still cacheable by NGINX;
 * - a cache hit on an inactive entry near its end gets the full
 *   negative_cache_seconds again.
 */

const yaml = (as: ScriptedIntrospection) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
  negative_cache_seconds: 10
forward_auth: {}
routes:
  - path: /api
  - path: /admin
    phantom_token: { scope: admin }
`;

describe('X-Accel-Expires never outlives the gateway\'s own entry', { timeout: 20_000 }, () => {
  let as: ScriptedIntrospection;
  let fa: TestForwardAuth;
  let guards: Guards;
  let clock: FakeClock;

  before(async () => {
    as = await startScriptedIntrospection();
    clock = fakeClock();
    guards = createGuards(parseConfig(yaml(as), { file: 'test.yaml', env: {} }), { logger: createLogger('silent'), now: clock.now });
    fa = await startForwardAuth(yaml(as), { guards });
  });
  after(async () => {
    await fa.close();
    await guards.close();
    await as.close();
  });

  test('an answer our own cache does not keep (JSON active:true without a JWT) is not cacheable by NGINX either', async () => {
    as.answers.set('nojwt-token', { status: 200, headers: { 'content-type': 'application/json' }, body: '{"active":true}' });
    const first = await ask(fa.url, forwarded('GET', '/api/x', 'Bearer nojwt-token'));
    const second = await ask(fa.url, forwarded('GET', '/api/x', 'Bearer nojwt-token'));
    assert.equal(first.status, 401);
    assert.equal(as.callsFor('nojwt-token'), 2, 'our own cache keeps no entry for it');
    assert.equal(first.headers['x-accel-expires'], '0', 'NGINX would keep for 10 s a refusal the gateway itself does not keep');
    assert.equal(second.headers['x-accel-expires'], '0');
  });

  test('a cache hit on an inactive entry gets X-Accel-Expires no longer than what is left of that entry', async () => {
    as.answers.set('inactive-token', { status: 200, headers: { 'content-type': 'application/json' }, body: '{"active":false}' });
    const first = await ask(fa.url, forwarded('GET', '/api/x', 'Bearer inactive-token'));
    assert.equal(first.status, 401);
    assert.equal(first.headers['x-accel-expires'], '10');
    clock.advance(8_000);
    const second = await ask(fa.url, forwarded('GET', '/api/x', 'Bearer inactive-token'));
    assert.equal(second.status, 401);
    assert.equal(as.callsFor('inactive-token'), 1, 'answered from the negative entry, 2 s left');
    assert.ok(Number(second.headers['x-accel-expires']) <= 2, `x-accel-expires ${second.headers['x-accel-expires']} outlives our own entry (2 s left)`);
  });

  test('a missing scope on a token whose entry ends in 3 s gets X-Accel-Expires no longer than that entry', async () => {
    clock.reset();
    await as.activate('short-lived-token', { scope: 'read' }, { expiresIn: 3 });
    const a = await ask(fa.url, forwarded('GET', '/admin/x', 'Bearer short-lived-token'));
    assert.equal(a.status, 403);
    assert.ok(Number(a.headers['x-accel-expires']) <= 3, `x-accel-expires ${a.headers['x-accel-expires']} outlives the token's own entry (3 s)`);
  });
});
