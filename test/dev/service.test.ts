/*
 * docker-compose.yml without Docker: each service's command from the compose
 * file run as a process here (the development authorization server and the
 * example API from dist/dev/service.js, the gateway from the CLI with the
 * mounted deploy/compose/gateway.yaml), the compose host names and ports
 * mapped to free loopback ports. Then the tutorial's flow: a token from the
 * authorization server, the API called through the gateway.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { request } from 'undici';
import { ROOT, ensureBuilt, freePort, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { DEV_CLIENTS } from '../../src/dev/authorization-server.js';

interface Service {
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
}
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service> };

function schemaHasAdmin(): boolean {
  try {
    parseConfig('admin: {}\nroutes: [{ path: /, upstream: "http://127.0.0.1:1", phantom_token: false }]\n', { env: {} });
    return true;
  } catch (err) {
    if (err instanceof ConfigError && /admin: unknown option/.test(err.message)) return false;
    throw err;
  }
}

describe('docker-compose.yml services run as processes (host names mapped to loopback; real oidc-provider)', () => {
  const runs: CliRun[] = [];
  const files = scratchDir();
  const ports = { as: 0, api: 0, gateway: 0, admin: 0 };
  let as: CliRun;
  let api: CliRun;
  let gateway: CliRun;

  /** A compose service's `node <script> <args>` command, run from the repository with its environment (ports replaced). */
  function runService(name: string, env: Record<string, string>): CliRun {
    const cmd = compose.services[name]!.command!;
    assert.equal(cmd[0], 'node');
    return startNode(cmd.slice(1), { ...compose.services[name]!.environment, HOST: '127.0.0.1', ...env });
  }

  before(async () => {
    ensureBuilt();
    ports.as = await freePort();
    ports.api = await freePort();
    ports.gateway = await freePort();
    ports.admin = await freePort();
    const asEnv = compose.services['authorization-server']!.environment!;
    as = runService('authorization-server', { PORT: String(ports.as) });
    await as.waitFor(/development authorization server on/);
    const apiEnv = compose.services.api!.environment!;
    api = runService('api', {
      PORT: String(ports.api),
      ISSUER: apiEnv.ISSUER!.replace(`:${asEnv.PORT}`, `:${ports.as}`),
      JWKS_URI: apiEnv.JWKS_URI!.replace(`authorization-server:${asEnv.PORT}`, `127.0.0.1:${ports.as}`),
    });
    await api.waitFor(/example API on/);
    const mount = compose.services.gateway!.volumes!.find((v) => v.includes('/etc/phantom-gateway/gateway.yaml'))!;
    let config = readFileSync(join(ROOT, mount.split(':')[0]!), 'utf8')
      .replace(`authorization-server:${asEnv.PORT}`, `127.0.0.1:${ports.as}`)
      .replace(`api:${apiEnv.PORT}`, `127.0.0.1:${ports.api}`)
      .replace(/host: 0\.0\.0\.0\n  port: 8080/, `host: 127.0.0.1\n  port: ${ports.gateway}`)
      .replace(/host: 0\.0\.0\.0\n    port: 8082/, `host: 127.0.0.1\n    port: ${ports.admin}`);
    if (!schemaHasAdmin()) config = config.slice(0, config.indexOf('\n# Health'));
    const file = files.write('gateway.yaml', config);
    gateway = startCli(['--config', file], {
      INTROSPECTION_CLIENT_SECRET: compose.services.gateway!.environment!.INTROSPECTION_CLIENT_SECRET!,
      ADMIN_TOKEN: 'development-admin-token-change-me',
    });
    runs.push(gateway);
    await gateway.waitFor(/phantom-gateway listening/, 20_000);
  });

  after(async () => {
    for (const r of runs) r.kill();
    await Promise.all(runs.map((r) => r.exited));
    files.cleanup();
  });

  function startNode(args: string[], env: Record<string, string>): CliRun {
    const run = startCliWith(args, env);
    runs.push(run);
    return run;
  }

  test('a client-credentials token from the authorization server reaches the API through the gateway as a JWT it verifies', async () => {
    const tokenRes = await request(`http://127.0.0.1:${ports.as}/oauth/v2/oauth-token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret, grant_type: 'client_credentials', scope: 'read' }).toString(),
    });
    assert.equal(tokenRes.statusCode, 200);
    const { access_token: token } = (await tokenRes.body.json()) as { access_token: string };
    const res = await request(`http://127.0.0.1:${ports.gateway}/api`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await res.body.json()) as { message: string; tokenPayload: { iss: string; scope: string } };
    assert.equal(res.statusCode, 200, JSON.stringify(body));
    assert.equal(body.message, 'API called with a valid JWT');
    assert.equal(body.tokenPayload.iss, `http://localhost:${ports.as}`);
    assert.equal(body.tokenPayload.scope, 'read');
    const direct = await request(`http://127.0.0.1:${ports.api}/api`, { headers: { authorization: `Bearer ${token}` } });
    await direct.body.dump();
    assert.equal(direct.statusCode, 401, 'the opaque token straight to the API is refused');
  });

  test('the services stop on SIGTERM (what docker compose down sends) with exit 0', async () => {
    for (const r of [as, api]) {
      r.child.kill('SIGTERM');
      const { code } = await r.exited;
      assert.equal(code, 0, r.stderr());
      assert.equal(r.stderr(), '');
    }
  });
});

/** Like startCli (which runs bin/phantom-gateway.js), for another script of the repository: `node <args>`. */
function startCliWith(args: string[], env: Record<string, string>): CliRun {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let closed = false;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('close', (code, signal) => {
      closed = true;
      res({ code, signal });
    }),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    async waitFor(pattern, timeoutMs = 20_000) {
      const end = Date.now() + timeoutMs;
      while (!pattern.test(out) && !pattern.test(err)) {
        if (closed || Date.now() > end) throw new Error(`waiting for ${pattern}: ${closed ? 'exited' : 'timed out'}\nstdout: ${out}\nstderr: ${err}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
