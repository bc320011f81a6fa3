import cluster, { type Worker } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry } from 'prom-client';
import type { PurgeOutcome, PurgeRequest } from '../cache/purge.js';
import type { GatewayConfig } from '../config/schema.js';
import type { Guards } from '../core/guards.js';
import type { Logger } from '../observability/logger.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { AdminListener, type AdminPurgeOutcome, type Readiness, type ReloadOutcome } from './server.js';

/*
 * The admin listener as the command line runs it: in the gateway's own
 * process (one process), or in a cluster's primary, which aggregates its
 * workers' metrics and readiness over the cluster's IPC channel, and hands
 * a purge to every worker (each has its own cache).
 */

/** The admin listener of a running gateway, and the state `/readyz` reports. */
export interface AdminHandle {
  /** Undefined in a cluster worker (the primary listens). */
  readonly listener: AdminListener | undefined;
  readonly address: AddressInfo | undefined;
  /** Stopping: `/readyz` answers 503 from now on (the listener itself stays until `close()`). */
  drain(): void;
  close(): Promise<void>;
}

/** The state a process's readiness is decided from. */
export interface ProcessState {
  up: boolean;
  draining: boolean;
}

/**
 * Ready: every listener up, not draining, discovery done for every
 * authorization server, and none of them known down (see `ServerHealth`:
 * several introspections in a row failed as outages, the last one recently).
 * With a shared cache, `shared_cache` says whether it is reachable; a
 * shared cache down leaves the process ready (degraded: it serves from its
 * own cache and the authorization servers).
 */
export function processReadiness(state: ProcessState, guards: Guards): Readiness {
  const discovery = guards.ready;
  const servers = guards.metrics?.authorizationServers() ?? [];
  const ready = state.up && !state.draining && discovery && servers.every((s) => !s.down);
  const shared = guards.sharedCacheState();
  return {
    ready,
    checks: { listening: state.up, draining: state.draining, discovery: discovery ? 'done' : 'waiting', authorization_servers: servers, ...(shared !== undefined ? { shared_cache: shared } : {}) },
  };
}

function handle(listener: AdminListener | undefined, address: AddressInfo | undefined, state: ProcessState): AdminHandle {
  return {
    listener,
    address,
    drain: () => {
      state.draining = true;
    },
    close: async () => listener?.close(),
  };
}

/**
 * Starts the admin listener of a gateway process, once its other listeners
 * are up (undefined when `admin` is not configured). In a cluster worker it
 * only answers the primary, which runs the listener.
 */
export async function startAdmin(
  config: GatewayConfig,
  deps: {
    logger: Logger;
    /** The guards serving now (a reload replaces them). */
    guards: () => Guards;
    metrics: GatewayMetrics | undefined;
    reload?: (() => Promise<ReloadOutcome>) | undefined;
    /** `POST /cache/purge`; by default the purge of the guards serving now. */
    purge?: ((request: PurgeRequest) => Promise<PurgeOutcome>) | undefined;
  },
): Promise<AdminHandle | undefined> {
  if (config.admin === undefined || deps.metrics === undefined) return undefined;
  const state: ProcessState = { up: true, draining: false };
  const purge = deps.purge ?? ((request: PurgeRequest) => deps.guards().purge(request));
  if (cluster.isWorker) {
    serveWorkerAdmin(deps.metrics, () => processReadiness(state, deps.guards()), purge);
    return handle(undefined, undefined, state);
  }
  const registry = deps.metrics.registry;
  const listener = new AdminListener(config.admin, {
    logger: deps.logger,
    metrics: { contentType: registry.contentType, scrape: () => registry.metrics() },
    readiness: () => processReadiness(state, deps.guards()),
    reload: deps.reload,
    purge,
  });
  const address = await listener.listen();
  deps.logger.info({ host: address.address, port: address.port }, 'admin listening');
  return handle(listener, address, state);
}

const READY_ASK = 'phantom-gateway:readyz?';
const READY_ANSWER = 'phantom-gateway:readyz';
const PURGE_ASK = 'phantom-gateway:purge?';
const PURGE_ANSWER = 'phantom-gateway:purged';
/** A worker that does not answer within this is counted not ready (or as not having purged). */
const WORKER_ANSWER_MS = 2000;

/**
 * In a cluster worker: answers the primary's requests for this worker's
 * metrics (prom-client's aggregation protocol), readiness, and purges of
 * its cache.
 */
export function serveWorkerAdmin(metrics: GatewayMetrics, readiness: () => Readiness, purge: (request: PurgeRequest) => Promise<PurgeOutcome>): void {
  // The constructor installs prom-client's answer to the primary's requests in this worker.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metrics.registry]);
  process.on('message', (m: unknown) => {
    const msg = m as { type?: unknown; id?: unknown; request?: unknown } | null;
    if (msg?.type === READY_ASK) {
      const r = readiness();
      process.send?.({ type: READY_ANSWER, id: msg.id, ready: r.ready, checks: r.checks });
    } else if (msg?.type === PURGE_ASK) {
      const request = asPurgeRequest(msg.request);
      // A purge that fails is not confirmed: the primary counts this worker among those that did not answer.
      const done = request === undefined ? Promise.reject(new Error('malformed purge request')) : purge(request);
      done.then(
        (outcome) => process.send?.({ type: PURGE_ANSWER, id: msg.id, outcome: { local: outcome.local, shared: outcome.shared, instances: outcome.instances } }),
        () => process.send?.({ type: PURGE_ANSWER, id: msg.id }),
      );
    }
  });
}

/** The purge request in a message from the primary (checked: exactly one string field). */
function asPurgeRequest(x: unknown): PurgeRequest | undefined {
  if (x === null || typeof x !== 'object') return undefined;
  const entries = Object.entries(x);
  if (entries.length !== 1) return undefined;
  const [name, value] = entries[0]!;
  if (typeof value !== 'string') return undefined;
  return name === 'token' ? { token: value } : name === 'sub' ? { sub: value } : name === 'client_id' ? { client_id: value } : undefined;
}

/** A worker's purge outcome in its answer, or undefined (no outcome: it failed). */
function asPurgeOutcome(x: unknown): PurgeOutcome | undefined {
  const o = x as { local?: unknown; shared?: unknown; instances?: unknown } | null | undefined;
  if (o == null || typeof o.local !== 'number' || typeof o.shared !== 'number') return undefined;
  if (o.instances !== 'not_configured' && o.instances !== 'notified' && o.instances !== 'unavailable') return undefined;
  return { local: o.local, shared: o.shared, instances: o.instances };
}

/**
 * A cluster's purge from its workers' answers (undefined: no answer).
 * `local` adds up the workers' caches. `shared` is the largest count:
 * every worker deletes the same Redis keys, and the first one asked
 * (alone, before the others) is the one that finds them. `instances`:
 * `notified` when any worker reached the shared cache (its message reaches
 * every instance, these workers included), else `unavailable` when any
 * worker has one configured, else `not_configured`.
 */
export function combinePurges(answers: ReadonlyArray<PurgeOutcome | undefined>): AdminPurgeOutcome {
  const got = answers.filter((a): a is PurgeOutcome => a !== undefined);
  const instances = got.some((a) => a.instances === 'notified') ? 'notified' : got.some((a) => a.instances === 'unavailable') ? 'unavailable' : 'not_configured';
  return {
    local: got.reduce((n, a) => n + a.local, 0),
    shared: got.reduce((n, a) => Math.max(n, a.shared), 0),
    instances,
    workers: { asked: answers.length, unanswered: answers.length - got.length },
  };
}

/**
 * In a cluster's primary: the admin listener, serving every worker's
 * metrics summed (`AggregatorRegistry`) and ready only when `workers`
 * workers answer that they are ready. Undefined when `admin` is not configured.
 */
export async function startPrimaryAdmin(config: GatewayConfig, deps: { logger: Logger; reload?: (() => Promise<ReloadOutcome>) | undefined }): Promise<AdminHandle | undefined> {
  if (config.admin === undefined) return undefined;
  const state: ProcessState = { up: true, draining: false };
  const aggregator = new AggregatorRegistry();
  let nextId = 0;
  /** Asks waiting for their answer, by id; an answer of another type or from another worker is ignored. */
  const waiting = new Map<number, { worker: Worker; type: string; done: (answer: Record<string, unknown> | undefined) => void }>();
  cluster.on('message', (worker: Worker, m: unknown) => {
    const msg = m as { type?: unknown; id?: unknown } | null;
    if (typeof msg?.id !== 'number') return;
    const ask = waiting.get(msg.id);
    if (ask !== undefined && ask.worker === worker && ask.type === msg.type) ask.done(msg as Record<string, unknown>);
  });
  /** Sends `message` to `worker`; its answer of type `answer`, or undefined after WORKER_ANSWER_MS (or when it cannot be sent). */
  const ask = (worker: Worker, message: Record<string, unknown>, answer: string): Promise<Record<string, unknown> | undefined> => {
    const id = nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), WORKER_ANSWER_MS);
      const done = (msg: Record<string, unknown> | undefined) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(msg);
      };
      waiting.set(id, { worker, type: answer, done });
      try {
        worker.send({ ...message, id });
      } catch {
        done(undefined);
      }
    });
  };
  const connected = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
  const askReady = async (worker: Worker): Promise<{ worker: number; ready: boolean; checks?: unknown }> => {
    const msg = await ask(worker, { type: READY_ASK }, READY_ANSWER);
    return msg === undefined ? { worker: worker.id, ready: false, checks: 'no answer' } : { worker: worker.id, ready: msg.ready === true, checks: msg.checks };
  };
  const askPurge = async (worker: Worker, request: PurgeRequest): Promise<PurgeOutcome | undefined> => asPurgeOutcome((await ask(worker, { type: PURGE_ASK, request }, PURGE_ANSWER))?.outcome);
  // One worker first, then the others together: the first finds and deletes
  // the shared entries (and tells every instance), so the shared count is
  // not split among workers deleting the same keys at once.
  const purge = async (request: PurgeRequest): Promise<AdminPurgeOutcome> => {
    const [first, ...others] = connected();
    if (first === undefined) return combinePurges([]);
    const answer = await askPurge(first, request);
    return combinePurges([answer, ...(await Promise.all(others.map((w) => askPurge(w, request))))]);
  };
  const readiness = async (): Promise<Readiness> => {
    const workers = connected();
    const answers = await Promise.all(workers.map(askReady));
    const readyWorkers = answers.filter((a) => a.ready).length;
    const ready = !state.draining && readyWorkers >= config.workers;
    return { ready, checks: { draining: state.draining, workers: config.workers, ready_workers: readyWorkers, each: answers } };
  };
  const listener = new AdminListener(config.admin, {
    logger: deps.logger,
    metrics: { contentType: aggregator.contentType, scrape: () => aggregator.clusterMetrics() },
    readiness,
    reload: deps.reload,
    purge,
  });
  const address = await listener.listen();
  deps.logger.info({ host: address.address, port: address.port }, 'admin listening');
  return handle(listener, address, state);
}
