/*
 * i13 regression: with `dpop.clock_skew_seconds: 0` (allowed by the
 * schema) a proof is accepted once more in the last second of its life.
 *
 * DpopVerifier compares iat with the clock in whole seconds
 * (`now = floor(ms / 1000)`, refused when `iat < now - max_age`), so a proof
 * is accepted until (iat + max_age + 1) s; it is remembered against replay
 * only until (iat + max_age + clock_skew) s. With a skew of 0 the memory
 * forgets it up to a second before the iat check starts refusing it (and a
 * fractional iat, which NumericDate allows, widens the gap for any skew
 * below 1 s of slack): one replay per proof, at the end of its window.
 *
 * Fix: remember a proof until the instant the iat check refuses it (in ms:
 * (iat + max_age + 1) * 1000, or compare iat against now in ms).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../helpers/gateway.js';
import { dpopKey, proof } from './i13-helpers.js';

describe('i13: replay at the end of a proof window with clock_skew_seconds 0 (scripted introspection)', () => {
  const base = Math.floor(Date.now() / 1000) * 1000;
  let now = base;
  let s: Stack;
  before(async () => {
    s = await startStack(
      (as, api) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
  token_cache_seconds: 600
  dpop: { max_age_seconds: 60, clock_skew_seconds: 0 }
routes:
  - path: /api
    upstream: ${api.url}
`,
      { now: () => now },
    );
  });
  after(() => s.close());

  test('the same proof 60.5 s later (iat still within max_age_seconds by the whole-second comparison) is refused as a replay', async () => {
    const key = await dpopKey();
    await s.as.activate('tok', { cnf: { jkt: key.jkt } }, { expiresIn: 3600 });
    const url = `${s.gw.url}/api/x`;
    const p = await proof(key, 'GET', url, 'tok', { iat: base / 1000 });
    const first = await fetch(url, { headers: { authorization: 'DPoP tok', dpop: p } });
    assert.equal(first.status, 200, await first.clone().text());
    now = base + 60_500;
    const replay = await fetch(url, { headers: { authorization: 'DPoP tok', dpop: p } });
    assert.equal(replay.status, 401, 'the proof was accepted twice');
    assert.equal(s.api.received.length, 1);
  });
});
