import { MemoryTokenCache, type Clock } from '../cache/memory.js';
import type { PurgeOutcome, PurgeRequest } from '../cache/purge.js';
import { RedisSharedCache, sharedCacheIdentity, type PurgeTarget } from '../cache/redis/shared.js';
import type { SharedRef, TokenStore } from '../cache/store.js';
import { MINTING_RESPONSES, type GatewayConfig, type PhantomTokenOptions, type RouteConfig } from '../config/schema.js';
import { startupWarnings } from '../config/warnings.js';
import { IntrospectionClient } from '../introspection/client.js';
import { clientAuthFor } from '../introspection/client-auth.js';
import { dialectFor } from '../introspection/dialects/index.js';
import { metadataFor, type MetadataSource } from '../introspection/metadata.js';
import { mintingFor, type Jwks, type Minting, type SigningKey } from '../minting/index.js';
import type { Logger } from '../observability/logger.js';
import { loggable } from '../observability/startup.js';
import { WarnChannel } from '../observability/warn-limiter.js';
import { ScopePolicy } from '../policy/scope.js';
import { REFUSED, Router } from '../routing/router.js';
import { hkdfSync, randomBytes } from 'node:crypto';
import { keySecret } from '../cache/redis/options.js';
import { WindowNonces } from '../dpop/nonce.js';
import { LayeredReplayStore, MemoryReplayStore, type SharedFirstUse } from '../dpop/proof.js';
import { TokenExchange } from './exchange.js';
import { dpopWindowMs, RouteGuard, type SenderDeps } from './sender.js';
import type { GatewayMetrics, RouteMetrics } from '../observability/metrics.js';

export interface GuardsDeps {
  logger: Logger;
  /** Clock for cache lifetimes (tests move it). */
  now?: Clock;
  /**
   * Where answers are kept. Defaults to an in-process LRU bounded by
   * `cache.max_entries` / `cache.max_negative_entries`.
   */
  store?: TokenStore;
  /**
   * The key to mint with when the configuration names none: a cluster's
   * primary makes one and gives it to every worker, so they publish one JWKS.
   */
  signingKey?: SigningKey | undefined;
  /**
   * The guards of the configuration a reload replaces: discovered metadata
   * and the state of rate-limited outage warnings carry over for clients
   * with the same options (a reload neither waits for discovery again nor
   * loses the "recovered" line of an outage it warned about).
   */
  previous?: Guards | undefined;
  /** Prometheus metrics (`admin` configured); undefined: off. */
  metrics?: GatewayMetrics | undefined;
  /**
   * The secret DPoP server nonces are made with (32 bytes or more): a
   * cluster's primary gives every worker the same. Default: the previous
   * guards', else random. With `cache.redis` it is not used: the secret is
   * derived from the key secret (every instance then accepts every
   * instance's nonces).
   */
  dpopSecret?: Buffer | undefined;
  /** Another memory of DPoP proofs to ask after this process's (a cluster primary's); Redis instead when `cache.redis` is set. */
  dpopReplay?: SharedFirstUse | undefined;
  /**
   * The shared cache to use when `cache.redis` is configured. Defaults to
   * the previous guards' when its options and key secret are unchanged (a
   * reload keeps the connection), else a new connection.
   */
  shared?: RedisSharedCache | undefined;
}

/** What protects one route: its exchange (authorization server, client, caching bounds), its required scopes, its scheme and sender constraints. */
export type Guard = RouteGuard;

/** A configured route and what protects it. */
export interface GuardedRoute {
  /** Position in `config.routes`, so a front door can keep its own per-route state in an array. */
  readonly index: number;
  readonly config: RouteConfig;
  /** Undefined on an open route (`phantom_token: false`). */
  readonly guard: Guard | undefined;
}

/**
 * The engine every front door shares, built once from a validated
 * configuration: one token store, one introspection client per
 * authorization server and client, one exchange per set of caching bounds,
 * one policy per route, and the route table. Front doors (the reverse proxy,
 * the forward-auth listener, Envoy's gRPC check, the middleware) only
 * translate requests to it and its verdicts to responses; several of them
 * may share one `Guards`, and so one cache and one single-flight.
 *
 * @example
 * const guards = createGuards(config, { logger });
 * const d = await decide(guards, { method: 'GET', target: '/api/items', authorization: ['Bearer abc'], preflight: false, clientAddress: '10.0.0.1' });
 * // d.allow ? forward with d.token?.authorization : send renderRefusal(d.error)
 * await guards.close();
 */
export class Guards {
  readonly store: TokenStore;
  /** The second level shared with other instances (`cache.redis`); undefined when not configured. */
  readonly shared: RedisSharedCache | undefined;
  /** The clock cache lifetimes are measured with (epoch ms). */
  readonly now: Clock;
  readonly routes: readonly GuardedRoute[];
  /** What minted tokens are signed with and the keys to publish; undefined when no route mints. */
  readonly minting: Minting | undefined;
  /** The metrics the hooks report to; undefined when off. */
  readonly metrics: GatewayMetrics | undefined;
  /** Requests and upstream calls by route index of this configuration; undefined when metrics are off. */
  readonly routeMetrics: RouteMetrics | undefined;
  readonly #router: Router<GuardedRoute>;
  readonly #clients: IntrospectionClient[] = [];
  /** Every exchange (one per authorization server set-up and caching bounds): a purged token is removed under each one's key. */
  readonly #exchanges: TokenExchange[] = [];
  /** Metadata sources by client options (a reload's guards start from what these discovered). */
  readonly #metadata = new Map<string, MetadataSource>();
  /** Outage warnings by endpoint, shared by its clients and handed to a reload's guards. */
  readonly #outages = new Map<string, WarnChannel>();

  constructor(config: GatewayConfig, deps: GuardsDeps) {
    const { logger } = deps;
    this.now = deps.now ?? Date.now;
    const metrics = deps.metrics;
    this.metrics = metrics;
    // This configuration's own route labels: a reload builds new guards over the same metrics,
    // and requests of the previous configuration still finishing keep counting under theirs.
    this.routeMetrics = metrics?.forRoutes(config.routes.map((r) => r.path));
    this.store =
      deps.store ??
      new MemoryTokenCache({
        maxEntries: config.cache.max_entries,
        maxNegativeEntries: config.cache.max_negative_entries,
        ...(deps.now ? { now: deps.now } : {}),
        ...(metrics ? { onEvict: (kind: 'active' | 'inactive') => metrics.evicted(kind) } : {}),
      });
    const store = this.store;
    if (metrics !== undefined && store instanceof MemoryTokenCache) metrics.watchCache(() => ({ active: store.size - store.negativeSize, inactive: store.negativeSize }));
    const clients = new Map<string, IntrospectionClient>();
    const exchanges = new Map<string, TokenExchange>();

    const minting = mintingFor(config, {
      signingKey: deps.signingKey,
      ...(deps.now ? { now: deps.now } : {}),
      onNoAudience: () =>
        logger.warn(
          'a minted token has no aud: the introspection answer named none and minting.audience is not set (RFC 9068 requires aud; APIs that check it will refuse the token). Set minting.audience (logged once)',
        ),
    });
    this.minting = minting;
    if (minting?.generated) {
      logger.warn(
        { kid: minting.keys.signer.kid },
        'minting.signing_key_file is not set: minted tokens are signed with a key made at start. It changes on every restart, and several gateway instances each publish a different one, so APIs will reject tokens from the others. Development only: configure a signing key file.',
      );
    }
    if (minting?.derivedIssuer) {
      logger.warn({ iss: minting.minter.issuer }, "minting.issuer is not set: minted tokens carry the listener's address as iss; set it to the gateway's public URL");
    }

    const outagesFor = (where: string): WarnChannel => {
      const prev = deps.previous;
      let channel = this.#outages.get(where) ?? (prev === undefined ? undefined : prev.#outages.get(where));
      channel ??= new WarnChannel(logger, { endpoint: where }, 'introspection endpoint');
      this.#outages.set(where, channel);
      return channel;
    };
    const exchangeFor = (pt: Readonly<PhantomTokenOptions>): TokenExchange => {
      // Everything that makes a different client: where, how it authenticates, how it reads answers, its bounds.
      const { token_cache_seconds: _t, negative_cache_seconds: _n, max_token_length: _m, scope: _s, audience: _a, scheme: _sc, dpop: _d, forward_client_cert: _f, ...clientOptions } = pt;
      const clientKey = JSON.stringify(clientOptions);
      // Origin and path only: a query string may carry a key (some gateways in front of servers want one).
      const where = loggable(pt.introspection_endpoint ?? pt.issuer!);
      let client = clients.get(clientKey);
      if (client === undefined) {
        if (!pt.verify_ssl) logger.warn({ endpoint: where }, "verify_ssl is false: the introspection endpoint's TLS certificate is NOT verified; never do this in production");
        const metadata = metadataFor(pt, {
          initial: deps.previous === undefined ? undefined : deps.previous.#metadata.get(clientKey)?.current,
          warn: (e) => logger.warn({ code: e.code, issuer: pt.issuer }, e.detail),
          info: (detail) => logger.info({ issuer: pt.issuer }, detail),
        });
        this.#metadata.set(clientKey, metadata);
        client = new IntrospectionClient(
          {
            metadata,
            clientId: pt.client_id,
            auth: clientAuthFor(pt),
            dialect: dialectFor(pt.introspection_response, { clientId: pt.client_id, issuer: pt.issuer, metadata, timeoutMs: pt.timeout_ms, verifySsl: pt.verify_ssl, caFile: pt.ca_file }),
            minter: minting?.minter,
            issuer: pt.issuer,
            accessTokensOnly: pt.access_tokens_only,
            timeoutMs: pt.timeout_ms,
            verifySsl: pt.verify_ssl,
            caFile: pt.ca_file,
            maxAnswerBytes: pt.max_answer_bytes,
            connections: pt.connections,
            maxQueued: pt.max_queued,
            maxQueuedPerClient: pt.max_queued_per_client,
            ...(deps.now ? { now: deps.now } : {}),
            metrics: metrics?.introspectionServer(where),
            // Outages of this endpoint: one line when they start, a count a minute, one when over.
            outages: outagesFor(where),
          },
          (e) => logger.warn({ code: e.code, status: e.status, endpoint: where }, e.detail),
        );
        clients.set(clientKey, client);
        this.#clients.push(client);
      }
      const exchangeKey = JSON.stringify([clientKey, pt.token_cache_seconds, pt.negative_cache_seconds, pt.max_token_length]);
      let exchange = exchanges.get(exchangeKey);
      if (exchange === undefined) {
        exchange = new TokenExchange({
          introspector: client,
          cache: this.store,
          shared: this.shared,
          introspectionMs: pt.timeout_ms + 1000,
          // Only what can change an answer: the server (endpoint or issuer,
          // and the TLS trust that decides which server that is: an entry
          // fetched without certificate checks must never serve a route that
          // verifies), the client asking, how answers are read and checked
          // (a minted token is not the server's). Not the secret, timeouts or
          // pool sizes, so rotating a secret or resizing a pool keeps the
          // cache. Only ever hashed.
          namespace: JSON.stringify([
            pt.introspection_endpoint ?? null,
            pt.client_id,
            pt.verify_ssl,
            pt.ca_file ?? null,
            pt.issuer ?? null,
            pt.introspection_response,
            pt.access_tokens_only,
            // Whose keys vouch for a signed answer (a route trusting other keys must not take it from the cache).
            pt.jwks_uri ?? null,
            // A minted token is the gateway's: who minted it, with what, and what it carries
            // (a store shared by instances must not hand one instance another's token).
            MINTING_RESPONSES.has(pt.introspection_response) && minting !== undefined ? minting.identity : null,
          ]),
          tokenCacheSeconds: pt.token_cache_seconds,
          negativeCacheSeconds: pt.negative_cache_seconds,
          maxTokenLength: pt.max_token_length,
          ...(deps.now ? { now: deps.now } : {}),
          onInternalError: (err) => logger.error({ err }, 'internal error during token exchange'),
          metrics,
          // Checked once here: without debug, nothing is built per answer.
          ...(logger.isLevelEnabled('debug') ? { onCached: (f: Record<string, unknown>) => logger.debug({ ...f, endpoint: where }, 'token cached') } : {}),
        });
        exchanges.set(exchangeKey, exchange);
        this.#exchanges.push(exchange);
      }
      return exchange;
    };

    // DPoP proofs are remembered across reloads (a proof accepted before one is not accepted after it).
    const prev = deps.previous;
    // The same memory across reloads, resized: a proof used before a reload is refused after it.
    this.#replay = prev !== undefined ? prev.#replay : new MemoryReplayStore(config.cache.max_dpop_proofs, this.now);
    this.#replay.max = config.cache.max_dpop_proofs;
    // A longer window than the running configuration's would accept proofs it has already forgotten: those are refused.
    this.#dpopWindowMs = dpopWindowMs(config);
    if (prev !== undefined && this.#dpopWindowMs > prev.#dpopWindowMs) {
      this.#replay.forgetBefore(this.now() - prev.#dpopWindowMs);
      this.#replay.extend(this.#dpopWindowMs - prev.#dpopWindowMs);
    }
    let fullWarnedAt = -Infinity;
    const debug = logger.isLevelEnabled('debug');
    this.dpopSecret = deps.dpopSecret ?? prev?.dpopSecret ?? randomBytes(32);
    const needsNonces = config.routes.some((r) => r.phantom_token !== false && r.phantom_token.scheme !== 'Bearer' && r.phantom_token.dpop.nonce);
    const sender: SenderDeps = {
      replay: this.#replay,
      // Every proof is remembered for the longest window of the configuration: a reload that lengthens one route's window to it forgets none.
      rememberMs: this.#dpopWindowMs,
      // With Redis, the secret every instance derives from the key secret (read only when some route asks for nonces).
      nonces: needsNonces ? new WindowNonces(nonceSecretOf(config) ?? this.dpopSecret, nonceWindow(config), this.now) : undefined,
      now: this.now,
      onProofRefused: (failure: string, detail: string) => {
        if (failure === 'full') {
          // Once a minute at most: every DPoP request is refused (503) while it lasts.
          if (this.now() - fullWarnedAt < 60_000) return;
          fullWarnedAt = this.now();
          logger.warn(
            { max_dpop_proofs: this.#replay.max },
            'the DPoP replay memory is full of proofs still in their window: new proofs are refused with 503 until some expire. Raise cache.max_dpop_proofs (it must hold the DPoP requests of one max_age_seconds window), or look for a client flooding with proofs of a bound token of its own',
          );
        } else if (debug) logger.debug({ dpop_failure: failure }, `DPoP proof refused: ${detail}`);
      },
    };

    // Last, so that nothing thrown before leaves its connections open; and released if the routes throw.
    this.shared = sharedFor(config, deps);
    // With Redis, a proof used at one instance is refused at every other.
    const sharedReplay = this.shared ?? deps.dpopReplay;
    if (sharedReplay !== undefined) sender.replay = new LayeredReplayStore(this.#replay, sharedReplay);
    try {
      this.routes = Object.freeze(
        config.routes.map((r, index): GuardedRoute => {
          const pt = r.phantom_token;
          const guard = pt === false ? undefined : new RouteGuard(exchangeFor(pt), new ScopePolicy(pt.scope, pt.audience), pt, sender);
          return Object.freeze({ index, config: r, guard });
        }),
      );
    } catch (err) {
      void this.#releaseShared();
      throw err;
    }
    if (this.shared !== undefined && store instanceof MemoryTokenCache) {
      // Purge messages from other instances: this configuration's keys for a token, in its store.
      this.#purgeTarget = { purgeLocal: (request) => this.#purgeLocal(request), refsOf: (token) => this.#refsOf(token), clearLocal: () => store.clear() };
      this.shared.attach(this.#purgeTarget);
    }
    this.#router = new Router(this.routes.map((r) => ({ prefix: r.config.path, value: r })));
    for (const w of startupWarnings(config)) logger.warn(w.fields, w.message);
  }

  /**
   * The route for a request path (already checked by `checkTarget`): the
   * route, undefined when none matches (404), or `REFUSED` when the path's
   * spellings pick routes whose protection does not compare (400).
   */
  forRoute(path: string): GuardedRoute | undefined | typeof REFUSED {
    const m = this.#router.match(path);
    return m === REFUSED || m === undefined ? m : m.value;
  }

  /**
   * The JWKS to publish at `/.well-known/jwks.json` (the keys minted tokens
   * verify with); undefined when no route mints.
   */
  jwks(): Jwks | undefined {
    return this.minting?.keys.jwks();
  }

  /** Index in `routes` of the route `path` goes to; -1 when none (metrics label requests by route, never by path). */
  routeIndex(path: string): number {
    const m = this.#router.match(path);
    return m === REFUSED || m === undefined ? -1 : m.value.index;
  }

  /** Whether every authorization server's endpoint is known (discovery may still be waiting). */
  get ready(): boolean {
    return this.#clients.every((c) => c.ready);
  }

  /** Introspections running and waiting for a connection, over every introspection client (tests, metrics). */
  introspectionLoad(): { running: number; queued: number } {
    let running = 0;
    let queued = 0;
    for (const c of this.#clients) {
      running += c.load.running;
      queued += c.load.queued;
    }
    return { running, queued };
  }

  /**
   * Removes cached tokens before their time (`POST /cache/purge`): one
   * token under every authorization server set-up it may be cached for, or
   * every token of a subject or client.
   */
  async purge(request: PurgeRequest): Promise<PurgeOutcome> {
    const local = await this.#purgeLocal(request);
    const shared = this.shared;
    if (shared === undefined) return { local, shared: 0, instances: 'not_configured' };
    if ('token' in request) return { local, ...(await shared.purgeToken(request.token, this.#refsOf(request.token))) };
    return { local, ...(await ('sub' in request ? shared.purgeBy('sub', request.sub) : shared.purgeBy('client_id', request.client_id))) };
  }

  /** Removes what `request` names from the local store (a purge made here, or one another instance published); how many. */
  async #purgeLocal(request: PurgeRequest): Promise<number> {
    const store = this.store;
    if ('token' in request) {
      let removed = 0;
      for (const exchange of this.#exchanges) {
        const key = exchange.keyOf(request.token);
        if (store instanceof MemoryTokenCache) removed += store.delete(key) ? 1 : 0;
        else await store.delete(key);
      }
      return removed;
    }
    if (!(store instanceof MemoryTokenCache)) return 0;
    return store.deleteWhere('sub' in request ? (e) => e.sub === request.sub : (e) => e.clientId === request.client_id);
  }

  /** The shared cache's state (`/readyz`, metrics): undefined when `cache.redis` is not configured. */
  sharedCacheState(): 'up' | 'down' | undefined {
    return this.shared?.state;
  }

  /** Lets introspections under way finish, then closes the connections to the authorization servers. */
  async close(): Promise<void> {
    await Promise.all([...this.#clients.map((c) => c.close()), this.#releaseShared()]);
  }

  /** Cuts every call to the authorization servers at once. */
  async destroy(): Promise<void> {
    await Promise.all([...this.#clients.map((c) => c.destroy()), this.#releaseShared()]);
  }

  /** The refs `token` has in the shared store under every exchange. */
  #refsOf(token: string): SharedRef[] {
    return this.#exchanges.flatMap((exchange) => exchange.sharedRefOf(token) ?? []);
  }

  /** Where DPoP proofs are remembered against replay, and its bound. */
  readonly #replay: MemoryReplayStore;
  /** The longest a proof of this configuration is remembered (ms): the longest window of its DPoP routes. */
  readonly #dpopWindowMs: number;
  /** What DPoP server nonces are made with without Redis (handed to a reload's guards). */
  readonly dpopSecret: Buffer;

  #purgeTarget: PurgeTarget | undefined;
  #sharedReleased = false;
  /** This configuration is done with the shared cache (closed when no other uses it). */
  async #releaseShared(): Promise<void> {
    const shared = this.shared;
    if (shared === undefined || this.#sharedReleased) return;
    this.#sharedReleased = true;
    if (this.#purgeTarget !== undefined) shared.detach(this.#purgeTarget);
    await shared.release();
  }
}

/**
 * The shared cache for `config`: the one given, the previous guards' when
 * nothing about it changed, or a new one. Retained once for the new guards.
 */
function sharedFor(config: GatewayConfig, deps: GuardsDeps): RedisSharedCache | undefined {
  const options = config.cache.redis;
  if (options === undefined) return undefined;
  if (deps.shared !== undefined) return deps.shared.retain();
  const prev = deps.previous?.shared;
  if (prev !== undefined && prev.identity === sharedCacheIdentity(options)) return prev.retain();
  return new RedisSharedCache(options, { logger: deps.logger, metrics: deps.metrics?.sharedCache(), ...(deps.now ? { now: deps.now } : {}) }).retain();
}

/** The nonce secret every instance sharing `cache.redis` derives from its key secret; undefined without Redis. */
function nonceSecretOf(config: GatewayConfig): Buffer | undefined {
  const redis = config.cache.redis;
  if (redis === undefined) return undefined;
  return Buffer.from(hkdfSync('sha256', keySecret(redis), 'phantom-gateway dpop nonces', 'dpop-nonce', 32));
}

/** How long one nonce window lasts: the shortest proof age a nonce route allows (at least 10 s). */
function nonceWindow(config: GatewayConfig): number {
  let w = Infinity;
  for (const r of config.routes) if (r.phantom_token !== false && r.phantom_token.dpop.nonce) w = Math.min(w, r.phantom_token.dpop.max_age_seconds);
  return Math.max(10, w === Infinity ? 60 : w);
}

/** Builds the guards for a validated configuration (see `Guards`). */
export function createGuards(config: GatewayConfig, deps: GuardsDeps): Guards {
  return new Guards(config, deps);
}


export { REFUSED };
