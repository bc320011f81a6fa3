import cluster, { type Worker } from 'node:cluster';
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from './config/load.js';
import { PrimaryReplayMemory, WorkerReplayMemory } from './dpop/cluster-replay.js';
import { dpopWindowMs } from './core/sender.js';
import type { SharedFirstUse } from './dpop/proof.js';
import type { GatewayConfig } from './config/schema.js';
import { createLogger } from './observability/logger.js';
import { readForReload, Runtime, type ReloadOutcome } from './runtime.js';
import { startupFields, type StartedListener } from './observability/startup.js';
import { exportSigningKey, generateSigningKey, importSigningKey, mints, type SigningKey } from './minting/index.js';
import type { AdminHandle } from './admin/start.js';

const USAGE = `Usage: phantom-gateway --config <file.yaml> [--check]
       phantom-gateway nginx-conf --config <file.yaml> [--listen HOST:PORT]   (see nginx-conf --help)
       phantom-gateway jwks --config <file.yaml>   (the keys minted tokens verify with; see jwks --help)
       phantom-gateway schema   (the configuration's JSON Schema, for editors; see schema --help)

  -c, --config <file>   gateway configuration (YAML)
      --check           validate the configuration and exit
  -h, --help            show this help
  -v, --version         show the version
`;

/** Exit codes: 0 ok, 1 runtime failure (e.g. port busy), 2 usage or configuration error. */
export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'nginx-conf') return (await import('./forward-auth/nginx-conf-cli.js')).runNginxConf(argv.slice(1));
  if (argv[0] === 'jwks') return (await import('./minting/jwks-cli.js')).runJwks(argv.slice(1));
  if (argv[0] === 'schema') return (await import('./config/json-schema.js')).runSchema(argv.slice(1));
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        check: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`phantom-gateway: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.version) {
    const { createRequire } = await import('node:module');
    const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  if (!args.config) {
    process.stderr.write(`phantom-gateway: --config is required\n\n${USAGE}`);
    return 2;
  }

  // A worker runs the configuration its primary validated, sent over the
  // cluster's IPC channel: a worker started later (replacing one that died)
  // must not pick up a file edited since, nor fail on one broken since.
  configPath = args.config;
  if (cluster.isWorker) return runWorker();

  let config;
  try {
    config = loadConfigFile(args.config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`phantom-gateway: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (args.check) {
    // What the gateway would log at start as warnings: valid, but probably not what was meant.
    const { startupWarnings } = await import('./config/warnings.js');
    for (const w of startupWarnings(config)) process.stderr.write(`phantom-gateway: warning: ${w.message}\n`);
    process.stdout.write(`${args.config}: configuration is valid (${config.routes.length} route(s))\n`);
    return 0;
  }

  if (config.workers > 1) return runPrimary(config, args.config);
  return runGateway(config, undefined, args.config);
}

/** The --config file, for the start-up line (workers are started with the same arguments, so they know it too). */
let configPath: string | undefined;

const CONFIG_REQUEST = 'phantom-gateway:config?';
/** A worker listens on every listener its configuration has (one 'listening' event is not enough with two). */
const READY_MESSAGE = 'phantom-gateway:ready';
const CONFIG_MESSAGE = 'phantom-gateway:config';
/** From the primary during a reload: the replacement is ready, drain and stop. */
const RETIRE_MESSAGE = 'phantom-gateway:retire';
/** A worker asks its primary to reload (the admin listener's POST /reload), and gets the outcome back. */
const RELOAD_REQUEST = 'phantom-gateway:reload?';
const RELOAD_RESULT = 'phantom-gateway:reloaded';

/** In a worker: reloading is the primary's (it replaces the workers); this asks it and waits for the outcome. */
function reloadThroughPrimary(): Promise<ReloadOutcome> {
  const id = randomUUID();
  return new Promise<ReloadOutcome>((resolve) => {
    const onMessage = (m: unknown) => {
      const msg = m as { type?: unknown; id?: unknown; outcome?: ReloadOutcome } | null;
      if (msg?.type !== RELOAD_RESULT || msg.id !== id) return;
      process.off('message', onMessage);
      resolve(msg.outcome!);
    };
    process.on('message', onMessage);
    if (process.send === undefined || !process.connected) {
      process.off('message', onMessage);
      resolve({ ok: false, errors: ['no cluster primary to reload'] });
      return;
    }
    process.send({ type: RELOAD_REQUEST, id });
  });
}

async function runWorker(): Promise<number> {
  try {
    const { config, signingKey, dpopSecret } = await new Promise<{ config: GatewayConfig; signingKey: string | undefined; dpopSecret: string | undefined }>((resolve) => {
      const onMessage = (m: unknown) => {
        if ((m as { type?: unknown } | null)?.type !== CONFIG_MESSAGE) return;
        process.off('message', onMessage);
        resolve(m as { config: GatewayConfig; signingKey: string | undefined; dpopSecret: string | undefined });
      };
      process.on('message', onMessage);
      // Asked for, not pushed: a message that arrives before the listener exists is lost.
      process.send?.({ type: CONFIG_REQUEST });
    });
    return await runGateway(config, signingKey === undefined ? undefined : importSigningKey(signingKey), undefined, dpopSecret === undefined ? undefined : Buffer.from(dpopSecret, 'base64'), new WorkerReplayMemory());
  } finally {
    // A worker's IPC channel to the primary would keep it alive after it is
    // done, or after it failed to start (the primary then sees it exit).
    cluster.worker?.disconnect();
  }
}

/**
 * One gateway in this process (the whole gateway, or one worker of a
 * cluster): the proxy listener, the forward-auth listener, or both, over ONE
 * set of guards, so that they share one cache and one single-flight (a token
 * introspected through one is a cache hit through the other).
 */
async function runGateway(config: GatewayConfig, signingKey?: SigningKey, configFile?: string, dpopSecret?: Buffer, dpopReplay?: SharedFirstUse): Promise<number> {
  const logger = createLogger(config.log.level);
  let admin: AdminHandle | undefined;
  // Loaded only when configured: prom-client costs start-up time nobody else should pay.
  const metrics = config.admin === undefined ? undefined : (await import('./observability/metrics.js')).metricsFor(config);
  let runtime: Runtime;
  try {
    // A worker has no file to read again: its primary reloads it by replacing it.
    runtime = new Runtime(config, {
      logger,
      signingKey,
      dpopSecret,
      dpopReplay,
      metrics,
      // A rotated admin token (token_file) applies from the reload that reads it.
      onReloaded: (next) => {
        if (next.admin !== undefined) admin?.listener?.useToken(next.admin);
      },
      ...(configFile !== undefined ? { load: () => loadConfigFile(configFile) } : { delegate: reloadThroughPrimary }),
    });
  } catch (err) {
    process.stderr.write(`phantom-gateway: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  const gateway = runtime.gateway;
  const forwardAuth = runtime.forwardAuth;
  // Listeners, previous configurations still finishing, then the guards with
  // what is left of shutdown_timeout_ms (each listener bounds its own drain by it), then cut.
  let gentle = false;
  const stop = async (): Promise<void> => {
    // /readyz says 503 at once; the admin listener closes last.
    admin?.drain();
    await runtime.close({ gentle });
    await admin?.close();
  };
  // SIGHUP re-reads the configuration (NGINX's reload). In a worker it does
  // nothing: a terminal's hangup reaches the whole process group, and the
  // primary reloads by replacing workers.
  process.on('SIGHUP', () => {
    if (cluster.isWorker) return;
    logger.info({ signal: 'SIGHUP', config: configFile }, 'reloading the configuration');
    void runtime.reload();
  });
  // Handlers before listening: a signal during start-up still stops cleanly.
  // `on`, not `once`: in a cluster a worker gets the terminal's SIGINT and then
  // the primary's SIGTERM, and the second must not kill it mid-drain.
  let stopRequested: string | undefined;
  let onStop: (signal: string) => void = (signal) => {
    stopRequested = signal;
  };
  process.on('SIGTERM', () => onStop('SIGTERM'));
  process.on('SIGINT', () => onStop('SIGINT'));
  // A reload's replacement is serving: this worker stops, letting its idle connections end by themselves.
  process.on('message', (m: unknown) => {
    if ((m as { type?: unknown } | null)?.type !== RETIRE_MESSAGE) return;
    gentle = true;
    onStop('reload');
  });
  const worker = cluster.isWorker ? { worker: cluster.worker?.id } : {};
  let option = 'listen.port';
  let where = '';
  const listeners: StartedListener[] = [];
  try {
    if (gateway !== undefined) {
      where = `${config.listen!.host}:${config.listen!.port}`;
      const addr = await gateway.listen();
      logger.info({ host: addr.address, port: addr.port, routes: config.routes.map((r) => r.path), ...worker }, 'phantom-gateway listening');
      listeners.push({ listener: 'proxy', host: addr.address, port: addr.port });
    }
    if (forwardAuth !== undefined) {
      option = 'forward_auth.listen.port';
      where = `${forwardAuth.options.listen!.host}:${forwardAuth.options.listen!.port}`;
      const addr = await forwardAuth.listen();
      logger.info({ host: addr.address, port: addr.port, routes: config.routes.map((r) => r.path), ...worker }, 'forward-auth listening');
      listeners.push({ listener: 'forward_auth', host: addr.address, port: addr.port });
    }
    // Envoy's gRPC ext_authz, on the same guards (one cache).
    const grpc = config.forward_auth?.grpc;
    if (grpc !== undefined) {
      option = 'forward_auth.grpc.port';
      where = `${grpc.host}:${grpc.port}`;
    }
    // Loaded only when configured: gRPC costs start-up time nobody else should pay.
    // On the guards serving now (a SIGHUP during start-up may have replaced them).
    if (grpc !== undefined) runtime.envoy = await (await import('./forward-auth/envoy-grpc.js')).startEnvoyGrpc(runtime.config, { logger, guards: runtime.guards });
    option = 'admin.listen.port';
    where = config.admin === undefined ? '' : `${config.admin.listen.host}:${config.admin.listen.port}`;
    if (config.admin !== undefined) {
      admin = await (await import('./admin/start.js')).startAdmin(config, { logger, guards: () => runtime.guards, metrics, reload: () => runtime.reload() });
    }
    if (grpc !== undefined && runtime.envoy !== undefined) listeners.push({ listener: 'envoy_grpc', host: grpc.host, port: grpc.port });
    if (admin?.address !== undefined) listeners.push({ listener: 'admin', host: admin.address.address, port: admin.address.port });
    logger.info({ ...startupFields(config, { configFile: configPath, listeners }), ...worker }, 'phantom-gateway started');
    if (cluster.isWorker) process.send?.({ type: READY_MESSAGE });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // startEnvoyGrpc's errors already say where and which option.
    const why =
      e.code === 'EADDRINUSE' ? `${where} is already in use: stop what is using it or change ${option}`
      : e.code === 'EACCES' ? `no permission to listen on ${where}`
      : option === 'forward_auth.grpc.port' ? e.message
      : `cannot listen on ${where}: ${e.message}`;
    process.stderr.write(`phantom-gateway: ${why}\n`);
    await stop();
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    onStop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down: finishing in-flight requests');
      stop().then(
        () => {
          logger.info('stopped');
          logger.flush(() => resolve(0));
        },
        (err: unknown) => {
          logger.error({ err }, 'error during shutdown');
          logger.flush(() => resolve(1));
        },
      );
    };
    if (stopRequested !== undefined) onStop(stopRequested);
  });
}

/**
 * `workers` > 1: this process only supervises. Each worker is a whole gateway
 * (own cache, own pools) sharing nothing but the listening socket. A worker
 * that dies is replaced; one that cannot start stops the whole gateway.
 *
 * SIGHUP: the primary reads and validates the file first (an invalid one
 * changes nothing), then replaces the workers one at a time: a new worker
 * with the new configuration, and once it is listening, one old worker told
 * to drain. A new worker that fails to start aborts the roll; the old
 * workers keep serving.
 */
async function runPrimary(initial: GatewayConfig, configFile: string): Promise<number> {
  let config = initial;
  const logger = createLogger(config.log.level);
  const n = config.workers;
  let admin: AdminHandle | undefined;
  let reloadWorkers = (): Promise<ReloadOutcome> => Promise.resolve({ ok: false, errors: ['workers are still starting; try again once they listen'] });
  try {
    // POST /reload rolls the workers as SIGHUP does (reload() is defined once the workers are being started).
    if (config.admin !== undefined) admin = await (await import('./admin/start.js')).startPrimaryAdmin(config, { logger, reload: () => reloadWorkers() });
  } catch (err) {
    process.stderr.write(`phantom-gateway: cannot listen on ${config.admin!.listen.host}:${config.admin!.listen.port} (admin.listen): ${(err as Error).message}\n`);
    return 1;
  }
  logger.info({ workers: n }, 'starting workers');
  let stopping = false;
  let failed = false;
  let alive = 0;
  const ready = new Set<number>();
  /** Told to drain by a reload: their exit is expected. */
  const retiring = new Set<number>();
  /** Started by a reload and not yet ready: their failure aborts the roll, not the gateway. */
  const starting = new Map<number, (ok: boolean) => void>();
  const restarts: number[] = [];
  // Without a signing key file, one key made here for every worker (and
  // every replacement), so they all sign with and publish the same key.
  let signingKey = mints(config) && config.minting.signing_key_file === undefined ? exportSigningKey(generateSigningKey()) : undefined;
  // One DPoP nonce secret for every worker: a nonce one of them hands out is accepted by the others.
  const dpopSecret = randomBytes(32).toString('base64');
  // And one memory of DPoP proofs (without Redis): a proof is accepted once by the instance, not once per worker.
  const dpopReplay = new PrimaryReplayMemory(config.cache.max_dpop_proofs, dpopWindowMs(config));

  const stopAll = (signal: NodeJS.Signals) => {
    // Workers replaced by a reload are already draining: a SIGTERM could only
    // reach one as it exits (killing it by signal).
    for (const w of Object.values(cluster.workers ?? {})) if (w && !w.isDead() && (signal === 'SIGKILL' || !retiring.has(w.id))) w.process.kill(signal);
  };

  const shutdown = () => {
    stopping = true;
    admin?.drain();
    stopAll('SIGTERM');
    // Each worker bounds its own drain by shutdown_timeout_ms; one still
    // there well after that is stuck, and is killed.
    setTimeout(() => {
      if (alive > 0) {
        failed = true;
        logger.error('workers still running after shutdown_timeout_ms: killing them');
        stopAll('SIGKILL');
      }
    }, config.server.shutdown_timeout_ms + 2000).unref();
  };

  return new Promise<number>((resolve) => {
    const finishIfDone = () => {
      if (alive === 0) void Promise.resolve(admin?.close()).then(() => logger.flush(() => resolve(failed ? 1 : 0)));
    };
    // The configuration and key are read when the worker asks: a worker
    // started later (replacing a dead one) gets the current ones.
    const fork = () => {
      alive++;
      const worker = cluster.fork();
      worker.on('message', (m: unknown) => {
        const type = (m as { type?: unknown } | null)?.type;
        if (dpopReplay.handle(worker, m)) return;
        if (type === CONFIG_REQUEST) worker.send({ type: CONFIG_MESSAGE, config, signingKey, dpopSecret });
        else if (type === RELOAD_REQUEST) relay(worker, (m as { id?: unknown }).id);
        else if (type === READY_MESSAGE) {
          ready.add(worker.id);
          starting.get(worker.id)?.(true);
          starting.delete(worker.id);
        }
      });
      return worker;
    };
    cluster.on('exit', (worker, code, signal) => {
      alive--;
      const wasReady = ready.delete(worker.id);
      const wasRetiring = retiring.delete(worker.id);
      const roll = starting.get(worker.id);
      starting.delete(worker.id);
      if (stopping) {
        // A serving worker cut down while draining had requests cut with it.
        if (wasReady && (code !== 0 || signal !== null)) {
          failed = true;
          logger.error({ worker: worker.id, worker_pid: worker.process.pid, code, signal }, 'a worker did not stop cleanly');
        }
        return finishIfDone();
      }
      if (wasRetiring) {
        if (code !== 0 || signal !== null) logger.error({ worker: worker.id, worker_pid: worker.process.pid, code, signal }, 'a worker replaced by a reload did not stop cleanly');
        return;
      }
      if (roll !== undefined) {
        // Started by a reload and never listening: the roll stops (see reload()).
        roll(false);
        return;
      }
      if (!wasReady) {
        // It never listened (port busy, bad permissions): more of the same would fail too.
        failed = true;
        logger.error({ worker: worker.id, worker_pid: worker.process.pid, code, signal }, 'a worker exited before it was listening: stopping');
        shutdown();
        return finishIfDone();
      }
      const now = Date.now();
      restarts.push(now);
      while (restarts.length > 0 && restarts[0]! < now - 60_000) restarts.shift();
      if (restarts.length > n * 5) {
        failed = true;
        logger.error('workers keep dying: stopping');
        shutdown();
        return finishIfDone();
      }
      logger.error({ worker: worker.id, worker_pid: worker.process.pid, code, signal }, 'worker died: starting a new one');
      fork();
    });
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      logger.info({ signal }, 'shutting down workers');
      shutdown();
    };

    let rolling = false;
    let again = false;
    const reload = async (): Promise<ReloadOutcome> => {
      if (stopping) return { ok: false, errors: ['the gateway is stopping'] };
      if (rolling) {
        // One roll at a time; the file is read again once this one is done.
        again = true;
        return { ok: false, errors: ['a reload is already replacing the workers; the file will be read again when it is done'] };
      }
      // A worker still starting (at start, or replacing one that died) could not be told to drain.
      if (Object.values(cluster.workers ?? {}).some((w) => w !== undefined && !w.isDead() && !ready.has(w.id) && !retiring.has(w.id))) {
        logger.error('reload refused: workers are still starting; send SIGHUP again once they listen');
        return { ok: false, errors: ['workers are still starting; try again once they listen'] };
      }
      rolling = true;
      try {
        const pinned = readForReload(() => loadConfigFile(configFile), config, logger, 'the workers keep the configuration in use');
        if ('errors' in pinned) return { ok: false, errors: pinned.errors };
        const previous = { config, signingKey };
        config = pinned.config;
        dpopReplay.reconfigure(config.cache.max_dpop_proofs, dpopWindowMs(config));
        if (signingKey === undefined && mints(config) && config.minting.signing_key_file === undefined) signingKey = exportSigningKey(generateSigningKey());
        const old = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined && !w.isDead() && !retiring.has(w.id) && !starting.has(w.id));
        let replaced = 0;
        for (const w of old) {
          if (stopping) return { ok: false, errors: ['the gateway is stopping'] };
          const worker = fork();
          const ok = await new Promise<boolean>((res) => starting.set(worker.id, res));
          if (!ok) {
            const problem =
              replaced === 0
                ? 'reload aborted: a worker with the new configuration failed to start; the workers keep the configuration in use'
                : `reload aborted: a worker with the new configuration failed to start; ${replaced} of ${old.length} workers run the new configuration`;
            logger.error({ worker: worker.id, replaced, workers: old.length }, problem);
            if (replaced === 0) ({ config, signingKey } = previous);
            return { ok: false, errors: [problem] };
          }
          if (w!.isDead()) continue;
          retiring.add(w!.id);
          w!.send({ type: RETIRE_MESSAGE });
          replaced++;
        }
        logger.info({ workers: replaced, routes: config.routes.map((r) => r.path) }, 'configuration reloaded');
        if (config.admin !== undefined) admin?.listener?.useToken(config.admin);
        return { ok: true };
      } finally {
        rolling = false;
        if (again && !stopping) {
          again = false;
          void reload();
        }
      }
    };
    reloadWorkers = reload;
    // POST /reload on a worker's admin listener: the primary rolls, the worker relays the outcome.
    const relay = (worker: Worker, id: unknown) => {
      void reload().then((outcome) => {
        if (worker.isConnected()) worker.send({ type: RELOAD_RESULT, id, outcome });
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      logger.info({ signal: 'SIGHUP', config: configFile }, 'reloading the configuration: replacing workers one by one');
      void reload();
    });
    for (let i = 0; i < n; i++) fork();
  });
}
