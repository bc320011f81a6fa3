import cluster, { type Worker } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry } from 'prom-client';
import type { GatewayConfig } from '../config/schema.js';
import type { Guards } from '../core/guards.js';
import type { Logger } from '../observability/logger.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { AdminListener, type Readiness, type ReloadOutcome } from './server.js';

/*
 * The admin listener as the command line runs it: in the gateway's own
 * process (one process), or in a cluster's primary, which aggregates its
 * workers' metrics and readiness over the cluster's IPC channel.
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
 */
export function processReadiness(state: ProcessState, guards: Guards): Readiness {
  const discovery = guards.ready;
  const servers = guards.metrics?.authorizationServers() ?? [];
  const ready = state.up && !state.draining && discovery && servers.every((s) => !s.down);
  return { ready, checks: { listening: state.up, draining: state.draining, discovery: discovery ? 'done' : 'waiting', authorization_servers: servers } };
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
  },
): Promise<AdminHandle | undefined> {
  if (config.admin === undefined || deps.metrics === undefined) return undefined;
  const state: ProcessState = { up: true, draining: false };
  if (cluster.isWorker) {
    serveWorkerAdmin(deps.metrics, () => processReadiness(state, deps.guards()));
    return handle(undefined, undefined, state);
  }
  const registry = deps.metrics.registry;
  const listener = new AdminListener(config.admin, {
    logger: deps.logger,
    metrics: { contentType: registry.contentType, scrape: () => registry.metrics() },
    readiness: () => processReadiness(state, deps.guards()),
    reload: deps.reload,
  });
  const address = await listener.listen();
  deps.logger.info({ host: address.address, port: address.port }, 'admin listening');
  return handle(listener, address, state);
}

const READY_ASK = 'phantom-gateway:readyz?';
const READY_ANSWER = 'phantom-gateway:readyz';
/** A worker that does not answer within this is counted not ready. */
const WORKER_ANSWER_MS = 2000;

/**
 * In a cluster worker: answers the primary's requests for this worker's
 * metrics (prom-client's aggregation protocol) and readiness.
 */
export function serveWorkerAdmin(metrics: GatewayMetrics, readiness: () => Readiness): void {
  // The constructor installs prom-client's answer to the primary's requests in this worker.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metrics.registry]);
  process.on('message', (m: unknown) => {
    const msg = m as { type?: unknown; id?: unknown } | null;
    if (msg?.type !== READY_ASK) return;
    const r = readiness();
    process.send?.({ type: READY_ANSWER, id: msg.id, ready: r.ready, checks: r.checks });
  });
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
  const waiting = new Map<number, (answer: { ready: boolean; checks: unknown } | undefined) => void>();
  cluster.on('message', (_worker: Worker, m: unknown) => {
    const msg = m as { type?: unknown; id?: unknown; ready?: unknown; checks?: unknown } | null;
    if (msg?.type !== READY_ANSWER || typeof msg.id !== 'number') return;
    waiting.get(msg.id)?.({ ready: msg.ready === true, checks: msg.checks });
  });
  const ask = (worker: Worker): Promise<{ worker: number; ready: boolean; checks?: unknown }> => {
    const id = nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), WORKER_ANSWER_MS);
      const done = (answer: { ready: boolean; checks: unknown } | undefined) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(answer === undefined ? { worker: worker.id, ready: false, checks: 'no answer' } : { worker: worker.id, ...answer });
      };
      waiting.set(id, done);
      try {
        worker.send({ type: READY_ASK, id });
      } catch {
        done(undefined);
      }
    });
  };
  const readiness = async (): Promise<Readiness> => {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
    const answers = await Promise.all(workers.map(ask));
    const readyWorkers = answers.filter((a) => a.ready).length;
    const ready = !state.draining && readyWorkers >= config.workers;
    return { ready, checks: { draining: state.draining, workers: config.workers, ready_workers: readyWorkers, each: answers } };
  };
  const listener = new AdminListener(config.admin, {
    logger: deps.logger,
    metrics: { contentType: aggregator.contentType, scrape: () => aggregator.clusterMetrics() },
    readiness,
    reload: deps.reload,
  });
  const address = await listener.listen();
  deps.logger.info({ host: address.address, port: address.port }, 'admin listening');
  return handle(listener, address, state);
}
