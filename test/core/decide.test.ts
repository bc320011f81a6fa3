/*
 * decide(): what a front door that does not carry the request gets, beyond
 * the shared front-door suite: the TTL an outside cache may keep a decision,
 * refusals of the request's shape, and withdrawing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { decide, withdraw, type DecisionRequest } from '../../src/core/decide.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { createLogger } from '../../src/observability/logger.js';
import { fakeClock } from '../helpers/core.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';

const req = (target: string, authorization: string[] = [], extra: Partial<DecisionRequest> = {}): DecisionRequest => ({
  method: 'GET',
  target,
  authorization,
  preflight: false,
  clientAddress: '10.0.0.1',
  ...extra,
});

describe('decide(): decisions with the lifetime an outside cache may give them', () => {
  let as: ScriptedIntrospection;
  let guards: Guards;
  const clock = fakeClock();

  before(async () => {
    as = await startScriptedIntrospection();
    const config = parseConfig(
      `
phantom_token: { introspection_endpoint: ${as.url}/introspect, client_id: c, client_secret: s, token_cache_seconds: 120, negative_cache_seconds: 7, scope: read }
routes:
  - { path: /api, upstream: http://127.0.0.1:9 }
  - { path: /admin, upstream: http://127.0.0.1:9, phantom_token: { scope: admin } }
`,
      { file: 't.yaml', env: {} },
    );
    guards = createGuards(config, { logger: createLogger('silent'), now: clock.now });
  });
  after(async () => {
    await guards.close();
    await as.close();
  });

  test('an allow lives what is left of the cached entry: token_cache_seconds, then less as the clock moves, and never past exp', async () => {
    await as.activate('ttl-a', { scope: 'read' }, { expiresIn: 3600 });
    const first = await decide(guards, req('/api/x', ['Bearer ttl-a']));
    assert.ok(first.allow);
    assert.equal(first.ttl, 120);
    assert.equal(first.cache, 'miss');
    clock.advance(50_500);
    const later = decide(guards, req('/api/x', ['Bearer ttl-a']));
    assert.ok(!(later instanceof Promise), 'a hit is synchronous');
    assert.ok(later.allow);
    assert.equal(later.ttl, 69);
    assert.equal(later.cache, 'hit');
    clock.reset();
    await as.activate('ttl-short', { scope: 'read' }, { expiresIn: 30 });
    const short = await decide(guards, req('/api/x', ['Bearer ttl-short']));
    assert.ok(short.allow && short.ttl <= 30 && short.ttl >= 28, `ttl ${short.ttl}`);
  });

  test('an inactive token and a missing scope live negative_cache_seconds; an outage and a missing token are never cacheable', async () => {
    clock.reset();
    const inactive = await decide(guards, req('/api/x', ['Bearer ttl-inactive']));
    assert.ok(!inactive.allow && inactive.error.status === 401 && inactive.ttl === 7);
    await as.activate('ttl-read', { scope: 'read' });
    const forbidden = await decide(guards, req('/admin/x', ['Bearer ttl-read']));
    assert.ok(!forbidden.allow && forbidden.error.status === 403 && forbidden.ttl === 7);
    as.answers.set('ttl-down', { status: 503 });
    const down = await decide(guards, req('/api/x', ['Bearer ttl-down']));
    assert.ok(!down.allow && down.error.status === 503 && down.ttl === 0);
    const missing = decide(guards, req('/api/x'));
    assert.ok(!(missing instanceof Promise) && !missing.allow && missing.ttl === 0 && missing.cache === '-');
  });

  test('requests the proxy would refuse are refused before routing: TRACE, a method override, a bad target, no route', () => {
    const cases: Array<[DecisionRequest, number]> = [
      [req('/api/x', ['Bearer t'], { method: 'TRACE' }), 405],
      [req('/api/x', ['Bearer t'], { methodOverride: true }), 405],
      [req('http://evil/api/x', ['Bearer t']), 400],
      [req('//api/x', ['Bearer t']), 400],
      [req('/nothing', ['Bearer t']), 404],
    ];
    const calls = as.calls.length;
    for (const [r, status] of cases) {
      const d = decide(guards, r);
      assert.ok(!(d instanceof Promise) && !d.allow, r.target);
      assert.equal(d.error.status, status, `${r.method} ${r.target}`);
    }
    assert.equal(as.calls.length, calls, 'no introspection');
  });

  test('a requester that withdraws before its introspection is sent: the introspection is never made', async () => {
    clock.reset();
    // Hold the only connections with slow tokens, then queue one and withdraw it.
    const cfg = parseConfig(
      `
phantom_token: { introspection_endpoint: ${as.url}/introspect, client_id: c, client_secret: s, connections: 1 }
routes: [ { path: /api, upstream: http://127.0.0.1:9 } ]
`,
      { file: 't.yaml', env: {} },
    );
    const g = createGuards(cfg, { logger: createLogger('silent') });
    try {
      await as.activate('wd-slow', {}, { delayMs: 150 });
      await as.activate('wd-queued');
      const slow = decide(g, req('/api/x', ['Bearer wd-slow']));
      const queued = decide(g, req('/api/x', ['Bearer wd-queued']));
      assert.ok(queued instanceof Promise);
      withdraw(queued);
      await slow;
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(as.callsFor('wd-queued'), 0);
    } finally {
      await g.close();
    }
  });
});
