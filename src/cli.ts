import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from './config/load.js';
import { createLogger } from './observability/logger.js';
import { Gateway } from './proxy/server.js';

const USAGE = `Usage: phantom-gateway --config <file.yaml> [--check]

  -c, --config <file>   gateway configuration (YAML)
      --check           validate the configuration and exit
  -h, --help            show this help
  -v, --version         show the version
`;

/** Exit codes: 0 ok, 1 runtime failure (e.g. port busy), 2 usage or configuration error. */
export async function main(argv: string[]): Promise<number> {
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

  const logger = createLogger(config.log.level);
  const gateway = new Gateway(config, { logger });
  try {
    const addr = await gateway.listen();
    logger.info({ host: addr.address, port: addr.port, routes: config.routes.map((r) => r.path) }, 'phantom-gateway listening');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const where = `${config.listen.host}:${config.listen.port}`;
    const why = e.code === 'EADDRINUSE' ? `${where} is already in use: stop what is using it or change listen.port` : e.code === 'EACCES' ? `no permission to listen on ${where}` : `cannot listen on ${where}: ${e.message}`;
    process.stderr.write(`phantom-gateway: ${why}\n`);
    await gateway.close();
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down: finishing in-flight requests');
      gateway.close().then(
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
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
