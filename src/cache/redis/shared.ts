import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { createClient as CreateClient } from '@redis/client';
import type { RedisCacheConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import type { SharedCacheRecorder } from '../../observability/metrics.js';
import { activeToken, type ActiveToken, type TokenEntry } from '../entry.js';
import type { Clock } from '../memory.js';
import type { PurgeRequest } from '../purge.js';
import type { Claim, SharedRef, SharedTokenStore } from '../store.js';
import { CacheCrypto } from './crypto.js';
import { keySecret, loggableRedisUrl } from './options.js';

/*
 * The second cache level, shared by every gateway instance: Redis (or
 * Valkey) through node-redis.
 *
 * Keys (under `key_prefix`):
 *   t:<id>   an entry: "<version>.<sealed value>", PX = its remaining life (reads never
 *            extend it). <version> is Redis's time (µs) of the read that missed before
 *            the introspection: an answer is written only over an older version, so a
 *            slow, earlier introspection never overwrites a newer answer. A purge
 *            leaves "<its time>." (a tombstone, read as a miss) for a while, so no
 *            introspection begun before the purge can write the token back.
 *   l:<id>   a short lock: the instance introspecting the token (SET NX PX, as long as
 *            an introspection may take)
 *   s:<h>    entry keys of one subject, c:<h> of one client (for purges): sorted sets
 *            scored by each entry's expiry, pruned of expired members on every write,
 *            PX >= their live entries'
 *   events   the pub/sub channel: "f <key>" filled, "r <key>" lock released, "p <sealed>"
 *            purge (the token, sub or client_id, sealed under the key secret: every
 *            instance works out its own keys for it, whatever its routes)
 * where <id> and <h> are HMACs under the key secret (see crypto.ts).
 *
 * Every command has `command_timeout_ms`; nothing waits for a connection
 * (no offline queue). Three failures in a row, or a lost connection, turn
 * sharing off: calls are skipped (misses, claims won locally) and a probe
 * tries Redis every second; the first answer turns sharing back on. One
 * warning when sharing stops, one line when it resumes.
 */

/** Failures in a row that turn sharing off while the connection still looks open (a Redis too slow to answer). */
const FAILURES_TO_TRIP = 3;
const PROBE_EVERY_MS = 1000;
/** Entry keys deleted per command by a purge by sub or client_id. */
const PURGE_BATCH = 500;
/** PEXPIRE NX/GT (the index TTLs) came with Redis 7.0; Valkey answers with a compatible redis_version. */
const MIN_REDIS_MAJOR = 7;

/** Purged pending while Redis is unavailable, replayed when it is back (the oldest dropped beyond). */
const MAX_PENDING_PURGES = 1000;

/**
 * Deletes the lock only if it is still ours (it may have expired and gone to
 * another instance), then, when nothing was written (the write's own message
 * has woken the waiting instances otherwise), says it is released.
 */
const RELEASE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end if ARGV[4] == '1' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end return 1";

/**
 * Writes an entry only over an older version (or nothing), indexes it by
 * subject and client (sorted sets by expiry, pruned of expired members,
 * TTL at least the entry's), and says it is filled. KEYS: entry, indexes.
 * ARGV: version, value, px, expiry score, now, channel, message. 1 written, 0 not.
 */
const WRITE_SCRIPT = `local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^(%d+)%.'))
  if v and v >= tonumber(ARGV[1]) then
    redis.call('PUBLISH', ARGV[6], ARGV[7])
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '.' .. ARGV[2], 'PX', ARGV[3])
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[5])
  redis.call('ZADD', KEYS[i], ARGV[4], KEYS[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[3], 'NX')
  redis.call('PEXPIRE', KEYS[i], ARGV[3], 'GT')
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1`;

/**
 * Replaces each entry with a tombstone of Redis's present time for ARGV[1]
 * ms; how many held an answer. KEYS: entries.
 */
const TOMBSTONE_SCRIPT = `local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local n = 0
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur and not string.match(cur, '^%d+%.$') then n = n + 1 end
  redis.call('SET', KEYS[i], now .. '.', 'PX', ARGV[1])
end
return n`;

type Client = ReturnType<typeof CreateClient>;

/**
 * node-redis, loaded when a shared cache is first configured: it takes a
 * good part of a second to load, which a gateway without Redis (and every
 * `--check`) should not pay.
 */
let redisModule: { createClient: typeof CreateClient } | undefined;
function loadRedis(): { createClient: typeof CreateClient } {
  return (redisModule ??= createRequire(import.meta.url)('@redis/client') as { createClient: typeof CreateClient });
}

export interface RedisCacheDeps {
  logger: Logger;
  metrics?: SharedCacheRecorder | undefined;
  now?: Clock;
}

/** A purge as sealed on the channel (and kept while Redis is unavailable). */
type PurgeMessage = { t: string; k?: string[] } | { s: string } | { c: string };

/**
 * What a purge message reaches in one process: the guards of each
 * configuration running, which purge their local store as for a purge made
 * here, and name a token's entries under each of their exchanges.
 */
export interface PurgeTarget {
  /** Removes what `request` names from the local store; how many. */
  purgeLocal(request: PurgeRequest): Promise<number>;
  /** The token's shared refs under every exchange. */
  refsOf(token: string): readonly SharedRef[];
  /** Empties the local store (purges may have been missed). */
  clearLocal(): void;
}

/** What a shared purge did: entries removed from Redis, and whether every instance was told. */
export interface SharedPurge {
  readonly shared: number;
  readonly instances: 'notified' | 'unavailable';
}

/** Redis as the shared token store (see the top of this file). */
export class RedisSharedCache implements SharedTokenStore {
  readonly options: RedisCacheConfig;
  /** Identifies the options and the key secret they resolve to (a reload keeps the connection when unchanged). */
  readonly identity: string;
  readonly #log: Logger;
  readonly #metrics: SharedCacheRecorder | undefined;
  readonly #now: Clock;
  readonly #crypto: CacheCrypto;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #where: string;
  readonly #client: Client;
  readonly #subscriber: Client;
  /** Sharing is on: connected and answering in time. */
  #up = false;
  /** Whether a warning about sharing being off was logged (the "resumed" line follows only one). */
  #warned = false;
  #downSince = 0;
  #failures = 0;
  /** Failed writes in a row (a Redis that answers reads and refuses writes, a read-only replica, is not usable). */
  #writeFailures = 0;
  /** Purges made while Redis was unavailable, replayed before sharing resumes. */
  #pending: PurgeMessage[] = [];
  #pendingDropped = 0;
  #connecting: Promise<unknown>[] = [];
  #probe: NodeJS.Timeout | undefined;
  #probing = false;
  #subscribed = false;
  #closed = false;
  #versionChecked = false;
  #tooOld = false;
  #users = 0;
  /** Local waits for another instance's introspection, by entry key. */
  readonly #waiters = new Map<string, Set<() => void>>();
  /** What purge messages clear: one target per guards using this cache. */
  readonly #targets = new Set<PurgeTarget>();

  constructor(options: RedisCacheConfig, deps: RedisCacheDeps) {
    this.options = options;
    this.#log = deps.logger;
    this.#metrics = deps.metrics;
    this.#now = deps.now ?? Date.now;
    const secret = keySecret(options);
    this.identity = sharedCacheIdentity(options, secret);
    this.#crypto = new CacheCrypto(secret);
    this.#prefix = options.key_prefix;
    this.#channel = `${options.key_prefix}events`;
    this.#where = loggableRedisUrl(options.url);
    const tls = options.url.startsWith('rediss:');
    const socket = {
      connectTimeout: options.connect_timeout_ms,
      // Backs off to one attempt every 2 s while Redis is away.
      reconnectStrategy: (retries: number) => Math.min(100 * 2 ** Math.min(retries, 5), 2000),
      ...(tls ? { tls: true as const, rejectUnauthorized: options.verify_ssl, ...(options.ca_file !== undefined ? { ca: readFileSync(options.ca_file) } : {}) } : {}),
    };
    // No offline queue: a command while disconnected fails at once. No per-command timeout in
    // node-redis: it only bounds the wait to be written; `#timed` bounds every call instead.
    this.#client = loadRedis().createClient({ url: options.url, socket, disableOfflineQueue: true });
    this.#subscriber = this.#client.duplicate();
    this.#metrics?.up(false);

    this.#client.on('error', (err: Error) => this.#down(err));
    this.#client.on('ready', () => void this.#tryResume());
    // The subscription comes back with its connection (node-redis subscribes again); purges
    // published while it was away were missed, so the local entries they may concern go.
    this.#subscriber.on('error', () => {});
    this.#subscriber.on('ready', () => {
      if (this.#subscribed) this.#clearLocals('the shared cache subscription was re-established (purges may have been missed)');
    });
    const clientConnect = this.#client.connect();
    const subscriberConnect = this.#subscriber.connect();
    this.#connecting = [clientConnect.catch(() => {}), subscriberConnect.catch(() => {})];
    subscriberConnect
      .then(() => this.#subscriber.subscribe(this.#channel, (message: string) => this.#onMessage(message)))
      .then(
        () => {
          this.#subscribed = true;
        },
        (err: unknown) => {
          // Not while closing; a refusal (an ACL without the channel) is worth a line: purges sent elsewhere will not arrive.
          if (!this.#closed) this.#log.warn({ redis: this.#where, reason: err instanceof Error ? err.message : String(err) }, 'shared cache: cannot subscribe to the events channel; purges made on other instances will not reach this one');
        },
      );
  }

  /** 'up' while sharing is on; 'down' while Redis is unreachable or too slow (requests are served without it). */
  get state(): 'up' | 'down' {
    return this.#up ? 'up' : 'down';
  }

  ref(namespace: string, token: string): SharedRef {
    const material = namespace + token;
    return { key: `${this.#prefix}t:${this.#crypto.entryId(material)}`, material };
  }

  async get(ref: SharedRef): Promise<TokenEntry | undefined> {
    if (!this.#up) {
      this.#metrics?.operation('get', 'skipped');
      return undefined;
    }
    let value: string | null;
    let pttl: number;
    let time: [string, string];
    try {
      // One round trip: the value, its TTL, and Redis's time (the version of an answer fetched after this miss).
      [value, pttl, time] = (await this.#timed(this.#client.multi().get(ref.key).pTTL(ref.key).time().exec())) as unknown as [string | null, number, [string, string]];
    } catch (err) {
      this.#failed(err, 'get');
      return undefined;
    }
    this.#answered();
    ref.readAt = Number(time[0]) * 1_000_000 + Number(time[1]);
    const dot = value === null ? -1 : value.indexOf('.');
    const sealed = dot === -1 ? '' : value!.slice(dot + 1);
    const entry = sealed === '' || pttl <= 0 ? undefined : this.#crypto.open(ref.material, ref.key, sealed);
    const now = this.#now();
    // Never longer than Redis keeps it, whatever the writer's clock said.
    const expiresAt = entry === undefined ? 0 : Math.min(entry.expiresAt, now + pttl);
    if (entry === undefined || expiresAt <= now) {
      this.#metrics?.operation('get', 'miss');
      return undefined;
    }
    this.#metrics?.operation('get', 'hit');
    if (expiresAt === entry.expiresAt) return entry;
    return entry.active ? activeToken(entry.authorization, entry.scope, expiresAt, undefined, { clientId: entry.clientId, sub: entry.sub }, entry.binding) : { active: false, expiresAt };
  }

  async set(ref: SharedRef, entry: TokenEntry): Promise<void> {
    // Written only with the version of the read that missed: without it, it might overwrite a newer answer or a purge.
    if (!this.#up || ref.readAt === undefined) {
      this.#metrics?.operation('set', 'skipped');
      return;
    }
    const now = this.#now();
    const ttl = Math.floor(entry.expiresAt - now);
    if (ttl <= 0) return;
    const value = this.#crypto.seal(ref.material, ref.key, entry);
    const indexes = entry.active ? this.#indexesOf(entry) : [];
    try {
      await this.#timed(
        this.#client.eval(WRITE_SCRIPT, {
          keys: [ref.key, ...indexes],
          arguments: [String(ref.readAt), value, String(ttl), String(entry.expiresAt), String(now), this.#channel, `f ${ref.key}`],
        }),
      );
    } catch (err) {
      this.#failed(err, 'set', true);
      return;
    }
    this.#answered(true);
    this.#metrics?.operation('set', 'ok');
  }

  async claim(ref: SharedRef, holdMs: number): Promise<Claim> {
    // By default an instance waits as long as the other's introspection may take.
    const wait = this.options.lock_wait_ms ?? holdMs;
    if (!this.#up || wait === 0) {
      if (wait !== 0) this.#metrics?.operation('lock', 'skipped');
      return WON_HERE;
    }
    const hold = Math.max(wait, holdMs);
    const lock = `${this.#prefix}l:${ref.key.slice(this.#prefix.length + 2)}`;
    const mine = randomBytes(12).toString('base64');
    // Listening before asking: an answer published between the refusal and the wait is not missed.
    const settled = this.#wait(ref.key, wait);
    let reply: string | null;
    try {
      reply = await this.#timed(this.#client.set(lock, mine, { NX: true, PX: hold }));
    } catch (err) {
      settled.cancel();
      this.#failed(err, 'lock', true);
      return WON_HERE;
    }
    this.#answered(true);
    this.#metrics?.operation('lock', 'ok');
    if (reply !== 'OK') return { won: false, settled: settled.promise };
    settled.cancel();
    this.#metrics?.lock('won');
    return {
      won: true,
      release: (filled: boolean) => {
        if (!this.#up) return;
        this.#timed(this.#client.eval(RELEASE_SCRIPT, { keys: [lock], arguments: [mine, this.#channel, `r ${ref.key}`, filled ? '0' : '1'] })).then(
          () => this.#answered(true),
          (err: unknown) => this.#failed(err, 'lock', true),
        );
      },
    };
  }

  /**
   * Whether a DPoP proof (`key`: a hash of its key thumbprint and jti) is
   * seen for the first time by any instance, remembered until `untilMs`:
   * `SET NX PXAT` under a keyed hash of it. Undefined when Redis could not
   * say (down, slow): the caller's local memory decides alone.
   */
  async firstUse(key: string, untilMs: number): Promise<boolean | undefined> {
    if (!this.#up) {
      this.#metrics?.operation('dpop_proof', 'skipped');
      return undefined;
    }
    let reply: string | null;
    try {
      reply = await this.#timed(this.#client.set(`${this.#prefix}d:${this.#crypto.indexId('d', key)}`, '1', { NX: true, PXAT: Math.max(untilMs, this.#now() + 1000) }));
    } catch (err) {
      this.#failed(err, 'dpop_proof', true);
      return undefined;
    }
    this.#answered(true);
    this.#metrics?.operation('dpop_proof', reply === 'OK' ? 'ok' : 'hit');
    return reply === 'OK';
  }

  /** Counts the outcome of a wait that did not win the claim: the other instance's answer was found, or not. */
  waited(found: boolean): void {
    this.#metrics?.lock(found ? 'filled' : 'gave_up');
  }

  /**
   * Purges `token`: tombstones `refs` (its entries under this instance's
   * exchanges) in Redis, and tells every instance, which drops the token
   * from its own local cache and tombstones its own entries for it.
   */
  async purgeToken(token: string, refs: readonly SharedRef[]): Promise<SharedPurge> {
    // The keys tombstoned here go with the message: other instances tombstone only keys of their own beyond them.
    const keys = refs.map((r) => r.key);
    return this.#purge({ t: token, k: keys }, () => this.#tombstone(keys));
  }

  /** Removes every entry of a subject (`sub`) or client (`client_id`) from Redis and from every instance's local cache. */
  async purgeBy(kind: 'sub' | 'client_id', value: string): Promise<SharedPurge> {
    return kind === 'sub' ? this.#purge({ s: value }, () => this.#purgeIndex('s', value)) : this.#purge({ c: value }, () => this.#purgeIndex('c', value));
  }

  /** Tombstones the live entries of one subject's or client's index, then drops the index; how many there were. */
  async #purgeIndex(kind: 's' | 'c', value: string): Promise<number> {
    const index = this.#index(kind, value);
    // In batches: a busy client may have many live tokens, and no single command should carry them all.
    let removed = 0;
    for (let offset = 0; ; offset += PURGE_BATCH) {
      const members = await this.#timed(this.#client.zRange(index, this.#now(), '+inf', { BY: 'SCORE', LIMIT: { offset, count: PURGE_BATCH } }));
      removed += await this.#tombstone(members);
      if (members.length < PURGE_BATCH) break;
    }
    await this.#timed(this.#client.del(index));
    return removed;
  }

  /**
   * Replaces entries with tombstones that outlive any introspection begun
   * before now (so none of them writes its answer back); how many held one.
   */
  async #tombstone(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    const ms = Math.max(this.options.lock_wait_ms ?? 0, TOMBSTONE_MS);
    return Number(await this.#timed(this.#client.eval(TOMBSTONE_SCRIPT, { keys: [...keys], arguments: [String(ms)] })));
  }

  async #purge(message: PurgeMessage, remove: () => Promise<number>): Promise<SharedPurge> {
    if (!this.#up) {
      this.#metrics?.operation('purge', 'skipped');
      this.#keep(message);
      return { shared: 0, instances: 'unavailable' };
    }
    try {
      const shared = await remove();
      await this.#timed(this.#client.publish(this.#channel, `p ${this.#crypto.sealMessage(message)}`));
      this.#answered(true);
      this.#metrics?.operation('purge', 'ok');
      return { shared, instances: 'notified' };
    } catch (err) {
      this.#failed(err, 'purge', true);
      this.#keep(message);
      return { shared: 0, instances: 'unavailable' };
    }
  }

  /** A purge that could not reach Redis: replayed when sharing resumes, before any entry is read from Redis again. */
  #keep(message: PurgeMessage): void {
    this.#pending.push(message);
    if (this.#pending.length > MAX_PENDING_PURGES) {
      this.#pending.shift();
      if (this.#pendingDropped++ === 0) this.#log.warn({ redis: this.#where, kept: MAX_PENDING_PURGES }, 'shared cache unavailable: more purges than are kept for when it is back; the oldest are dropped (their entries in Redis live until they expire)');
    }
  }

  /** Replays the purges made while Redis was unavailable; false when Redis failed meanwhile (they are kept). */
  async #replay(): Promise<boolean> {
    while (this.#pending.length > 0) {
      const m = this.#pending[0]!;
      try {
        if ('t' in m) await this.#tombstone([...this.#targets].flatMap((t) => t.refsOf(m.t).map((r) => r.key)));
        else if ('s' in m) await this.#purgeIndex('s', m.s);
        else await this.#purgeIndex('c', m.c);
        await this.#timed(this.#client.publish(this.#channel, `p ${this.#crypto.sealMessage(m)}`));
      } catch {
        return false;
      }
      this.#pending.shift();
    }
    this.#pendingDropped = 0;
    return true;
  }

  /** `target` is cleared by purge messages from now on (until `detach`). */
  attach(target: PurgeTarget): void {
    this.#targets.add(target);
  }

  detach(target: PurgeTarget): void {
    this.#targets.delete(target);
  }

  /** One more user (guards); `release` closes the connections when the last one is done. */
  retain(): this {
    this.#users++;
    return this;
  }

  async release(): Promise<void> {
    if (--this.#users > 0 || this.#closed) return;
    this.#closed = true;
    this.#up = false;
    clearInterval(this.#probe);
    for (const wake of [...this.#waiters.values()].flatMap((s) => [...s])) wake();
    const connecting = this.#connecting;
    // Writes under way get a moment to land; then the sockets go, whatever Redis does
    // (node-redis's close() waits for every reply, and a hung Redis never sends them).
    const ends = [this.#client, this.#subscriber].map(async (c, i) => {
      const kill = (): void => {
        try {
          c.destroy();
        } catch {
          // already closed
        }
      };
      if (c.isReady) {
        let timer: NodeJS.Timeout | undefined;
        const cut = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.options.command_timeout_ms).unref();
        });
        await Promise.race([c.close().catch(() => {}), cut]);
        clearTimeout(timer);
      } else {
        // A destroy while connecting does not stop the connect: once it settles, again.
        void connecting[i]?.then(kill);
      }
      kill();
    });
    await Promise.all(ends);
  }

  #indexesOf(entry: ActiveToken): string[] {
    const out: string[] = [];
    if (entry.sub !== undefined) out.push(this.#index('s', entry.sub));
    if (entry.clientId !== undefined) out.push(this.#index('c', entry.clientId));
    return out;
  }

  #index(kind: 's' | 'c', value: string): string {
    return `${this.#prefix}${kind}:${this.#crypto.indexId(kind, value)}`;
  }

  /** Resolves when `key` is filled or released by another instance, or after `ms`. */
  #wait(key: string, ms: number): { promise: Promise<void>; cancel(): void } {
    let wake!: () => void;
    const promise = new Promise<void>((resolve) => {
      wake = () => {
        clearTimeout(timer);
        const set = this.#waiters.get(key);
        set?.delete(wake);
        if (set?.size === 0) this.#waiters.delete(key);
        resolve();
      };
    });
    const timer = setTimeout(wake, ms);
    let set = this.#waiters.get(key);
    if (set === undefined) this.#waiters.set(key, (set = new Set()));
    set.add(wake);
    return { promise, cancel: wake };
  }

  #onMessage(message: string): void {
    const kind = message.slice(0, 2);
    const rest = message.slice(2);
    if (kind === 'f ' || kind === 'r ') {
      const waiting = this.#waiters.get(rest);
      if (waiting !== undefined) for (const wake of [...waiting]) wake();
      return;
    }
    if (kind !== 'p ') return;
    const m = this.#crypto.openMessage(rest) as Partial<{ t: unknown; k: unknown; s: unknown; c: unknown }> | undefined;
    if (m === undefined) return; // not sealed under our secret: ignored
    const request: PurgeRequest | undefined =
      typeof m.t === 'string' ? { token: m.t } : typeof m.s === 'string' ? { sub: m.s } : typeof m.c === 'string' ? { client_id: m.c } : undefined;
    if (request === undefined) return;
    for (const target of this.#targets) void target.purgeLocal(request);
    if (!('token' in request)) return;
    // This instance's own entries for the token in Redis, which the purging instance may not know (other routes, other bounds).
    const done = new Set(Array.isArray(m.k) ? m.k : []);
    const mine = [...new Set([...this.#targets].flatMap((t) => t.refsOf(request.token).map((r) => r.key)))].filter((k) => !done.has(k));
    if (mine.length > 0 && this.#up) this.#tombstone(mine).catch((err: unknown) => this.#failed(err, 'purge', true));
  }

  #clearLocals(why: string): void {
    if (this.#targets.size === 0) return;
    for (const target of this.#targets) target.clearLocal();
    this.#log.info({ redis: this.#where }, `local token cache cleared: ${why}`);
  }

  /**
   * `call`, or a rejection after `command_timeout_ms`. node-redis's own
   * command timeout ends when the command is written: a Redis that accepts
   * the connection and then stops answering (stopped, overloaded, a black
   * hole on the path) would hold every miss as long as it likes. The reply,
   * when it comes, is matched to its command by node-redis and dropped here.
   */
  #timed<T>(call: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new RedisTimeoutError(this.options.command_timeout_ms)), this.options.command_timeout_ms);
    });
    return Promise.race([call, late]).finally(() => clearTimeout(timer));
  }

  /** A call answered in time; `write`: one that changes Redis (only those clear the count of failed writes). */
  #answered(write = false): void {
    this.#failures = 0;
    if (write) this.#writeFailures = 0;
  }

  #failed(err: unknown, operation: 'get' | 'set' | 'lock' | 'purge' | 'dpop_proof', write = false): void {
    this.#metrics?.operation(operation, 'error');
    // Failed writes count on their own: reads that succeed in between (a read-only replica) do not hide them.
    if (++this.#failures >= FAILURES_TO_TRIP || (write && ++this.#writeFailures >= FAILURES_TO_TRIP)) this.#down(err);
  }

  /** Sharing off: calls are skipped from now on; a probe tries Redis every second. */
  #down(err: unknown): void {
    if (this.#closed) return;
    const wasUp = this.#up;
    this.#up = false;
    this.#metrics?.up(false);
    this.#probe ??= setInterval(() => void this.#tryResume(), PROBE_EVERY_MS).unref();
    if (wasUp || !this.#warned) {
      this.#warned = true;
      this.#downSince = this.#now();
      const reason = err instanceof Error ? err.message : String(err);
      this.#log.warn(
        { redis: this.#where, reason },
        'shared cache unavailable: sharing is off, requests are served from the local cache and the authorization server; retrying every second',
      );
    }
  }

  /** Sharing on again once Redis answers a PING in time. */
  async #tryResume(): Promise<void> {
    if (this.#up || this.#probing || this.#closed || !this.#client.isReady) return;
    this.#probing = true;
    try {
      if (!this.#versionChecked) {
        const info = await this.#timed(this.#client.info('server'));
        const version = /redis_version:(\d+)\.(\d+)/.exec(String(info));
        if (version !== null && Number(version[1]) < MIN_REDIS_MAJOR) {
          if (!this.#tooOld) this.#log.error({ redis: this.#where, redis_version: `${version[1]}.${version[2]}` }, 'shared cache not used: Redis 7.0 or later (or Valkey) is required; requests are served from the local cache and the authorization server');
          this.#tooOld = true;
          return;
        }
        this.#versionChecked = true;
      }
      await this.#timed(this.#client.ping());
      // Purges made meanwhile first: no entry they removed may be read back from Redis.
      if (!(await this.#replay())) return;
    } catch {
      return;
    } finally {
      this.#probing = false;
    }
    if (this.#closed) return;
    this.#up = true;
    this.#failures = 0;
    this.#writeFailures = 0;
    clearInterval(this.#probe);
    this.#probe = undefined;
    this.#metrics?.up(true);
    if (this.#warned) {
      this.#log.warn({ redis: this.#where, down_s: Math.round((this.#now() - this.#downSince) / 100) / 10 }, 'shared cache available again: sharing resumed');
      this.#warned = false;
    } else {
      this.#log.info({ redis: this.#where }, 'shared cache connected');
    }
  }
}

/** What tells one shared cache set-up from another: its options and the key secret they resolve to (hashed). */
export function sharedCacheIdentity(options: RedisCacheConfig, secret = keySecret(options)): string {
  return createHash('sha256').update(JSON.stringify(options)).update('\n').update(secret).digest('base64');
}

/** A call to Redis that got no answer within `command_timeout_ms`. */
class RedisTimeoutError extends Error {
  constructor(ms: number) {
    super(`no answer from Redis within ${ms} ms (command_timeout_ms)`);
    this.name = 'RedisTimeoutError';
  }
}

/** How long a purge's tombstones last at least: longer than any introspection begun before it (timeout_ms is 5 s by default). */
const TOMBSTONE_MS = 60_000;

/** A claim made without Redis: this instance introspects, and there is nothing to release. */
const WON_HERE: Claim = Object.freeze({ won: true as const, release: () => {} });
