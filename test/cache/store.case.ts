/*
 * One suite for every TokenStore (the in-process memory store and the shared
 * Redis store), as hono runs one router suite against every router: what the
 * exchange relies on from any store.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { activeToken, type TokenEntry } from '../../src/cache/entry.js';
import type { TokenStore } from '../../src/cache/store.js';
import { fakeClock, type FakeClock } from '../helpers/core.js';

export function storeSuite(name: string, make: (clock: FakeClock) => TokenStore | Promise<TokenStore>, opts: { skip?: string | false } = {}): void {
  const get = async (s: TokenStore, k: string): Promise<TokenEntry | undefined> => await s.get(k);

  describe(`TokenStore behaviour: ${name}`, { skip: opts.skip ?? false }, () => {
    test('an entry set is found under its key, with its claims, and not under another key', async () => {
      const clock = fakeClock();
      const s = await make(clock);
      await s.set('k1', activeToken('Bearer h.eyJzdWIiOiJ1In0.s', ' read ', clock.now() + 60_000));
      const e = await get(s, 'k1');
      assert.equal(e?.active, true);
      assert.equal(e?.active && e.authorization, 'Bearer h.eyJzdWIiOiJ1In0.s');
      assert.equal(e?.active && e.claims.sub, 'u');
      assert.equal(await get(s, 'k2'), undefined);
    });

    test('an entry is never returned at or past its expiry, and reading does not extend it', async () => {
      const clock = fakeClock();
      const s = await make(clock);
      await s.set('k', activeToken('Bearer a.e30.c', ' ', clock.now() + 1000));
      clock.advance(999);
      assert.ok(await get(s, 'k'), 'still valid 1 ms before expiry');
      clock.advance(1);
      assert.equal(await get(s, 'k'), undefined, 'gone at its expiry');
    });

    test('an entry already expired when set is not kept', async () => {
      const clock = fakeClock();
      const s = await make(clock);
      await s.set('k', { active: false, expiresAt: clock.now() });
      assert.equal(await get(s, 'k'), undefined);
    });

    test('a newer answer replaces the older one of the other kind, and delete removes either', async () => {
      const clock = fakeClock();
      const s = await make(clock);
      await s.set('k', { active: false, expiresAt: clock.now() + 5000 });
      await s.set('k', activeToken('Bearer a.e30.c', ' read ', clock.now() + 5000));
      assert.equal((await get(s, 'k'))?.active, true);
      await s.set('k', { active: false, expiresAt: clock.now() + 5000 });
      assert.equal((await get(s, 'k'))?.active, false);
      await s.delete('k');
      assert.equal(await get(s, 'k'), undefined);
    });
  });
}
