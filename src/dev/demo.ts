/*
 * `npm start`: the whole phantom token flow in one process, no Docker, no
 * license. A development authorization server (oidc-provider), an example API
 * that validates JWTs, and the gateway between them, configured from
 * examples/demo.yaml. Two modes (`--dialect`): `jwt`, the authorization
 * server answers with the JWT (Curity style); `json`, it answers plain
 * RFC 7662 JSON and the gateway mints the JWT, which the API verifies
 * against the gateway's own JWKS.
 */
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfigFile, ConfigError } from '../config/load.js';
import type { DestinationStream } from 'pino';
import { createLogger } from '../observability/logger.js';
import { Gateway } from '../proxy/server.js';
import { DEV_CLIENTS, startDevAuthorizationServer, type DevAuthorizationServer } from './authorization-server.js';
import { startExampleApi, type ExampleApi } from './example-api.js';
import { JWKS_PATH } from '../minting/publish.js';
import { humanLog } from './log-lines.js';

const CONFIG = fileURLToPath(new URL('../../examples/demo.yaml', import.meta.url));

const USAGE = `Usage: npm start -- [--dialect jwt|json] [--as-port N] [--api-port N] [--gateway-port N]

  --dialect jwt    the authorization server answers introspection with the JWT
                   (Curity style, Accept: application/jwt); the default
  --dialect json   it answers plain RFC 7662 JSON; the gateway mints the JWT
                   and the API verifies it against the gateway's JWKS

Ports default to 8443 (authorization server), 3000 (API), 8080 (gateway),
or come from AS_PORT, API_PORT, GATEWAY_PORT.
`;

/** How the demo's authorization server answers introspection. */
export type DemoDialect = 'jwt' | 'json';

export interface DemoPorts {
  as: number;
  api: number;
  gateway: number;
}

export interface Demo {
  dialect: DemoDialect;
  /** Who signs the JWT the API receives, and where the API gets the keys. */
  signer: { issuer: string; jwksUri: string };
  as: DevAuthorizationServer;
  api: ExampleApi;
  gateway: Gateway;
  ports: DemoPorts;
  /** The commands printed for the user, ready to paste into a shell (one script, `\` continuations included). */
  commands: string;
  /** The same, one entry per command. */
  commandList: string[];
  /** The DPoP example client against this demo (run from the repository's directory). */
  dpopCommand: string;
  close(): Promise<void>;
}

function port(flag: string | undefined, env: string | undefined, fallback: number, name: string): number {
  const raw = flag ?? env;
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 65535) throw new UsageError(`${name} must be a port number (0-65535), got "${raw}"`);
  return n;
}

class UsageError extends Error {}

function busy(what: string, p: number, hint: string, err: unknown): never {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') throw new UsageError(`port ${p} (${what}) is already in use: stop what uses it or pick another with ${hint}`);
  if (code === 'EACCES') throw new UsageError(`no permission to listen on port ${p} (${what}): pick another with ${hint}`);
  throw err;
}

/** Starts the three parts; resolves when all listen. */
export async function startDemo(ports: DemoPorts, opts: { logLevel?: string; dialect?: DemoDialect; log?: DestinationStream } = {}): Promise<Demo> {
  const dialect = opts.dialect ?? 'jwt';
  const started: { close(): Promise<void> }[] = [];
  const closeAll = async () => {
    for (const s of started.reverse()) await s.close().catch(() => {});
  };
  try {
    const as = await startDevAuthorizationServer({ port: ports.as }).catch((err) => busy('authorization server', ports.as, '--as-port or AS_PORT', err));
    started.push(as);
    // The gateway's port must be known before it starts: it is the DPoP
    // route's public URL (a proof's htu), and, minting, the gateway signs
    // what the API verifies: the API is told its URL (the minted iss) and JWKS.
    const gatewayPort = ports.gateway === 0 ? await unusedPort() : ports.gateway;
    const signer =
      dialect === 'json'
        ? { issuer: `http://localhost:${gatewayPort}`, jwksUri: `http://127.0.0.1:${gatewayPort}${JWKS_PATH}` }
        : { issuer: as.issuer, jwksUri: `http://127.0.0.1:${as.port}${new URL(as.jwksUri).pathname}` };
    const api = await startExampleApi({ port: ports.api, issuer: signer.issuer, audience: as.audience, jwksUri: signer.jwksUri }).catch((err) =>
      busy('example API', ports.api, '--api-port or API_PORT', err),
    );
    started.push(api);
    const config = loadConfigFile(CONFIG, { ...process.env, AS_PORT: String(as.port), API_PORT: String(api.port), GATEWAY_PORT: String(gatewayPort), DEMO_DIALECT: dialect });
    const logger = createLogger(opts.logLevel ?? config.log.level, opts.log);
    const gateway = new Gateway(config, { logger });
    const addr = await gateway.listen().catch(async (err) => {
      await gateway.close();
      return busy('gateway', gatewayPort, '--gateway-port or GATEWAY_PORT', err);
    });
    started.push(gateway);
    const actual = { as: as.port, api: api.port, gateway: addr.port };
    const commandList = commands(actual, as);
    const dpopCommand = [`node examples/dpop-client.mjs --as ${as.issuer} \\`, `  --gateway http://localhost:${actual.gateway}`].join('\n');
    return { dialect, signer, as, api, gateway, ports: actual, commands: commandList.join('\n'), commandList, dpopCommand, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** A loopback port free a moment ago (the demo with --gateway-port 0 in json mode). */
async function unusedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', () => resolve()));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** The two commands, each within 80 columns once indented by the banner (`\` continuations). */
function commands(ports: DemoPorts, as: DevAuthorizationServer): string[] {
  const { client } = DEV_CLIENTS;
  return [
    [
      `TOKEN=$(curl -s -X POST ${as.tokenEndpoint} \\`,
      `  -d client_id=${client.id} -d client_secret=${client.secret} \\`,
      `  -d grant_type=client_credentials -d scope=read \\`,
      `  | sed -E 's/.*"access_token":"([^"]+)".*/\\1/'); echo "$TOKEN"`,
    ].join('\n'),
    `curl -s http://localhost:${ports.gateway}/api -H "Authorization: Bearer $TOKEN"`,
  ];
}

/** Every line fits 80 columns (ports of five digits included). */
export function banner(demo: Demo): string {
  const { ports, as } = demo;
  const line = '='.repeat(78);
  const indent = (text: string) => text.replace(/^/gm, '     ');
  const [getToken, callApi] = demo.commandList.map(indent);
  const dpopClient = indent(demo.dpopCommand);
  const mode =
    demo.dialect === 'json'
      ? `  Mode: json. The authorization server answers introspection in plain
  RFC 7662 JSON; the gateway mints the JWT (RFC 9068, signed with a key made
  at start) and publishes its keys at
    ${demo.signer.jwksUri.replace('127.0.0.1', 'localhost')}
  The API verifies the JWT against them (iss ${demo.signer.issuer}).`
      : `  Mode: jwt. The authorization server answers introspection with the JWT
  itself (Curity style, Accept: application/jwt); the API verifies it against
  the authorization server's keys. Try --dialect json for a server that
  answers plain JSON, with the gateway minting the JWT.`;
  return `
${line}
  phantom-gateway demo: DEVELOPMENT ONLY (in-memory authorization server,
  fixed client secrets, keys made at start). Never expose it.
${line}
${mode}

  Authorization server  ${as.issuer}
                        oidc-provider; discovery at
                        /.well-known/openid-configuration
  Example API           http://localhost:${ports.api}/api
                        validates the JWT itself, needs scope read
  Gateway               http://localhost:${ports.gateway}/api
                        phantom token: opaque in, JWT out

  1. Get an opaque access token (client credentials, as in the Curity
     tutorial):

${getToken}

  2. Call the API through the gateway with it:

${callApi}

  The API answers with the claims of the JWT it received. Sent straight to
  the API (port ${ports.api}), the opaque token is refused: only the gateway
  turns it into a JWT.

  3. DPoP (sender-constrained tokens): the route /dpop takes only
     Authorization: DPoP <token> with a fresh proof signed by the key the
     token is bound to. The example client (Node + jose) gets such a token
     and calls it:

${dpopClient}

  The gateway's requests are logged below. Ctrl+C stops everything.
${line}
`;
}

async function run(): Promise<number> {
  let values;
  try {
    values = parseArgs({
      options: {
        dialect: { type: 'string' },
        'as-port': { type: 'string' },
        'api-port': { type: 'string' },
        'gateway-port': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const dialect = values.dialect ?? 'jwt';
  if (dialect !== 'jwt' && dialect !== 'json') {
    process.stderr.write(`demo: --dialect must be jwt or json, got "${dialect}"\n\n${USAGE}`);
    return 2;
  }
  let demo: Demo;
  try {
    const ports = {
      as: port(values['as-port'], process.env.AS_PORT, 8443, '--as-port'),
      api: port(values['api-port'], process.env.API_PORT, 3000, '--api-port'),
      gateway: port(values['gateway-port'], process.env.GATEWAY_PORT, 8080, '--gateway-port'),
    };
    demo = await startDemo(ports, { dialect, log: humanLog(process.stdout) });
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError || (err instanceof Error && /NODE_ENV=production/.test(err.message))) {
      process.stderr.write(`demo: ${err.message}\n`);
      return err instanceof UsageError ? 1 : 2;
    }
    throw err;
  }
  process.stdout.write(banner(demo));
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stdout.write('\nstopping the demo...\n');
  await demo.close();
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  run().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`demo: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
