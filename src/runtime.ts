import { performance } from 'node:perf_hooks';
import { ConfigError } from './config/load.js';
import type { SharedFirstUse } from './dpop/proof.js';
import type { GatewayConfig } from './config/schema.js';
import { createGuards, type Guards } from './core/guards.js';
import type { EnvoyAuthService } from './forward-auth/envoy-grpc.js';
import { ForwardAuthListener } from './forward-auth/http.js';
import type { SigningKey } from './minting/index.js';
import { settlesWithin } from './net/wait.js';
import type { Logger } from './observability/logger.js';
import type { GatewayMetrics } from './observability/metrics.js';
import { Gateway } from './proxy/server.js';

/** What a reload came to: swapped in, or refused with every problem (the running configuration stays). */
export type ReloadOutcome = { ok: true } | { ok: false; errors: string[] };

export interface RuntimeDeps {
  logger: Logger;
  /** The key to mint with when the configuration names none (a cluster's primary gives one to its workers). */
  signingKey?: SigningKey | undefined;
  /** The secret DPoP server nonces are made with (a cluster's primary gives its workers one, so each accepts the others' nonces). */
  dpopSecret?: Buffer | undefined;
  /** A cluster worker's line to the primary's memory of DPoP proofs (without Redis, one memory for every worker). */
  dpopReplay?: SharedFirstUse | undefined;
  /** Prometheus metrics (the admin listener's); one set for every generation: a reload's guards relabel its routes. */
  metrics?: GatewayMetrics | undefined;
  /**
   * Reads and validates the configuration again (`loadConfigFile`; throws
   * `ConfigError`). Without it `reload()` is refused: a cluster worker is
   * reloaded by its primary, which replaces it.
   */
  load?: () => GatewayConfig;
  /** Told the configuration now serving after each successful reload (the admin listener takes its token from it). */
  onReloaded?: (config: GatewayConfig) => void;
  /** Instead of `load`: who reloads this process (a cluster worker asks its primary, which replaces the workers). */
  delegate?: () => Promise<ReloadOutcome>;
}

/** One configuration's engine and front doors; a reload builds the next one beside it. */
interface Generation {
  readonly config: GatewayConfig;
  readonly guards: Guards;
  readonly gateway: Gateway | undefined;
  readonly forwardAuth: ForwardAuthListener | undefined;
}

/**
 * Options a running process cannot change: its sockets and their parser
 * settings, and the number of workers. A reload keeps their running values
 * and says which ones it kept (`changed`, as option paths).
 */
export function pinRestartOptions(running: GatewayConfig, next: GatewayConfig): { config: GatewayConfig; changed: string[] } {
  const changed: string[] = [];
  const keep = <T>(option: string, a: T, b: T): T => {
    if (JSON.stringify(a) !== JSON.stringify(b)) changed.push(option);
    return a;
  };
  let listen = next.listen;
  if (running.listen === undefined || next.listen === undefined) {
    listen = keep('listen', running.listen, next.listen);
  } else {
    const host = keep('listen.host', running.listen.host, next.listen.host);
    const port = keep('listen.port', running.listen.port, next.listen.port);
    // Certificate files may change (read again), HTTP to HTTPS may not.
    let tls = (running.listen.tls === undefined) !== (next.listen.tls === undefined) ? keep('listen.tls', running.listen.tls, next.listen.tls) : next.listen.tls;
    // Whether the handshake asks for a client certificate is the server's, not its secure context's.
    if (tls !== undefined && running.listen.tls !== undefined) {
      tls = { ...tls, request_client_certificates: keep('listen.tls.request_client_certificates', running.listen.tls.request_client_certificates, tls.request_client_certificates) };
    }
    listen = { host, port, ...(tls !== undefined ? { tls } : {}) };
  }
  let forwardAuth = next.forward_auth;
  if (running.forward_auth === undefined || next.forward_auth === undefined) {
    forwardAuth = keep('forward_auth', running.forward_auth, next.forward_auth);
  } else {
    const fa = next.forward_auth;
    const listenFa = keep('forward_auth.listen', running.forward_auth.listen, fa.listen);
    const grpc = keep('forward_auth.grpc', running.forward_auth.grpc, fa.grpc);
    forwardAuth = { ...fa, ...(listenFa !== undefined ? { listen: listenFa } : {}), ...(grpc !== undefined ? { grpc } : {}) };
    if (listenFa === undefined) delete (forwardAuth as { listen?: unknown }).listen;
    if (grpc === undefined) delete (forwardAuth as { grpc?: unknown }).grpc;
  }
  const rs = running.server;
  const server = {
    ...next.server,
    max_header_bytes: keep('server.max_header_bytes', rs.max_header_bytes, next.server.max_header_bytes),
    headers_timeout_ms: keep('server.headers_timeout_ms', rs.headers_timeout_ms, next.server.headers_timeout_ms),
    request_timeout_ms: keep('server.request_timeout_ms', rs.request_timeout_ms, next.server.request_timeout_ms),
  };
  const workers = keep('workers', running.workers, next.workers);
  // The admin listener is started once, beside the generations: its address stays; its token follows the file.
  const admin =
    running.admin === undefined || next.admin === undefined
      ? keep('admin', running.admin, next.admin)
      : { ...next.admin, listen: keep('admin.listen', running.admin.listen, next.admin.listen) };
  const { listen: _l, forward_auth: _f, admin: _a, ...rest } = next;
  const config: GatewayConfig = Object.freeze({
    ...rest,
    ...(listen !== undefined ? { listen: Object.freeze(listen) } : {}),
    ...(forwardAuth !== undefined ? { forward_auth: Object.freeze(forwardAuth) } : {}),
    server: Object.freeze(server),
    workers,
    ...(admin !== undefined ? { admin } : {}),
  });
  return { config, changed };
}

/**
 * A reload's reading of the file, for one process and for a cluster's
 * primary alike: the next configuration with the options that need a
 * restart kept at their running values (each logged as a warning), or every
 * problem of an invalid file (each logged, then `kept`: what keeps running).
 */
export function readForReload(load: () => GatewayConfig, running: GatewayConfig, logger: Logger, kept: string): { config: GatewayConfig } | { errors: string[] } {
  let next: GatewayConfig;
  try {
    next = load();
  } catch (err) {
    const errors = err instanceof ConfigError ? [...err.problems] : [(err as Error).message];
    for (const problem of errors) logger.error({ problem }, `reload refused: ${problem}`);
    logger.error({ problems: errors.length }, `reload refused: ${kept}`);
    return { errors };
  }
  const { config, changed } = pinRestartOptions(running, next);
  for (const option of changed) logger.warn({ option }, `reload: ${option} cannot change without a restart: the running value is kept`);
  return { config };
}

/**
 * The gateway in one process: the engine (guards) and its front doors (the
 * proxy, the forward-auth listener, Envoy's gRPC check), as one generation
 * per configuration. `reload()` builds the next generation beside the
 * running one, adopting its listening sockets, switches every front door to
 * it in one step, and retires the previous one once the requests it still
 * serves are done. The token cache is handed over when its bounds are
 * unchanged (entries are keyed by what can change an answer, so only
 * routes whose authorization server or client changed miss), and a signing
 * key made at start is kept (tokens still cached carry its `kid`).
 *
 * @example
 * const runtime = new Runtime(config, { logger, load: () => loadConfigFile(file) });
 * await runtime.gateway?.listen();
 * process.on('SIGHUP', () => void runtime.reload());
 * // admin: reload: () => runtime.reload()
 */
export class Runtime {
  readonly logger: Logger;
  #gen: Generation;
  #envoy: EnvoyAuthService | undefined;
  #signingKey: SigningKey | undefined;
  readonly #dpopSecret: Buffer | undefined;
  readonly #dpopReplay: SharedFirstUse | undefined;
  readonly #load: (() => GatewayConfig) | undefined;
  readonly #delegate: (() => Promise<ReloadOutcome>) | undefined;
  readonly #metrics: GatewayMetrics | undefined;
  readonly #onReloaded: ((config: GatewayConfig) => void) | undefined;
  /** Previous generations still finishing their requests. */
  readonly #retiring = new Set<Promise<void>>();
  /** Reloads run one at a time, in the order asked. */
  #queue: Promise<unknown> = Promise.resolve();
  #closing = false;

  /** Builds the first generation (throws what `createGuards`, `Gateway` or `ForwardAuthListener` throw). */
  constructor(config: GatewayConfig, deps: RuntimeDeps) {
    this.logger = deps.logger;
    this.#signingKey = deps.signingKey;
    this.#dpopSecret = deps.dpopSecret;
    this.#dpopReplay = deps.dpopReplay;
    this.#load = deps.load;
    this.#delegate = deps.delegate;
    this.#metrics = deps.metrics;
    this.#onReloaded = deps.onReloaded;
    this.#gen = this.#build(config, undefined);
  }

  get config(): GatewayConfig {
    return this.#gen.config;
  }

  get guards(): Guards {
    return this.#gen.guards;
  }

  /** The proxy (the generation serving now); its `listen()` starts the listener. */
  get gateway(): Gateway | undefined {
    return this.#gen.gateway;
  }

  get forwardAuth(): ForwardAuthListener | undefined {
    return this.#gen.forwardAuth;
  }

  /** Envoy's gRPC service, once started on `guards` (it follows reloads). */
  set envoy(service: EnvoyAuthService | undefined) {
    this.#envoy = service;
  }

  get envoy(): EnvoyAuthService | undefined {
    return this.#envoy;
  }

  #build(config: GatewayConfig, prev: Generation | undefined): Generation {
    const { logger } = this;
    // Same bounds: the same store, so cached answers survive (keys carry their namespace).
    // (The shared cache follows its own options: see `sharedFor` in guards.ts.)
    const bounds = (c: GatewayConfig) => [c.cache.max_entries, c.cache.max_negative_entries].join();
    const sameCache = prev !== undefined && bounds(prev.config) === bounds(config);
    const guards = createGuards(config, { logger, signingKey: this.#signingKey, dpopSecret: this.#dpopSecret, dpopReplay: this.#dpopReplay, metrics: this.#metrics, previous: prev?.guards, ...(sameCache ? { store: prev.guards.store } : {}) });
    try {
      const gateway = config.listen !== undefined ? new Gateway(config, { logger, guards, ...(prev?.gateway ? { adopt: prev.gateway } : {}) }) : undefined;
      const forwardAuth =
        config.forward_auth?.listen !== undefined ? new ForwardAuthListener(config, { logger, guards, ...(prev?.forwardAuth ? { adopt: prev.forwardAuth } : {}) }) : undefined;
      // A key made at start is kept across reloads: APIs know its kid, and cached tokens carry it.
      if (guards.minting?.generated) this.#signingKey = guards.minting.keys.signer;
      return { config, guards, gateway, forwardAuth };
    } catch (err) {
      void guards.close();
      throw err;
    }
  }

  /**
   * Re-reads the configuration and swaps it in (see the class notes). An
   * invalid file, or one that cannot be built, leaves the running
   * configuration in place; every problem is logged (one line each, as
   * `--check` prints them) and returned. Options that need a restart keep
   * their running value, with a warning naming them. Never throws.
   */
  reload(): Promise<ReloadOutcome> {
    if (this.#delegate !== undefined) return this.#delegate();
    const run = this.#queue.then(() => this.#reload());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #reload(): Promise<ReloadOutcome> {
    const { logger } = this;
    if (this.#closing) return { ok: false, errors: ['the gateway is stopping'] };
    if (this.#load === undefined) return { ok: false, errors: ['this process is reloaded by the cluster primary'] };
    const old = this.#gen;
    const read = readForReload(this.#load, old.config, logger, 'the configuration in use is kept');
    if ('errors' in read) return { ok: false, errors: read.errors };
    const { config } = read;
    // Before building: the front doors decide at construction whether they log access lines.
    if (config.log.level !== old.config.log.level) logger.level = config.log.level;
    let gen: Generation;
    try {
      gen = this.#build(config, old);
    } catch (err) {
      logger.level = old.config.log.level;
      const problem = `cannot apply the configuration: ${(err as Error).message}`;
      logger.error({ problem }, `reload refused: ${problem}`);
      return { ok: false, errors: [problem] };
    }
    // The switch: synchronous, so no request falls between two generations.
    gen.gateway?.activate();
    gen.forwardAuth?.activate();
    this.#envoy?.useGuards(gen.guards);
    this.#gen = gen;
    const retiring = this.#retire(old).catch((err: unknown) => logger.error({ err }, 'reload: error while retiring the previous configuration'));
    this.#retiring.add(retiring);
    void retiring.finally(() => this.#retiring.delete(retiring));
    logger.info({ routes: config.routes.map((r) => r.path), cache_kept: gen.guards.store === old.guards.store }, 'configuration reloaded');
    this.#onReloaded?.(config);
    return { ok: true };
  }

  /** The previous generation: its requests finish, then its pools and its connections to authorization servers close. */
  async #retire(old: Generation): Promise<void> {
    const deadline = performance.now() + old.config.server.shutdown_timeout_ms;
    await Promise.all([old.gateway?.retire(deadline), old.forwardAuth?.retire(deadline)]);
    if (!(await settlesWithin(old.guards.close(), deadline - performance.now()))) await old.guards.destroy();
  }

  /**
   * Graceful stop: the listeners (each drains within `shutdown_timeout_ms`),
   * previous generations still retiring, then the guards with what is left
   * of the time, then cut. `gentle`: a cluster worker replaced by a reload
   * leaves idle keep-alive connections to end by themselves (see `Gateway.close`).
   */
  async close(opts: { gentle?: boolean } = {}): Promise<void> {
    this.#closing = true;
    const { config, guards, gateway, forwardAuth } = this.#gen;
    const deadline = performance.now() + config.server.shutdown_timeout_ms;
    await Promise.all([gateway?.close(opts), forwardAuth?.close(), this.#envoy?.close(), ...this.#retiring]);
    if (!(await settlesWithin(guards.close(), deadline - performance.now()))) {
      this.logger.warn('shutdown timeout reached: cutting calls to the authorization server');
      await guards.destroy();
    }
  }
}
