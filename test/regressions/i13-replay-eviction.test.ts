/*
 * i13 regression: the DPoP replay memory forgets proofs that are still
 * fresh when others push them out, so anyone can make room for a replay.
 *
 * MemoryReplayStore is an LRU of `cache.max_dpop_proofs` entries that evicts
 * the least recently used proof whatever its expiry. A proof enters it once
 * it passes the checks that need no token (signature with the proof's own
 * embedded key, htm, htu, iat, ath against whatever token the request
 * carries): an attacker needs no valid token and no key of anyone's, only
 * `max_dpop_proofs` proofs of their own (one ES256 signature each; 100,000
 * by default, a few seconds of a laptop). Then a proof captured with its
 * token (RFC 9449 §11.1: a leaked request) is accepted again within its
 * max_age_seconds, which is what the jti check exists to prevent.
 *
 * Why it matters: replay protection is the whole point of `jti`; a bounded
 * cache must fail closed when full of unexpired proofs (refuse new proofs,
 * or evict only expired ones), not silently accept replays. Without
 * cache.redis (the default) nothing else catches it.
 *
 * Fix: never drop an unexpired proof (LRU `ttl` per entry and refuse
 * proofs once full of live ones, with a warning), or record proofs only for
 * requests whose token turned out bound to the proof key, and refuse when full.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { suiteStack } from '../helpers/gateway.js';
import { dpopKey, proof } from './i13-helpers.js';

describe('i13: DPoP replay memory flooded by an attacker (scripted introspection)', () => {
  const s = suiteStack(
    (as, api) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
cache:
  max_dpop_proofs: 50
routes:
  - path: /api
    upstream: ${api.url}
`,
  );

  test('a captured proof is refused again after max_dpop_proofs proofs of an attacker of their own', async () => {
    const victim = await dpopKey();
    const attacker = await dpopKey();
    await s.as.activate('victim-token', { cnf: { jkt: victim.jkt } });
    const url = `${s.gw.url}/api/items`;
    const captured = await proof(victim, 'GET', url, 'victim-token');
    const first = await fetch(url, { headers: { authorization: 'DPoP victim-token', dpop: captured } });
    assert.equal(first.status, 200);
    // Replayed at once: refused (this works).
    const replay = await fetch(url, { headers: { authorization: 'DPoP victim-token', dpop: captured } });
    assert.equal(replay.status, 401);

    // The attacker's own proofs, for a token that is not even valid (one introspection, then the negative cache).
    for (let i = 0; i < 50; i++) {
      const r = await fetch(url, { headers: { authorization: 'DPoP junk', dpop: await proof(attacker, 'GET', url, 'junk') } });
      assert.equal(r.status, 401);
      await r.arrayBuffer();
    }

    // The same captured proof, still within max_age_seconds.
    const again = await fetch(url, { headers: { authorization: 'DPoP victim-token', dpop: captured } });
    assert.equal(again.status, 401, 'a replayed DPoP proof was accepted after the replay memory was flooded');
    assert.equal(s.api.received.length, 1, 'the replay reached the upstream');
  });
});
