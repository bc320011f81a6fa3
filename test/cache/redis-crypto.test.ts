/*
 * What a Redis dump, or write access to Redis, gives: entry keys are HMACs
 * under the key secret; values open only with the token and the key secret,
 * only under their own key; purge messages open only under the key secret.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { activeToken } from '../../src/cache/entry.js';
import { CacheCrypto } from '../../src/cache/redis/crypto.js';

const SECRET = 's'.repeat(48);
const entry = activeToken('Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig', ' read write ', Date.now() + 60_000, undefined, { clientId: 'app', sub: 'alice' });

describe('CacheCrypto (entries and messages as stored in Redis)', () => {
  const c = new CacheCrypto(SECRET);

  test('an entry opens with its token under its key: the same JWT, scopes, expiry, client and subject', () => {
    const sealed = c.seal('ns\ntoken-1', 'p:t:abc', entry);
    const back = c.open('ns\ntoken-1', 'p:t:abc', sealed);
    assert.ok(back?.active);
    assert.deepEqual([back.authorization, back.scope, back.expiresAt, back.clientId, back.sub], [entry.authorization, entry.scope, entry.expiresAt, 'app', 'alice']);
    assert.deepEqual(c.open('ns\ntoken-1', 'p:t:abc', c.seal('ns\ntoken-1', 'p:t:abc', { active: false, expiresAt: 5 })), { active: false, expiresAt: 5 });
  });

  test('the sealed value shows nothing of the JWT, the scopes or the subject, and differs every time', () => {
    const a = c.seal('ns\ntoken-1', 'p:t:abc', entry);
    const b = c.seal('ns\ntoken-1', 'p:t:abc', entry);
    assert.notEqual(a, b, 'a fresh IV each time');
    const raw = Buffer.from(a, 'base64').toString('latin1');
    for (const s of ['eyJ', 'alice', 'read write', 'Bearer', 'token-1']) assert.ok(!a.includes(s) && !raw.includes(s), s);
  });

  test('it does not open with another token, under another key, with another key secret, or tampered', () => {
    const sealed = c.seal('ns\ntoken-1', 'p:t:abc', entry);
    assert.equal(c.open('ns\ntoken-2', 'p:t:abc', sealed), undefined, 'another token');
    assert.equal(c.open('other-ns\ntoken-1', 'p:t:abc', sealed), undefined, 'another namespace');
    assert.equal(c.open('ns\ntoken-1', 'p:t:xyz', sealed), undefined, 'moved under another key');
    assert.equal(new CacheCrypto('t'.repeat(48)).open('ns\ntoken-1', 'p:t:abc', sealed), undefined, 'another key secret');
    const bytes = Buffer.from(sealed, 'base64');
    bytes[20]! ^= 1;
    assert.equal(c.open('ns\ntoken-1', 'p:t:abc', bytes.toString('base64')), undefined, 'one bit flipped');
    assert.equal(c.open('ns\ntoken-1', 'p:t:abc', 'not base64 at all'), undefined);
    assert.equal(c.open('ns\ntoken-1', 'p:t:abc', ''), undefined);
  });

  test('someone holding a token but not the key secret cannot write an entry that opens', () => {
    const forged = new CacheCrypto('attacker-guess-'.padEnd(48, 'x')).seal('ns\ntoken-1', 'p:t:abc', entry);
    assert.equal(c.open('ns\ntoken-1', 'p:t:abc', forged), undefined);
  });

  test('entry ids and index ids are keyed: another secret gives others, and they name no value', () => {
    const other = new CacheCrypto('t'.repeat(48));
    assert.notEqual(c.entryId('ns\ntoken-1'), other.entryId('ns\ntoken-1'));
    assert.equal(c.entryId('ns\ntoken-1'), c.entryId('ns\ntoken-1'));
    assert.match(c.entryId('ns\ntoken-1'), /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(c.indexId('s', 'alice'), c.indexId('c', 'alice'), 'subject and client indexes never collide');
    assert.ok(!c.indexId('s', 'alice').includes('alice'));
  });

  test('purge messages open only under the same key secret', () => {
    const m = c.sealMessage({ s: 'alice' });
    assert.deepEqual(c.openMessage(m), { s: 'alice' });
    assert.ok(!m.includes('alice'));
    assert.equal(new CacheCrypto('t'.repeat(48)).openMessage(m), undefined);
    assert.equal(c.openMessage(Buffer.from('{"s":"alice"}').toString('base64')), undefined, 'an unsealed message is ignored');
  });
});
