import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { createClient as CreateClient } from '@redis/client';
import type { RedisCacheConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import type { SharedCacheRecorder } from '../../observability/metrics.js';
import { activeToken, type ActiveToken, type TokenEntry } from '../entry.js';
import type { Clock, MemoryTokenCache } from '../memory.js';
import type { Claim, SharedRef, SharedTokenStore } from '../store.js';
import { CacheCrypto } from './crypto.js';
import { keySecret, loggableRedisUrl } from './options.js';

/*
 * The second cache level, shared by every gateway instance: Redis (or
 * Valkey) through node-redis.
 *
 * Keys (under `key_prefix`):
 *   t:<id>   an entry: sealed value, PX = its remaining life (reads never extend it)
 *   l:<id>   a short lock: the instance introspecting the token (SET NX PX lock_wait_ms)
 *   s:<h>    entry keys of one subject, c:<h> of one client (for purges): sorted sets
 *            scored by each entry's expiry, pruned of expired members on every write,
 *            PX >= their live entries'
 *   events   the pub/sub channel: "f <key>" filled, "r <key>" lock released, "p <sealed>" purge
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

/** Deletes the lock only if it is still ours (it may have expired and gone to another instance), then says it is released. */
const RELEASE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return redis.call('PUBLISH', ARGV[2], ARGV[3])";

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

/** A purge message as sealed on the channel. */
type PurgeMessage = { k: string[] } | { s: string } | { c: string };

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
  #probe: NodeJS.Timeout | undefined;
  #probing = false;
  #subscribed = false;
  #closed = false;
  #versionChecked = false;
  #tooOld = false;
  #users = 0;
  /** Local waits for another instance's introspection, by entry key. */
  readonly #waiters = new Map<string, Set<() => void>>();
  /** The first-level stores a purge message clears, with how many guards use each. */
  readonly #locals = new Map<MemoryTokenCache, number>();

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
    this.#client.connect().catch(() => {});
    this.#subscriber
      .connect()
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
    try {
      // One round trip, and the TTL of the very value read.
      [value, pttl] = (await this.#timed(this.#client.multi().get(ref.key).pTTL(ref.key).exec())) as unknown as [string | null, number];
    } catch (err) {
      this.#failed(err, 'get');
      return undefined;
    }
    this.#answered();
    const entry = value === null || pttl <= 0 ? undefined : this.#crypto.open(ref.material, ref.key, value);
    const now = this.#now();
    // Never longer than Redis keeps it, whatever the writer's clock said.
    const expiresAt = entry === undefined ? 0 : Math.min(entry.expiresAt, now + pttl);
    if (entry === undefined || expiresAt <= now) {
      this.#metrics?.operation('get', 'miss');
      return undefined;
    }
    this.#metrics?.operation('get', 'hit');
    if (expiresAt === entry.expiresAt) return entry;
    return entry.active ? activeToken(entry.authorization, entry.scope, expiresAt, undefined, { clientId: entry.clientId, sub: entry.sub }) : { active: false, expiresAt };
  }

  async set(ref: SharedRef, entry: TokenEntry): Promise<void> {
    if (!this.#up) {
      this.#metrics?.operation('set', 'skipped');
      return;
    }
    const ttl = Math.floor(entry.expiresAt - this.#now());
    if (ttl <= 0) return;
    const value = this.#crypto.seal(ref.material, ref.key, entry);
    const m = this.#client.multi().set(ref.key, value, { PX: ttl });
    if (entry.active) {
      // Expired members go with every write: an index holds the live entries only, however busy its client.
      const now = this.#now();
      for (const index of this.#indexesOf(entry)) m.zRemRangeByScore(index, '-inf', now).zAdd(index, { score: entry.expiresAt, value: ref.key }).pExpire(index, ttl, 'NX').pExpire(index, ttl, 'GT');
    }
    m.publish(this.#channel, `f ${ref.key}`);
    try {
      await this.#timed(m.exec());
    } catch (err) {
      this.#failed(err, 'set');
      return;
    }
    this.#answered();
    this.#metrics?.operation('set', 'ok');
  }

  async claim(ref: SharedRef): Promise<Claim> {
    const wait = this.options.lock_wait_ms;
    if (!this.#up || wait === 0) {
      if (wait !== 0) this.#metrics?.operation('lock', 'skipped');
      return WON_HERE;
    }
    const lock = `${this.#prefix}l:${ref.key.slice(this.#prefix.length + 2)}`;
    const mine = randomBytes(12).toString('base64');
    // Listening before asking: an answer published between the refusal and the wait is not missed.
    const settled = this.#wait(ref.key, wait);
    let reply: string | null;
    try {
      reply = await this.#timed(this.#client.set(lock, mine, { NX: true, PX: wait }));
    } catch (err) {
      settled.cancel();
      this.#failed(err, 'lock');
      return WON_HERE;
    }
    this.#answered();
    this.#metrics?.operation('lock', 'ok');
    if (reply !== 'OK') return { won: false, settled: settled.promise };
    settled.cancel();
    this.#metrics?.lock('won');
    return {
      won: true,
      release: () => {
        if (!this.#up) return;
        this.#timed(this.#client.eval(RELEASE_SCRIPT, { keys: [lock], arguments: [mine, this.#channel, `r ${ref.key}`] })).then(
          () => this.#answered(),
          (err: unknown) => this.#failed(err, 'lock'),
        );
      },
    };
  }

  /** Counts the outcome of a wait that did not win the claim: the other instance's answer was found, or not. */
  waited(found: boolean): void {
    this.#metrics?.lock(found ? 'filled' : 'gave_up');
  }

  /**
   * Removes `refs` from Redis and tells every instance to drop the local
   * entries `localKeys` (their first-level keys).
   */
  async purgeTokens(refs: readonly SharedRef[], localKeys: readonly string[]): Promise<SharedPurge> {
    return this.#purge(async () => (refs.length === 0 ? 0 : await this.#timed(this.#client.del(refs.map((r) => r.key)))), { k: [...localKeys] });
  }

  /** Removes every entry of a subject (`sub`) or client (`client_id`) from Redis and from every instance's local cache. */
  async purgeBy(kind: 'sub' | 'client_id', value: string): Promise<SharedPurge> {
    const index = this.#index(kind === 'sub' ? 's' : 'c', value);
    return this.#purge(
      async () => {
        // In batches: a busy client may have many live tokens, and no single command should carry them all.
        let removed = 0;
        for (let offset = 0; ; offset += PURGE_BATCH) {
          const members = await this.#timed(this.#client.zRange(index, this.#now(), '+inf', { BY: 'SCORE', LIMIT: { offset, count: PURGE_BATCH } }));
          if (members.length > 0) removed += await this.#timed(this.#client.del(members));
          if (members.length < PURGE_BATCH) break;
        }
        await this.#timed(this.#client.del(index));
        return removed;
      },
      kind === 'sub' ? { s: value } : { c: value },
    );
  }

  async #purge(remove: () => Promise<number>, message: PurgeMessage): Promise<SharedPurge> {
    if (!this.#up) {
      this.#metrics?.operation('purge', 'skipped');
      return { shared: 0, instances: 'unavailable' };
    }
    try {
      const shared = await remove();
      await this.#timed(this.#client.publish(this.#channel, `p ${this.#crypto.sealMessage(message)}`));
      this.#answered();
      this.#metrics?.operation('purge', 'ok');
      return { shared, instances: 'notified' };
    } catch (err) {
      this.#failed(err, 'purge');
      return { shared: 0, instances: 'unavailable' };
    }
  }

  /** `store` is cleared by purge messages from now on (one `detach` per `attach`). */
  attach(store: MemoryTokenCache): void {
    this.#locals.set(store, (this.#locals.get(store) ?? 0) + 1);
  }

  detach(store: MemoryTokenCache): void {
    const n = (this.#locals.get(store) ?? 0) - 1;
    if (n > 0) this.#locals.set(store, n);
    else this.#locals.delete(store);
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
    // Writes under way get a moment to land; a Redis that does not answer is cut.
    const ends = [this.#client, this.#subscriber].map(async (c) => {
      if (!c.isReady) return c.destroy();
      let timer: NodeJS.Timeout | undefined;
      const cut = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.command_timeout_ms).unref();
      });
      await Promise.race([c.close().catch(() => {}), cut]);
      clearTimeout(timer);
      if (c.isOpen) c.destroy();
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
    const m = this.#crypto.openMessage(rest) as Partial<{ k: unknown; s: unknown; c: unknown }> | undefined;
    if (m === undefined) return; // not sealed under our secret: ignored
    for (const store of this.#locals.keys()) {
      if (Array.isArray(m.k)) for (const k of m.k) if (typeof k === 'string') store.delete(k);
      if (typeof m.s === 'string') void store.deleteWhere((e) => e.sub === m.s);
      if (typeof m.c === 'string') void store.deleteWhere((e) => e.clientId === m.c);
    }
  }

  #clearLocals(why: string): void {
    if (this.#locals.size === 0) return;
    for (const store of this.#locals.keys()) store.clear();
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

  #answered(): void {
    this.#failures = 0;
  }

  #failed(err: unknown, operation: 'get' | 'set' | 'lock' | 'purge'): void {
    this.#metrics?.operation(operation, 'error');
    if (++this.#failures >= FAILURES_TO_TRIP) this.#down(err);
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
    } catch {
      return;
    } finally {
      this.#probing = false;
    }
    if (this.#closed) return;
    this.#up = true;
    this.#failures = 0;
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

/** A claim made without Redis: this instance introspects, and there is nothing to release. */
const WON_HERE: Claim = Object.freeze({ won: true as const, release: () => {} });
