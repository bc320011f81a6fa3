/*
 * The start-up line of a real process (the CLI): one "phantom-gateway
 * started" line with version, config file, routes and their upstream
 * origins, introspection endpoints (origin and path) and listeners; labels
 * and ISO time on every line; no secret anywhere.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt, freePort, ROOT, scratchDir, startCli, type CliRun } from '../helpers/cli.js';

describe('cli: the start-up line', { timeout: 30_000 }, () => {
  const scratch = scratchDir();
  let run: CliRun | undefined;
  before(() => ensureBuilt());
  after(async () => {
    if (run !== undefined) {
      run.child.kill('SIGTERM');
      await run.exited;
    }
    scratch.cleanup();
  });

  test('"phantom-gateway started" names version, config, routes, endpoints and listeners', async () => {
    const [port, faPort] = [await freePort(), await freePort()];
    const file = scratch.write(
      'gw.yaml',
      `listen: { host: 127.0.0.1, port: ${port} }
forward_auth:
  listen: { host: 127.0.0.1, port: ${faPort} }
phantom_token:
  introspection_endpoint: http://127.0.0.1:9/oauth/introspect?tenant=t-secret
  client_id: gw
  client_secret: very-secret-value
routes:
  - path: /api
    upstream: http://127.0.0.1:9/v1
  - path: /public
    upstream: http://127.0.0.1:10
    phantom_token: false
`,
    );
    run = startCli(['--config', file]);
    await run.waitFor(/phantom-gateway started/);
    const lines = run.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const l of lines) {
      assert.equal(typeof l.level, 'string');
      assert.match(l.time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    const started = lines.find((l) => l.msg === 'phantom-gateway started')!;
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(started.level, 'info');
    assert.equal(started.version, pkg.version);
    assert.equal(started.config, file);
    assert.deepEqual(started.routes, [
      { path: '/api', upstream: 'http://127.0.0.1:9', protected: true },
      { path: '/public', upstream: 'http://127.0.0.1:10', protected: false },
    ]);
    assert.deepEqual(started.introspection, [{ endpoint: 'http://127.0.0.1:9/oauth/introspect' }]);
    assert.deepEqual(started.listeners, [
      { listener: 'proxy', host: '127.0.0.1', port },
      { listener: 'forward_auth', host: '127.0.0.1', port: faPort },
    ]);
    assert.ok(!run.stdout().includes('very-secret-value') && !run.stdout().includes('t-secret'), 'no secret, no query');
  });
});
