import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from './config/load.js';
import type { GatewayConfig } from './config/schema.js';
import { createLogger } from './observability/logger.js';
import { startupFields, type StartedListener } from './observability/startup.js';
import { createGuards, type Guards } from './core/guards.js';
import { ForwardAuthListener } from './forward-auth/http.js';
import { Gateway } from './proxy/server.js';
import type { EnvoyAuthService } from './forward-auth/envoy-grpc.js';
import { exportSigningKey, generateSigningKey, importSigningKey, mints, type SigningKey } from './minting/index.js';

const USAGE = `Usage: phantom-gateway --config <file.yaml> [--check]
       phantom-gateway nginx-conf --config <file.yaml> [--listen HOST:PORT]   (see nginx-conf --help)
       phantom-gateway jwks --config <file.yaml>   (the keys minted tokens verify with; see jwks --help)

  -c, --config <file>   gateway configuration (YAML)
      --check           validate the configuration and exit
  -h, --help            show this help
  -v, --version         show the version
`;

/** Exit codes: 0 ok, 1 runtime failure (e.g. port busy), 2 usage or configuration error. */
export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'nginx-conf') return (await import('./forward-auth/nginx-conf-cli.js')).runNginxConf(argv.slice(1));
  if (argv[0] === 'jwks') return (await import('./minting/jwks-cli.js')).runJwks(argv.slice(1));
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
  configFile = args.config;

  // A worker runs the configuration its primary validated, sent over the
  // cluster's IPC channel: a worker started later (replacing one that died)
  // must not pick up a file edited since, nor fail on one broken since.
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
    process.stdout.write(`${args.config}: configuration is valid (${config.routes.length} route(s))\n`);
    return 0;
  }

  if (config.workers > 1) return runPrimary(config);
  return runGateway(config);
}

/** The --config file, for the start-up line (workers are started with the same arguments). */
let configFile: string | undefined;

const CONFIG_REQUEST = 'phantom-gateway:config?';
/** A worker listens on every listener its configuration has (one 'listening' event is not enough with two). */
const READY_MESSAGE = 'phantom-gateway:ready';
const CONFIG_MESSAGE = 'phantom-gateway:config';

async function runWorker(): Promise<number> {
  try {
    const { config, signingKey } = await new Promise<{ config: GatewayConfig; signingKey: string | undefined }>((resolve) => {
      const onMessage = (m: unknown) => {
        if ((m as { type?: unknown } | null)?.type !== CONFIG_MESSAGE) return;
        process.off('message', onMessage);
        resolve(m as { config: GatewayConfig; signingKey: string | undefined });
      };
      process.on('message', onMessage);
      // Asked for, not pushed: a message that arrives before the listener exists is lost.
      process.send?.({ type: CONFIG_REQUEST });
    });
    return await runGateway(config, signingKey === undefined ? undefined : importSigningKey(signingKey));
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
async function runGateway(config: GatewayConfig, signingKey?: SigningKey): Promise<number> {
  const logger = createLogger(config.log.level);
  let guards: Guards;
  let gateway: Gateway | undefined;
  let forwardAuth: ForwardAuthListener | undefined;
  let envoy: EnvoyAuthService | undefined;
  try {
    guards = createGuards(config, { logger, signingKey });
    if (config.listen !== undefined) gateway = new Gateway(config, { logger, guards });
    if (config.forward_auth?.listen !== undefined) forwardAuth = new ForwardAuthListener(config, { logger, guards });
  } catch (err) {
    process.stderr.write(`phantom-gateway: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  // Both listeners, then the guards with what is left of shutdown_timeout_ms
  // (each listener bounds its own drain by it), then cut.
  const stop = async (): Promise<void> => {
    const deadline = Date.now() + config.server.shutdown_timeout_ms;
    await Promise.all([gateway?.close(), forwardAuth?.close(), envoy?.close()]);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
      timer.unref();
    });
    const closed = await Promise.race([guards.close().then(() => true), late]);
    clearTimeout(timer);
    if (!closed) {
      logger.warn('shutdown timeout reached: cutting calls to the authorization server');
      await guards.destroy();
    }
  };
  // Handlers before listening: a signal during start-up still stops cleanly.
  // `on`, not `once`: in a cluster a worker gets the terminal's SIGINT and then
  // the primary's SIGTERM, and the second must not kill it mid-drain.
  let stopRequested: string | undefined;
  let onStop: (signal: string) => void = (signal) => {
    stopRequested = signal;
  };
  process.on('SIGTERM', () => onStop('SIGTERM'));
  process.on('SIGINT', () => onStop('SIGINT'));
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
    if (grpc !== undefined) envoy = await (await import('./forward-auth/envoy-grpc.js')).startEnvoyGrpc(config, { logger, guards });
    if (grpc !== undefined && envoy !== undefined) listeners.push({ listener: 'envoy_grpc', host: grpc.host, port: grpc.port });
    logger.info({ ...startupFields(config, { configFile, listeners }), ...worker }, 'phantom-gateway started');
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
 */
async function runPrimary(config: GatewayConfig): Promise<number> {
  const logger = createLogger(config.log.level);
  const n = config.workers;
  logger.info({ workers: n }, 'starting workers');
  let stopping = false;
  let failed = false;
  let alive = 0;
  const ready = new Set<number>();
  const restarts: number[] = [];
  // Without a signing key file, one key made here for every worker (and
  // every replacement), so they all sign with and publish the same key.
  const signingKey = mints(config) && config.minting.signing_key_file === undefined ? exportSigningKey(generateSigningKey()) : undefined;

  const stopAll = (signal: NodeJS.Signals) => {
    for (const w of Object.values(cluster.workers ?? {})) if (w && !w.isDead()) w.process.kill(signal);
  };

  const shutdown = () => {
    stopping = true;
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
      if (alive === 0) logger.flush(() => resolve(failed ? 1 : 0));
    };
    const fork = () => {
      alive++;
      const worker = cluster.fork();
      worker.on('message', (m: unknown) => {
        const type = (m as { type?: unknown } | null)?.type;
        if (type === CONFIG_REQUEST) worker.send({ type: CONFIG_MESSAGE, config, signingKey });
        else if (type === READY_MESSAGE) ready.add(worker.id);
      });
    };
    cluster.on('exit', (worker, code, signal) => {
      alive--;
      const wasReady = ready.delete(worker.id);
      if (stopping) {
        // A serving worker cut down while draining had requests cut with it.
        if (wasReady && (code !== 0 || signal !== null)) {
          failed = true;
          logger.error({ worker: worker.id, worker_pid: worker.process.pid, code, signal }, 'a worker did not stop cleanly');
        }
        return finishIfDone();
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
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    for (let i = 0; i < n; i++) fork();
  });
}
