import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { NGINX_CONF_DEFAULTS, NginxConfError, nginxConf } from './nginx-conf.js';

export const NGINX_CONF_USAGE = `Usage: phantom-gateway nginx-conf --config <file.yaml> [--listen HOST:PORT]

Prints an NGINX configuration for the http {} context: one server with a
location per route, protected routes decided by the forward-auth listener
(forward_auth.listen) through auth_request, decisions cached by NGINX.

  -c, --config <file>       gateway configuration (YAML)
      --listen <host:port>  where the NGINX server listens (default: the configuration's listen)
      --cache-path <dir>    decision cache directory, on tmpfs: its files hold JWTs (default ${NGINX_CONF_DEFAULTS.cachePath})
      --cache-zone <name>   decision cache zone name (default ${NGINX_CONF_DEFAULTS.cacheZone})
      --no-decision-cache   ask the forward-auth listener on every request
      --open-files <n>      decision cache files each worker keeps open (default ${NGINX_CONF_DEFAULTS.openFiles}; 0: none)
  -h, --help                show this help
`;

/** `host:port`, `[v6]:port`; undefined when it is neither. */
export function parseListen(v: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: (m[1] ?? m[2])!, port };
}

/** `phantom-gateway nginx-conf ...`: exit 0 with the configuration on stdout, 2 on a usage or configuration error. */
export function runNginxConf(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): number {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        listen: { type: 'string' },
        'cache-path': { type: 'string' },
        'cache-zone': { type: 'string' },
        'no-decision-cache': { type: 'boolean' },
        'open-files': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (e) {
    err.write(`phantom-gateway nginx-conf: ${(e as Error).message}\n\n${NGINX_CONF_USAGE}`);
    return 2;
  }
  if (args.help) {
    out.write(NGINX_CONF_USAGE);
    return 0;
  }
  if (!args.config) {
    err.write(`phantom-gateway nginx-conf: --config is required\n\n${NGINX_CONF_USAGE}`);
    return 2;
  }
  const listen = args.listen === undefined ? undefined : parseListen(args.listen);
  if (args.listen !== undefined && listen === undefined) {
    err.write(`phantom-gateway nginx-conf: --listen must be HOST:PORT (e.g. 0.0.0.0:80 or [::]:443), got "${args.listen}"\n`);
    return 2;
  }
  const openFiles = args['open-files'] === undefined ? undefined : Number(args['open-files']);
  if (openFiles !== undefined && (!/^\d+$/.test(args['open-files']!) || openFiles > 1_000_000)) {
    err.write(`phantom-gateway nginx-conf: --open-files must be a whole number from 0 to 1000000, got "${args['open-files']}"\n`);
    return 2;
  }
  try {
    const config = loadConfigFile(args.config);
    out.write(
      nginxConf(config, {
        source: args.config,
        ...(listen ? { listen } : {}),
        ...(args['cache-path'] ? { cachePath: args['cache-path'] } : {}),
        ...(args['cache-zone'] ? { cacheZone: args['cache-zone'] } : {}),
        decisionCache: args['no-decision-cache'] !== true,
        ...(openFiles !== undefined ? { openFiles } : {}),
      }),
    );
    return 0;
  } catch (e) {
    if (e instanceof ConfigError || e instanceof NginxConfError) {
      err.write(`phantom-gateway nginx-conf: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
