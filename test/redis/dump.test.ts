/*
 * What someone with a dump of Redis (or a view of its pub/sub traffic)
 * learns: keys under the configured prefix, every one with a TTL, and
 * nothing readable: no opaque token, no JWT, no sub or client_id in clear
 * (nor base64 or hex of them). Real redis-server, a real gateway process,
 * the scripted peer answering with real signed JWTs.
 */
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureBuilt, scratchDir } from '../helpers/cli.js';
import { redisCli, skip, sleep, startInstance, startRedis, TEST_KEY_SECRET, type GatewayInstance, type RedisInstance } from '../helpers/redis.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const PREFIX = 'itest-dump:';
const SUB = 'alice-sensitive-sub';
const CLIENT_ID = 'client-sensitive-id';
const rand = () => Math.random().toString(36).slice(2);

/** `text` and the spellings it could hide in: base64, base64url, hex. */
function spellings(text: string): string[] {
  const b = Buffer.from(text);
  // base64 of a substring depends on its alignment: the three alignments, trimmed of their edge characters.
  const b64 = [0, 1, 2].flatMap((shift) => {
    const s = Buffer.concat([Buffer.alloc(shift), b]).toString('base64');
    const inner = s.slice(Math.ceil((shift * 4) / 3) + 1, -4);
    return [inner, inner.replace(/\+/g, '-').replace(/\//g, '_')];
  });
  return [text, b.toString('hex'), ...b64.filter((s) => s.length >= 8)];
}

/** Every value of `key`, as text, whatever its type; its TTL in ms. */
function dumpKey(redis: RedisInstance, key: string): { type: string; values: string[]; pttl: number } {
  const type = redis.cli('TYPE', key).trim();
  const raw = (...args: string[]) => redis.cli('--raw', ...args);
  const values =
    type === 'string' ? [raw('GET', key)]
    : type === 'set' ? [raw('SMEMBERS', key)]
    : type === 'hash' ? [raw('HGETALL', key)]
    : type === 'zset' ? [raw('ZRANGE', key, '0', '-1')]
    : type === 'list' ? [raw('LRANGE', key, '0', '-1')]
    : type === 'stream' ? [raw('XRANGE', key, '-', '+')]
    : [];
  return { type, values, pttl: Number(redis.cli('PTTL', key).trim()) };
}

describe('a Redis dump shows nothing useful (real redis-server, the real command line)', { skip }, () => {
  let redis: RedisInstance;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let scratch: ReturnType<typeof scratchDir>;
  let g: GatewayInstance;

  before(async () => {
    ensureBuilt();
    [redis, as, api] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream()]);
    scratch = scratchDir();
    g = await startInstance('dump', scratch, { introspection: as.url, upstream: api.url, redisUrl: redis.url, redis: { key_prefix: PREFIX } });
    await g.waitSharedCache('up');
  });

  after(async () => {
    await g?.stop();
    await Promise.all([redis?.close(), as?.close(), api?.close()]);
    scratch?.cleanup();
  });

  test('scripted: keys and values (active, inactive, purge index) hold no token, no JWT, no sub or client_id; every key has a TTL', async () => {
    const tokens = [`dump-active-${rand()}`, `dump-active2-${rand()}`, `dump-inactive-${rand()}`];
    const jwts = [await as.activate(tokens[0]!, { sub: SUB, client_id: CLIENT_ID }), await as.activate(tokens[1]!, { sub: SUB, client_id: CLIENT_ID })];
    as.answers.set(tokens[2]!, { status: 200, body: JSON.stringify({ active: false }), headers: { 'content-type': 'application/json' } });
    assert.equal((await g.get(tokens[0]!)).jwt, jwts[0]);
    assert.equal((await g.get(tokens[1]!)).jwt, jwts[1]);
    assert.equal((await g.get(tokens[2]!)).status, 401);

    const keys = redis.keys();
    const dumped = keys.map((k) => ({ key: k, ...dumpKey(redis, k) }));
    const shown = JSON.stringify(dumped, null, 1);
    // Two active entries, one negative, and an index to purge by sub / client_id.
    assert.ok(dumped.filter((d) => d.type === 'string').length >= 3, shown);
    assert.ok(dumped.some((d) => d.type !== 'string'), `no purge index among the keys:\n${shown}`);
    for (const d of dumped) {
      assert.ok(d.key.startsWith(PREFIX), `key outside the prefix: ${d.key}`);
      // -2: gone between the scan and now (a lock); -1 would be a key kept forever.
      assert.ok(d.pttl > 0 || d.pttl === -2, `${d.key} (${d.type}) has no TTL (PTTL ${d.pttl})`);
    }

    const everything = [...keys, ...dumped.flatMap((d) => d.values)];
    // Base64 text decoded too: a value that is only encoded, not encrypted, shows here.
    const decoded = everything.flatMap((v) => v.split(/\s+/).flatMap((w) => [Buffer.from(w, 'base64').toString('latin1'), Buffer.from(w, 'base64url').toString('latin1')]));
    const haystack = [...everything, ...decoded].join('\n');
    const secrets: Array<[string, string]> = [
      ...tokens.map((t): [string, string] => ['an opaque token', t]),
      ...jwts.flatMap((j) => j.split('.').map((seg): [string, string] => ['a JWT segment', seg])),
      ['the sub', SUB],
      ['the client_id', CLIENT_ID],
      ['the key secret', TEST_KEY_SECRET],
    ];
    for (const [what, secret] of secrets) {
      for (const s of secret === TEST_KEY_SECRET || what === 'a JWT segment' ? [secret] : spellings(secret)) {
        assert.ok(!haystack.includes(s), `${what} is readable in the Redis dump (as ${JSON.stringify(s)})`);
      }
    }
    // No JWT of any kind: a JOSE header and a JSON payload in base64url.
    assert.doesNotMatch(haystack, /eyJ[\w-]{8,}\.eyJ/);
    assert.doesNotMatch(haystack, /"(sub|client_id|scope|active|exp)"\s*:/);
  });

  test('scripted: what a purge publishes holds no sub, client_id or token', async () => {
    const token = `dump-purged-${rand()}`;
    await as.activate(token, { sub: SUB, client_id: CLIENT_ID });
    assert.equal((await g.get(token)).status, 200);
    // A listener on every channel under the prefix, as an eavesdropper with Redis access would be.
    const listener = spawn(redisCli.path!, ['-h', '127.0.0.1', '-p', String(redis.port), '--raw', 'PSUBSCRIBE', `${PREFIX}*`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let heard = '';
    listener.stdout.setEncoding('latin1').on('data', (d: string) => (heard += d));
    try {
      for (let i = 0; i < 100 && !heard.includes('psubscribe'); i++) await sleep(20);
      assert.match(heard, /psubscribe/);
      const before = heard.length;
      for (const what of [{ token }, { sub: SUB }, { client_id: CLIENT_ID }] as Array<Record<string, string>>) {
        const r = await g.purge(what);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json?.instances, 'notified', r.text);
      }
      for (let i = 0; i < 50 && heard.length === before; i++) await sleep(20);
      await sleep(200);
      const messages = heard.slice(before);
      assert.notEqual(messages, '', 'nothing was published on a channel under the key prefix');
      for (const secret of [token, SUB, CLIENT_ID]) {
        for (const s of spellings(secret)) assert.ok(!messages.includes(s), `a purge message shows ${JSON.stringify(s)}`);
      }
    } finally {
      listener.kill('SIGKILL');
    }
  });

  test('scripted: an instance without the key secret finds nothing: it introspects itself, and the token has another key', async () => {
    const token = `dump-secret-${rand()}`;
    const jwt = await as.activate(token, { sub: SUB });
    const before = new Set(redis.keys());
    assert.equal((await g.get(token)).jwt, jwt);
    const mine = redis.keys().filter((k) => !before.has(k) && k.startsWith(`${PREFIX}t:`));
    assert.equal(mine.length, 1, 'the token was not shared');
    const stranger = await startInstance('other-secret', scratch, {
      introspection: as.url,
      upstream: api.url,
      redisUrl: redis.url,
      keySecret: 'another-key-secret-fedcba9876543210-fedcba9876543210',
      redis: { key_prefix: PREFIX },
    });
    try {
      await stranger.waitSharedCache('up');
      const r = await stranger.get(token);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.jwt, jwt);
      assert.equal(as.callsFor(token), 2, 'an instance with another key secret found the entry');
      const theirs = redis.keys().filter((k) => !before.has(k) && k.startsWith(`${PREFIX}t:`) && k !== mine[0]);
      assert.equal(theirs.length, 1, 'the other instance did not share under its own key');
    } finally {
      await stranger.stop();
    }
  });
});
