import { hash } from 'node:crypto';
import type { Span } from '@opentelemetry/api';
import { activeToken, bindingOf, positiveLifetime, whoOf, type ActiveToken, type TokenEntry, type TtlReason } from '../cache/entry.js';
import type { TraceHeaders } from '../observability/trace-context.js';
import type { Clock } from '../cache/memory.js';
import type { SharedRef, SharedTokenStore, TokenStore } from '../cache/store.js';
import type { IntrospectionAnswer, IntrospectionRequest } from '../introspection/client.js';
import { scopeString, type ScopePolicy } from '../policy/scope.js';
import { parseBearer } from './bearer.js';
import { GatewayError, TOKEN_INACTIVE } from './errors.js';
import type { ExchangeRecorder } from '../observability/metrics.js';

/** What the exchange needs from an introspection client. */
export interface Introspector {
  /** `request` says whose call it is; the introspector may set its `withdraw`. */
  introspect(token: string, request?: IntrospectionRequest): Promise<IntrospectionAnswer>;
}

/** The request a token came with, as far as the exchange cares. */
export interface Requester {
  /** The client's address; read only when the token needs an introspection (never on a cache hit). */
  readonly clientAddress: string;
  /**
   * The request's checked W3C trace context, passed on to the introspection
   * the request starts (single-flight: a request that joins one under way
   * does not change it). Read on a miss only.
   */
  readonly traceHeaders?: TraceHeaders | undefined;
  /** The request's server span, when spans are recorded: the introspection's span is its child. Read on a miss only. */
  readonly span?: Span | undefined;
}

/** One introspection and the requesters waiting for it. */
interface Flight {
  readonly key: string;
  readonly request: IntrospectionRequest;
  verdict: Promise<Verdict>;
  /** Requesters that have not withdrawn. */
  waiters: number;
  /** Expiry (epoch ms) of the entry the verdict rests on, once known; 0 when none is kept. */
  expiresAt: number;
  /** The token in the shared store, when its answer is to be written there too. */
  shared?: SharedRef | undefined;
  /** That write, once made (it never rejects). */
  written?: Promise<void> | undefined;
  /** The store's purge count when the flight started: after a purge its answer is not kept, nor joined. */
  readonly purges: number;
}

/** Filled in by `authorize` when asked: how long the cached state behind a verdict lives. */
export interface Seen {
  /** Expiry (epoch ms) of the cache entry the verdict rests on; 0 when nothing is cached (a refusal before any token, an outage, an answer not kept). */
  expiresAt: number;
  /** Set when the token was found in the cache at once (a DPoP request's verdict is a promise all the same: its proof is checked first). */
  hit?: boolean;
}

export interface TokenExchangeOptions {
  introspector: Introspector;
  /** Where answers are kept; a synchronous store answers cache hits without a promise. */
  cache: TokenStore;
  /**
   * A second level shared with other instances (Redis): asked after a miss
   * in `cache`, written with every answer kept, and the place where one
   * instance claims the introspection of a new token for all of them.
   */
  shared?: SharedTokenStore | undefined;
  /**
   * Distinguishes introspection set-ups that share one cache (endpoint,
   * client): the same token may mean different things at different servers.
   */
  namespace: string;
  /** Upper bound, in seconds, on caching one positive answer. 0 = never cache. */
  tokenCacheSeconds: number;
  /** Seconds to remember an inactive token. 0 = never. */
  negativeCacheSeconds: number;
  /**
   * How long one introspection may take (its timeout and a margin): how
   * long another instance's claim on a token lasts. Default 6000.
   */
  introspectionMs?: number;
  maxTokenLength: number;
  now?: Clock;
  /** Told about unexpected internal failures (bugs), never about tokens. */
  onInternalError?: (err: unknown) => void;
  /** Counts hits, misses and single-flight joins; undefined: metrics off. */
  metrics?: ExchangeRecorder | undefined;
  /**
   * Told how long each answer is kept and why (`log.level: debug`); given
   * only when debug lines are written, so nothing is built otherwise. `key`
   * is the first 8 hex digits of the cache key (a SHA-256 of the token and
   * the namespace): enough to tell tokens apart in a log, nothing to find a
   * token by.
   */
  onCached?: (fields: { key: string; ttl_s: number; reason: TtlReason }) => void;
}

/** A verdict: the token's cached state, or a refusal. */
export type Verdict = ActiveToken | GatewayError;

/**
 * The framework-free heart of the gateway: `Authorization` header in, verdict
 * out. Adapters (reverse proxy, forward-auth, middleware) only translate the
 * verdict into their own responses.
 *
 * A cache hit returns synchronously; a miss returns a promise shared by every
 * concurrent caller with the same token (single-flight), so one token costs
 * one introspection however many requests carry it at once.
 */
export class TokenExchange {
  readonly #o: TokenExchangeOptions;
  readonly #now: Clock;
  readonly #inflight = new Map<string, Flight>();
  /** Each waiting requester's promise, to find its flight when it withdraws. */
  readonly #waiting = new WeakMap<Promise<Verdict>, Flight>();
  readonly #prefix: string;
  readonly #metrics: ExchangeRecorder | undefined;

  constructor(opts: TokenExchangeOptions) {
    this.#o = opts;
    this.#metrics = opts.metrics;
    this.#now = opts.now ?? Date.now;
    // The caching bounds are part of the key: routes sharing one cache and one
    // authorization server may bound caching differently, and an entry stored
    // under a longer bound must never answer a route that asked for a shorter
    // one (a route with token_cache_seconds: 0 would otherwise accept a revoked
    // token that another route had cached).
    this.#prefix = `${opts.namespace}\n${opts.tokenCacheSeconds}\n${opts.negativeCacheSeconds}\n`;
  }

  /**
   * Resolves the bearer token in `authorization` and applies `policy`.
   * `requester` is consulted only on a miss: introspections wait, and are
   * bounded, per client address; a requester joining an introspection already
   * under way costs nothing and counts against no bound. `seen`, when
   * given, learns how long the cached state behind the verdict lives (for a
   * front door whose decisions are cached outside, such as NGINX's).
   */
  authorize(authorization: string | undefined, policy: ScopePolicy, requester?: Requester, seen?: Seen): Verdict | Promise<Verdict> {
    const token = parseBearer(authorization, this.#o.maxTokenLength);
    if (typeof token !== 'string') return token;
    const found = this.resolve(token, requester, seen);
    if (!(found instanceof Promise)) return found instanceof GatewayError ? found : (policy.check(found) ?? found);
    return this.chain(found, (v) => (v instanceof GatewayError ? v : (policy.check(v) ?? v)));
  }

  /**
   * The token's state, without a route's checks: the cached entry (at once,
   * on a hit), or the answer of the introspection it needs (a promise,
   * shared by every caller with the same token); `TOKEN_INACTIVE` or a
   * failure otherwise. `withdraw` takes the promise back.
   */
  resolve(token: string, requester?: Requester, seen?: Seen): Verdict | Promise<Verdict> {
    const key = cacheKey(this.#prefix, token);
    const found = this.#o.cache.get(key);
    if (found !== undefined && !(found instanceof Promise)) {
      this.#metrics?.hit();
      if (seen !== undefined) {
        seen.expiresAt = found.expiresAt;
        seen.hit = true;
      }
      return found.active ? found : TOKEN_INACTIVE;
    }
    const flight = this.#miss(key, token, requester, found);
    flight.waiters++;
    const waiting: Promise<Verdict> = flight.verdict.then((v) => {
      this.#waiting.delete(waiting);
      if (seen !== undefined) seen.expiresAt = flight.expiresAt;
      return v;
    });
    this.#waiting.set(waiting, flight);
    return waiting;
  }

  /**
   * `pending` (from `resolve`) continued with `then`: a promise that
   * `withdraw` takes back as it would `pending`.
   */
  chain(pending: Promise<Verdict>, then: (v: Verdict) => Verdict | Promise<Verdict>): Promise<Verdict> {
    const flight = this.#waiting.get(pending);
    const next: Promise<Verdict> = pending.then((v) => {
      this.#waiting.delete(next);
      return then(v);
    });
    if (flight !== undefined) {
      this.#waiting.delete(pending);
      this.#waiting.set(next, flight);
    }
    return next;
  }

  /**
   * The requester that got `pending` from `authorize` went away. When it was
   * the last one waiting and the introspection has not been sent yet, the
   * introspection is dropped from the queue and never sent. One already sent
   * runs to its end (its answer is cached for the next request).
   */
  withdraw(pending: Verdict | Promise<Verdict>): void {
    if (!(pending instanceof Promise)) return;
    const flight = this.#waiting.get(pending);
    if (flight === undefined) return;
    this.#waiting.delete(pending);
    if (--flight.waiters > 0) return;
    // Forgotten at once, so that a later request for the token starts afresh
    // instead of joining an introspection that will never be made.
    if (flight.request.withdraw?.() === true && this.#inflight.get(flight.key) === flight) this.#inflight.delete(flight.key);
  }

  /**
   * The flight for `key`: the one under way, or a new one. `stored` is an
   * asynchronous store's pending read: a new flight looks there first and
   * introspects only when it finds nothing.
   */
  #miss(key: string, token: string, requester: Requester | undefined, stored: Promise<TokenEntry | undefined> | undefined): Flight {
    let flight = this.#inflight.get(key);
    const purges = this.#o.cache.purges ?? 0;
    // A flight that started before a purge answers for the token as it was: a request after the purge starts afresh.
    if (flight === undefined || flight.purges !== purges) {
      const f: Flight = {
        key,
        request: requester === undefined ? { client: '' } : { client: requester.clientAddress, trace: requester.traceHeaders, span: requester.span },
        verdict: NOT_YET,
        waiters: 0,
        expiresAt: 0,
        purges,
      };
      const run = stored !== undefined ? this.#lookup(stored, key, token, f) : this.#o.shared !== undefined ? this.#viaShared(this.#o.shared, key, token, f) : this.#introspect(key, token, f);
      f.verdict = run.finally(() => {
        if (this.#inflight.get(key) === f) this.#inflight.delete(key);
      });
      this.#inflight.set(key, f);
      flight = f;
    } else this.#metrics?.join();
    return flight;
  }

  async #lookup(stored: Promise<TokenEntry | undefined>, key: string, token: string, flight: Flight): Promise<Verdict> {
    let entry: TokenEntry | undefined;
    try {
      entry = await stored;
    } catch (err) {
      // A store that cannot answer is a miss, never a refusal.
      this.#o.onInternalError?.(err);
    }
    if (entry !== undefined && entry.expiresAt > this.#now()) {
      this.#metrics?.hit();
      flight.expiresAt = entry.expiresAt;
      return entry.active ? entry : TOKEN_INACTIVE;
    }
    return this.#introspect(key, token, flight);
  }

  /**
   * A miss in the first level: the shared store's entry, else the
   * introspection, made here only when this instance wins the claim or the
   * instance that won it brought nothing in time.
   */
  async #viaShared(shared: SharedTokenStore, key: string, token: string, flight: Flight): Promise<Verdict> {
    const ref = shared.ref(this.#prefix, token);
    let entry = await shared.get(ref);
    if (entry === undefined) {
      const claim = await shared.claim(ref, this.#o.introspectionMs ?? 6000);
      flight.shared = ref;
      if (!claim.won) {
        await claim.settled;
        entry = await shared.get(ref);
        shared.waited?.(entry !== undefined);
      }
      if (entry === undefined) {
        try {
          const verdict = await this.#introspect(key, token, flight);
          // Shared before it is answered: once a client has its answer, every instance finds it.
          await flight.written;
          return verdict;
        } finally {
          if (claim.won) claim.release(flight.expiresAt > 0);
        }
      }
    }
    this.#metrics?.hit();
    if (flight.purges !== (this.#o.cache.purges ?? 0)) return entry.active ? entry : TOKEN_INACTIVE;
    flight.expiresAt = entry.expiresAt;
    // Its remaining life only (the shared store never answers past Redis's own TTL).
    this.#o.onCached?.({ key: shortKey(key), ttl_s: Math.max(0, Math.round((entry.expiresAt - this.#now()) / 100) / 10), reason: 'shared' });
    const written = this.#o.cache.set(key, entry);
    if (written instanceof Promise) written.catch((err: unknown) => this.#o.onInternalError?.(err));
    return entry.active ? entry : TOKEN_INACTIVE;
  }

  async #introspect(key: string, token: string, flight: Flight): Promise<Verdict> {
    this.#metrics?.miss();
    let answer: IntrospectionAnswer;
    try {
      answer = await this.#o.introspector.introspect(token, flight.request);
    } catch (err) {
      // Failures of the authorization server are never cached.
      if (err instanceof GatewayError) return err;
      this.#o.onInternalError?.(err);
      return new GatewayError('ERR_INTERNAL', { cause: err });
    }
    const now = this.#now();
    if (!answer.active) {
      if (answer.reason !== 'no_jwt') this.#remember(key, { active: false, expiresAt: now + this.#o.negativeCacheSeconds * 1000 }, flight, 'negative');
      else this.#o.onCached?.({ key: shortKey(key), ttl_s: 0, reason: 'not_kept' });
      return TOKEN_INACTIVE;
    }
    const { claims } = answer;
    const { ttlMs, reason } = positiveLifetime(now, this.#o.tokenCacheSeconds, answer.maxAge, claims.exp);
    if (reason === 'expired') {
      this.#remember(key, { active: false, expiresAt: now + this.#o.negativeCacheSeconds * 1000 }, flight, 'expired');
      return TOKEN_INACTIVE;
    }
    const entry: ActiveToken = activeToken(flat(`Bearer ${answer.jwt}`), scopeString(claims), now + ttlMs, undefined, whoOf(claims), bindingOf(claims));
    this.#remember(key, entry, flight, reason);
    return entry;
  }

  #remember(key: string, entry: TokenEntry, flight: Flight, reason: TtlReason): void {
    // Purged while it was being introspected: the answer predates the purge, keep nothing.
    if (flight.purges !== (this.#o.cache.purges ?? 0)) return;
    const ttlMs = entry.expiresAt - this.#now();
    this.#o.onCached?.({ key: shortKey(key), ttl_s: Math.max(0, Math.round(ttlMs / 100) / 10), reason });
    if (ttlMs <= 0) return;
    flight.expiresAt = entry.expiresAt;
    const written = this.#o.cache.set(key, entry);
    if (written instanceof Promise) written.catch((err: unknown) => this.#o.onInternalError?.(err));
    if (flight.shared !== undefined) flight.written = this.#o.shared?.set(flight.shared, entry);
  }

  /** The key this exchange caches `token` under (a purge removes it). */
  keyOf(token: string): string {
    return cacheKey(this.#prefix, token);
  }

  /** The token as the shared store names it; undefined without one. */
  sharedRefOf(token: string): SharedRef | undefined {
    return this.#o.shared?.ref(this.#prefix, token);
  }

  /** Introspections in flight right now (for tests and metrics). */
  get inflight(): number {
    return this.#inflight.size;
  }
}

/** Placeholder while a flight's promise is being made. */
const NOT_YET: Promise<Verdict> = new Promise<Verdict>(() => {});

/**
 * A concatenation as one flat string. V8 keeps `a + b` as a pair of pointers
 * until first use and then flattens it into a copy, so a cached entry would
 * hold the JWT twice; a Buffer round-trip stores it once. (JWTs are ASCII.)
 */
function flat(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

/** The first 8 hex digits of a cache key, for the debug log. */
function shortKey(key: string): string {
  return Buffer.from(key, 'base64').toString('hex', 0, 4);
}

/** Cache key: SHA-256 of namespace, caching bounds and token. The raw token is never stored. */
export function cacheKey(prefix: string, token: string): string {
  // One-shot hash: a third of the cost of createHash().update().digest().
  return hash('sha256', prefix + token, 'base64');
}
