import { createRequire } from 'node:module';
import { collectDefaultMetrics, Registry } from 'prom-client';

/*
 * Prometheus metrics, `phantom_gateway_*`, on only when `admin` is configured.
 *
 * The hot path only increments numbers in objects made ahead of time (a
 * series per label set, found through arrays and small maps that stop
 * growing after the first requests): no label hashing, no string built, no
 * allocation per request. prom-client renders them on scrape (text format,
 * escaping) and aggregates them over cluster workers (`AggregatorRegistry`),
 * through the metric shape its registry reads (`get()` returning name, help,
 * type, values, aggregator).
 */

import { DOORS } from './doors.js';

export { DOORS, PROXY, FORWARD_AUTH, ENVOY, type Door } from './doors.js';

/** Upper bounds (seconds) of the latency histograms: from a local answer (ms) to a timeout (s). */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);

/**
 * What became of one introspection. `active`/`inactive`: the server
 * answered about the token. The rest are failures: `timeout`, `unreachable`
 * (no connection, or cut), `unavailable` (503 or 429), `server_error`
 * (another 5xx), `rejected` (another status: usually the gateway's client
 * credentials), `invalid_answer`; and calls never sent: `overloaded` (the
 * queue of all clients is full), `client_queue_full` (one client's),
 * `not_ready` (discovery has not found the endpoint), `withdrawn` (every
 * requester left while it waited), `error` (anything else: a bug).
 */
export type IntrospectionOutcome =
  | 'active'
  | 'inactive'
  | 'timeout'
  | 'unreachable'
  | 'unavailable'
  | 'server_error'
  | 'rejected'
  | 'invalid_answer'
  | 'overloaded'
  | 'client_queue_full'
  | 'not_ready'
  | 'withdrawn'
  | 'error';

/** Outcomes that say the authorization server is down (as opposed to answering, or the call never leaving). */
const OUTAGES: ReadonlySet<IntrospectionOutcome> = new Set(['timeout', 'unreachable', 'unavailable', 'server_error']);
/** Outcomes of calls that were never sent: no latency to observe, nothing learnt about the server. */
const NOT_SENT: ReadonlySet<IntrospectionOutcome> = new Set(['overloaded', 'client_queue_full', 'not_ready', 'withdrawn']);

/** Introspections in a row that failed as outages before a server counts as down (see `ServerHealth`). */
export const DOWN_AFTER_OUTAGES = 3;
/** How long a server counts as down after its last outage, without a new one. */
export const DOWN_FOR_MS = 10_000;

type Labels = Record<string, string | number>;

interface Series {
  readonly labels: Labels;
  value: number;
}

interface MetricValue {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** The shape prom-client's registry renders and its cluster aggregator merges. */
interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly aggregator: 'sum' | 'first' | 'max' | 'min';
  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] };
}

class SimpleFamily implements Family {
  readonly #series: Series[] = [];
  /** By label values: a label set asked for again (after a reload) gets the series it had. */
  readonly #byLabels = new Map<string, Series>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
    readonly aggregator: 'sum' | 'first' | 'max' | 'min' = 'sum',
    readonly collect?: () => void,
  ) {}

  series(labels: Labels): Series {
    const key = JSON.stringify(labels);
    let s = this.#byLabels.get(key);
    if (s === undefined) {
      s = { labels, value: 0 };
      this.#series.push(s);
      this.#byLabels.set(key, s);
    }
    return s;
  }

  get() {
    this.collect?.();
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.#series.map((s) => ({ labels: s.labels, value: s.value })) };
  }
}

export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

class HistogramFamily implements Family {
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  readonly #series: HistogramSeries[] = [];
  readonly #byLabels = new Map<string, HistogramSeries>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[] = LATENCY_BUCKETS,
  ) {}

  series(labels: Labels): HistogramSeries {
    const key = JSON.stringify(labels);
    let s = this.#byLabels.get(key);
    if (s === undefined) {
      s = new HistogramSeries(labels, this.bounds);
      this.#series.push(s);
      this.#byLabels.set(key, s);
    }
    return s;
  }

  get() {
    const values: MetricValue[] = [];
    for (const s of this.#series) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += s.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...s.labels, le: i < this.bounds.length ? this.bounds[i]! : '+Inf' }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/**
 * Whether an authorization server is known to be down: its last
 * `DOWN_AFTER_OUTAGES` introspections in a row failed as outages (timeout,
 * unreachable, 503/429, 5xx) and the last of them is less than `DOWN_FOR_MS`
 * old. A server that has not been asked yet is not down (a fresh gateway
 * must look ready, or a load balancer never sends it the request that would
 * tell); one that stays unasked for `DOWN_FOR_MS` is given the benefit of
 * the doubt again.
 */
export class ServerHealth {
  outagesInARow = 0;
  lastOutageAt = 0;
  lastAnswerAt = 0;
  constructor(readonly server: string) {}

  record(outcome: IntrospectionOutcome, now: number): void {
    if (OUTAGES.has(outcome)) {
      this.outagesInARow++;
      this.lastOutageAt = now;
    } else if (!NOT_SENT.has(outcome) && outcome !== 'error') {
      this.outagesInARow = 0;
      this.lastAnswerAt = now;
    }
  }

  down(now: number): boolean {
    return this.outagesInARow >= DOWN_AFTER_OUTAGES && now - this.lastOutageAt < DOWN_FOR_MS;
  }
}

/** What an introspection client reports each call to (one per authorization server and client). */
export interface IntrospectionRecorder {
  record(outcome: IntrospectionOutcome, seconds: number): void;
}

/** What the token exchange counts. */
export interface ExchangeRecorder {
  /** A verdict from the cache. */
  hit(): void;
  /** Nothing cached: an introspection is started. */
  miss(): void;
  /** Nothing cached, and an introspection of the same token is under way: this request waits for it. */
  join(): void;
}

/** What the shared (Redis) cache reports. */
export interface SharedCacheRecorder {
  /** One call to Redis (or one skipped because it is known down). */
  operation(operation: 'get' | 'set' | 'lock' | 'purge' | 'dpop_proof', outcome: 'hit' | 'miss' | 'ok' | 'error' | 'skipped'): void;
  /** A cross-instance single-flight: this instance introspects (`won`), found another's answer after waiting (`filled`), or waited in vain and introspected itself (`gave_up`). */
  lock(outcome: 'won' | 'filled' | 'gave_up'): void;
  /** Whether Redis is being used (reachable and answering in time). */
  up(up: boolean): void;
}

/** What the in-process cache reports. */
export interface CacheRecorder {
  /** An entry pushed out by the bound (`max_entries`), not by its expiry. */
  evicted(kind: 'active' | 'inactive'): void;
}

export interface GatewayMetricsOptions {
  /** Default: this package's version. */
  version?: string;
  /** Also prom-client's default process metrics (CPU, memory, event loop, GC), prefixed. Default true. */
  processMetrics?: boolean;
  /** Clock for the health of authorization servers (tests). */
  now?: () => number;
}

let packageVersion: string | undefined;
function ownVersion(): string {
  if (packageVersion === undefined) {
    try {
      packageVersion = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
    } catch {
      packageVersion = 'unknown';
    }
  }
  return packageVersion;
}

/** Requests of one door and route, by status and then internal code. */
type ByStatus = Map<number, Map<string, Series>>;

/**
 * The gateway's metrics in one prom-client `Registry`. Hooks hold this
 * object (or undefined when metrics are off) and call its methods; every
 * method only bumps numbers.
 *
 * @example
 * const metrics = new GatewayMetrics({});
 * const guards = createGuards(config, { logger, metrics });
 * const text = await metrics.registry.metrics(); // Prometheus text format
 */
export class GatewayMetrics implements ExchangeRecorder, CacheRecorder {
  readonly registry: Registry;
  readonly #now: () => number;
  readonly #requestsFamily: SimpleFamily;
  readonly #inflight: Series[];
  /** Prebound in-flight decrements, one per door (a listener on the response's 'close'). */
  readonly #finished: Array<() => void>;
  readonly #hits: Series;
  readonly #misses: Series;
  readonly #joins: Series;
  readonly #evictions: { active: Series; inactive: Series };
  readonly #entries: { active: Series; inactive: Series };
  #cacheSizes: (() => { active: number; inactive: number }) | undefined;
  readonly #introspections: SimpleFamily;
  readonly #introspectionLatency: HistogramFamily;
  readonly #servers = new Map<string, ServerHealth>();
  readonly #recorders = new Map<string, IntrospectionRecorder>();
  readonly #upstreamFamily: HistogramFamily;
  readonly #upstreamErrorsFamily: SimpleFamily;
  #shared: SharedCacheRecorder | undefined;

  constructor(opts: GatewayMetricsOptions) {
    this.registry = new Registry();
    this.#now = opts.now ?? Date.now;
    const r = this.registry;
    const add = <F extends Family>(f: F): F => {
      r.registerMetric(f as never);
      return f;
    };

    const build = add(new SimpleFamily('phantom_gateway_build_info', 'The running version (always 1).', 'gauge', 'first'));
    build.series({ version: opts.version ?? ownVersion(), node_version: process.version }).value = 1;

    this.#requestsFamily = add(
      new SimpleFamily('phantom_gateway_requests_total', 'Requests answered, by front door, route (configured path; "" when none matched), status and internal code ("" when none).', 'counter'),
    );
    const inflight = add(new SimpleFamily('phantom_gateway_requests_in_flight', 'Requests received and not yet answered, by front door.', 'gauge'));
    this.#inflight = DOORS.map((door) => inflight.series({ door }));
    this.#finished = this.#inflight.map((s) => () => {
      s.value--;
    });

    this.#hits = add(new SimpleFamily('phantom_gateway_cache_hits_total', 'Tokens decided from the cache.', 'counter')).series({});
    this.#misses = add(new SimpleFamily('phantom_gateway_cache_misses_total', 'Tokens not in the cache, for which an introspection was started.', 'counter')).series({});
    this.#joins = add(
      new SimpleFamily('phantom_gateway_single_flight_joins_total', 'Tokens not in the cache whose introspection was already under way for another request: this one waited for it.', 'counter'),
    ).series({});
    const evictions = add(new SimpleFamily('phantom_gateway_cache_evictions_total', 'Cache entries pushed out by the bound (max_entries, max_negative_entries) before their expiry, by kind.', 'counter'));
    this.#evictions = { active: evictions.series({ kind: 'active' }), inactive: evictions.series({ kind: 'inactive' }) };
    const entries = add(
      new SimpleFamily('phantom_gateway_cache_entries', 'Entries in the in-process token cache, by kind (active tokens; inactive tokens remembered).', 'gauge', 'sum', () => this.#collectEntries()),
    );
    this.#entries = { active: entries.series({ kind: 'active' }), inactive: entries.series({ kind: 'inactive' }) };

    this.#introspections = add(new SimpleFamily('phantom_gateway_introspections_total', 'Introspection calls, by authorization server and outcome.', 'counter'));
    this.#introspectionLatency = add(
      new HistogramFamily('phantom_gateway_introspection_duration_seconds', 'Time from sending an introspection to its answer or failure, by authorization server (calls never sent are left out).'),
    );

    this.#upstreamFamily = add(new HistogramFamily('phantom_gateway_upstream_duration_seconds', 'Time from dispatching a request to the upstream to its response headers, by route.'));
    this.#upstreamErrorsFamily = add(
      new SimpleFamily('phantom_gateway_upstream_errors_total', 'Upstream requests that failed, by route and kind (unreachable, timeout, aborted: the response broke off mid-stream).', 'counter'),
    );

    if (opts.processMetrics !== false) collectDefaultMetrics({ register: r, prefix: 'phantom_gateway_' });
  }

  /**
   * The per-route series of one configuration: `routes` are its route paths
   * in order. Series of a path already counted are found again by their labels
   * (counters never go back across reloads).
   */
  forRoutes(routes: readonly string[]): RouteMetrics {
    return new RouteMetrics(routes, this.#requestsFamily, this.#upstreamFamily, this.#upstreamErrorsFamily);
  }

  /** A request arrived on `door`; it counts as in flight until `res` closes. */
  started(door: number, res: { on(event: 'close', listener: () => void): unknown }): void {
    this.#inflight[door]!.value++;
    res.on('close', this.#finished[door]!);
  }

  hit(): void {
    this.#hits.value++;
  }

  miss(): void {
    this.#misses.value++;
  }

  join(): void {
    this.#joins.value++;
  }

  evicted(kind: 'active' | 'inactive'): void {
    this.#evictions[kind].value++;
  }

  /** Reads the cache's sizes on each scrape (the last cache given: a reload's new guards replace the old). */
  watchCache(sizes: () => { active: number; inactive: number }): void {
    this.#cacheSizes = sizes;
  }

  #collectEntries(): void {
    const s = this.#cacheSizes?.() ?? { active: 0, inactive: 0 };
    this.#entries.active.value = s.active;
    this.#entries.inactive.value = s.inactive;
  }

  /** The recorder for one authorization server (`server`: its endpoint or issuer, without query). */
  introspectionServer(server: string): IntrospectionRecorder {
    // Clients of one server (another client_id, other bounds) share its series and its health.
    const known = this.#recorders.get(server);
    if (known !== undefined) return known;
    const h = new ServerHealth(server);
    this.#servers.set(server, h);
    const latency = this.#introspectionLatency.series({ server });
    const outcomes = new Map<IntrospectionOutcome, Series>();
    const family = this.#introspections;
    const now = this.#now;
    const recorder: IntrospectionRecorder = {
      record(outcome, seconds) {
        let s = outcomes.get(outcome);
        if (s === undefined) {
          s = family.series({ server, outcome });
          outcomes.set(outcome, s);
        }
        s.value++;
        if (!NOT_SENT.has(outcome)) latency.observe(seconds);
        h.record(outcome, now());
      },
    };
    this.#recorders.set(server, recorder);
    return recorder;
  }

  /** The shared cache's recorder (made on first use: its series appear only when `cache.redis` is configured). */
  sharedCache(): SharedCacheRecorder {
    if (this.#shared !== undefined) return this.#shared;
    const add = <F extends Family>(f: F): F => {
      this.registry.registerMetric(f as never);
      return f;
    };
    const ops = add(new SimpleFamily('phantom_gateway_shared_cache_operations_total', 'Calls to the shared cache (Redis), by operation and outcome (skipped: not made while Redis is known down).', 'counter'));
    const locks = add(
      new SimpleFamily('phantom_gateway_shared_cache_locks_total', 'Cross-instance single-flight: introspected here (won), answered by another instance after waiting (filled), or waited in vain (gave_up).', 'counter'),
    );
    // `min` over a cluster's workers: 0 when any of them cannot use Redis.
    const up = add(new SimpleFamily('phantom_gateway_shared_cache_up', 'Whether the shared cache (Redis) is in use: 1 reachable and answering in time, 0 not (served from the local cache and the authorization server).', 'gauge', 'min')).series({});
    const byKey = new Map<string, Series>();
    const bump = (family: SimpleFamily, labels: Record<string, string>, key: string): void => {
      let series = byKey.get(key);
      if (series === undefined) {
        series = family.series(labels);
        byKey.set(key, series);
      }
      series.value++;
    };
    this.#shared = {
      operation: (operation, outcome) => bump(ops, { operation, outcome }, `o${operation}:${outcome}`),
      lock: (outcome) => bump(locks, { outcome }, `l${outcome}`),
      up: (state) => {
        up.value = state ? 1 : 0;
      },
    };
    return this.#shared;
  }

  /** The authorization servers and whether each is known down (see `ServerHealth`). */
  authorizationServers(): Array<{ server: string; down: boolean; outages_in_a_row: number }> {
    const now = this.#now();
    return [...this.#servers.values()].map((h) => ({ server: h.server, down: h.down(now), outages_in_a_row: h.outagesInARow }));
  }
}

/**
 * The series one configuration counts its requests and upstream calls in,
 * by route index (-1: no route). Every method only bumps numbers; series
 * for a new status or code are made on first use.
 */
export class RouteMetrics {
  readonly #routes: readonly string[];
  readonly #requestsFamily: SimpleFamily;
  readonly #upstreamErrorsFamily: SimpleFamily;
  /** [door][route + 1] */
  readonly #requests: ByStatus[][];
  /** [route + 1] */
  readonly #upstreamLatency: HistogramSeries[];
  readonly #upstreamErrors: Array<Map<string, Series>>;

  constructor(routes: readonly string[], requests: SimpleFamily, upstream: HistogramFamily, upstreamErrors: SimpleFamily) {
    this.#routes = [...routes];
    this.#requestsFamily = requests;
    this.#upstreamErrorsFamily = upstreamErrors;
    const labels = ['', ...routes];
    this.#requests = DOORS.map(() => labels.map(() => new Map()));
    this.#upstreamLatency = labels.map((route) => upstream.series({ route }));
    this.#upstreamErrors = labels.map(() => new Map());
  }

  /** The label of route index `route` (-1, or one this configuration does not have: none). */
  label(route: number): string {
    return route < 0 ? '' : (this.#routes[route] ?? '');
  }

  request(door: number, route: number, status: number, code: string | undefined): void {
    const byStatus = this.#requests[door]![route + 1] ?? this.#requests[door]![0]!;
    let byCode = byStatus.get(status);
    if (byCode === undefined) {
      byCode = new Map();
      byStatus.set(status, byCode);
    }
    const c = code ?? '';
    let s = byCode.get(c);
    if (s === undefined) {
      s = this.#requestsFamily.series({ door: DOORS[door]!, route: this.label(route), status, code: c });
      byCode.set(c, s);
    }
    s.value++;
  }

  upstream(route: number, seconds: number): void {
    (this.#upstreamLatency[route + 1] ?? this.#upstreamLatency[0]!).observe(seconds);
  }

  upstreamError(route: number, kind: 'unreachable' | 'timeout' | 'aborted'): void {
    const m = this.#upstreamErrors[route + 1] ?? this.#upstreamErrors[0]!;
    let s = m.get(kind);
    if (s === undefined) {
      s = this.#upstreamErrorsFamily.series({ route: this.label(route), kind });
      m.set(kind, s);
    }
    s.value++;
  }
}

/** The metrics a configuration asks for: a `GatewayMetrics` when `admin` is set, else undefined (off). */
export function metricsFor(config: { readonly admin?: unknown }): GatewayMetrics | undefined {
  return config.admin === undefined ? undefined : new GatewayMetrics({});
}
