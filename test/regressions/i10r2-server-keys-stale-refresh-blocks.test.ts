/*
 * Review 2 of issue 10: the authorization server's JWKS (src/introspection/server-keys.ts).
 *
 * Weakness (operability): once the keys are older than maxAgeMs (10 min),
 * every verification waits for a refetch before using the keys it holds,
 * and "kept when that fetch fails" only starts after the fetch has failed.
 * With the JWKS endpoint hanging (a black-holed host, an overloaded server),
 * each new token then waits the whole document timeout; after each failure
 * the failure cooldown (1 s) is the only time requests go through at once,
 * and the next request starts another blocking fetch. A JWKS outage thus
 * turns into a latency outage of every cache miss on every signed-answer
 * route, although valid keys are in memory. Stale keys should be used while
 * a refresh runs in the background (an unknown kid is the only reason to wait).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { exportJWK } from 'jose';
import { ServerKeys } from '../../src/introspection/server-keys.js';
import type { DocumentFetcher } from '../../src/introspection/documents.js';

describe('i10r2: stale server keys block verification while the JWKS endpoint hangs', () => {
  test('keys held, older than maxAgeMs, JWKS hanging: getKey answers with the held key at once', async () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] };
    let clock = 1_000_000;
    let hang = false;
    const releases: (() => void)[] = [];
    const fetcher = {
      getJson: (_url: string) =>
        hang ? new Promise<Record<string, unknown>>((resolve) => releases.push(() => resolve(jwks))) : Promise.resolve(jwks as Record<string, unknown>),
      close() {},
    } as unknown as DocumentFetcher;
    const keys = new ServerKeys({ fetcher, jwksUri: async () => 'https://as.example.com/jwks', maxAgeMs: 600_000, now: () => clock });
    const header = { alg: 'ES256', kid: 'k1' };
    const token = { payload: '', signature: '', protected: '' };
    await keys.getKey(header, token); // keys known
    clock += 600_001; // now stale
    hang = true; // and the JWKS endpoint stops answering
    try {
      const outcome = await Promise.race([
        keys.getKey(header, token).then(() => 'key'),
        new Promise((resolve) => setTimeout(() => resolve('still waiting'), 1000)),
      ]);
      assert.equal(outcome, 'key', 'a request waited for the JWKS refetch although the key it needs is held');
    } finally {
      for (const r of releases) r();
    }
  });
});
