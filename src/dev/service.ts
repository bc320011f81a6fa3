/*
 * The demo's parts as separate processes, for docker-compose.yml (one
 * container each, as in Curity's OpenResty tutorial):
 *
 *   node dist/dev/service.js authorization-server
 *     PORT (8443), HOST (0.0.0.0), PUBLIC_HOST (localhost: the host name in
 *     the issuer, as clients outside the compose network reach it), AUDIENCE
 *   node dist/dev/service.js example-api
 *     PORT (3000), HOST (0.0.0.0), ISSUER, AUDIENCE, JWKS_URI
 *
 * Development only, like the demo: the authorization server refuses
 * NODE_ENV=production. SIGTERM and SIGINT stop it.
 */
import { fileURLToPath } from 'node:url';
import { startDevAuthorizationServer } from './authorization-server.js';
import { startExampleApi } from './example-api.js';

type Env = Record<string, string | undefined>;

function portOf(env: Env, fallback: number): number {
  const raw = env.PORT ?? String(fallback);
  if (!/^\d+$/.test(raw) || Number(raw) > 65535) throw new Error(`PORT must be a port number (0-65535), got "${raw}"`);
  return Number(raw);
}

function required(env: Env, name: string): string {
  const v = env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
}

/** Starts one service; resolves with what to close and the line to print. */
export async function startService(name: string, env: Env): Promise<{ close(): Promise<void>; line: string }> {
  const host = env.HOST ?? '0.0.0.0';
  if (name === 'authorization-server') {
    const as = await startDevAuthorizationServer({
      port: portOf(env, 8443),
      host,
      publicHost: env.PUBLIC_HOST ?? 'localhost',
      ...(env.AUDIENCE ? { audience: env.AUDIENCE } : {}),
    });
    return { close: () => as.close(), line: `development authorization server on ${host}:${as.port}, issuer ${as.issuer} (DEVELOPMENT ONLY)` };
  }
  if (name === 'example-api') {
    const api = await startExampleApi({
      port: portOf(env, 3000),
      host,
      issuer: required(env, 'ISSUER'),
      audience: env.AUDIENCE ?? 'api.example.com',
      jwksUri: required(env, 'JWKS_URI'),
    });
    return { close: () => api.close(), line: `example API on ${host}:${api.port}/api, accepting JWTs from ${env.ISSUER}` };
  }
  throw new Error(`unknown service "${name}": authorization-server or example-api`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  startService(process.argv[2] ?? '', process.env).then(
    (service) => {
      process.stdout.write(`${service.line}\n`);
      const stop = () => {
        service.close().then(() => process.exit(0), () => process.exit(1));
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    },
    (err: unknown) => {
      process.stderr.write(`dev service: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
