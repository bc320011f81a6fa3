/*
 * The command line with `issuer` only and the issuer unreachable: it starts
 * (discovery is not a start-up condition), logs that the authorization
 * server is not known yet, and refuses requests with 503 and Retry-After:
 * never a pass to the upstream.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureBuilt, freePort, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { call, closedPort } from '../helpers/core.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';

const CONFIG = `listen:
  host: 127.0.0.1
  port: \${PORT}
phantom_token:
  issuer: \${ISSUER}
  introspection_response: json
  client_id: gateway-client
  client_secret: gateway-secret
  timeout_ms: 1000
minting:
  issuer: https://gateway.test
log:
  access_log: false
routes:
  - path: /api
    upstream: \${API_URL}
`;

describe('cli: issuer only, the issuer unreachable', { timeout: 60_000 }, () => {
  let api: EchoUpstream;
  let files: ReturnType<typeof scratchDir>;
  let run: CliRun | undefined;

  before(async () => {
    ensureBuilt();
    api = await startEchoUpstream();
    files = scratchDir();
  });
  after(async () => {
    run?.kill();
    await run?.exited;
    await api.close();
    files.cleanup();
  });

  test('starts, logs not ready naming the issuer, answers 503 with Retry-After, never lets a request through', async () => {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${await closedPort()}`;
    run = startCli(['--config', files.write('gateway.yaml', CONFIG)], { PORT: String(port), ISSUER: issuer, API_URL: api.url });
    await run.waitFor(/"msg":"phantom-gateway listening"/);
    await run.waitFor(/"code":"ERR_INTROSPECTION_NOT_READY"/);
    const line = run
      .stdout()
      .split('\n')
      .find((l) => l.includes('"ERR_INTROSPECTION_NOT_READY"'))!;
    const logged = JSON.parse(line) as { issuer: string; msg: string };
    assert.equal(logged.issuer, issuer);
    assert.match(logged.msg, /refused with 503/);
    for (let i = 0; i < 3; i++) {
      const r = await call(`http://127.0.0.1:${port}/api/x`, `Bearer cli-token-${i}`);
      assert.equal(r.status, 503, r.body);
      assert.match(String(r.headers['retry-after']), /^\d+$/);
    }
    assert.equal(api.received.length, 0);
    assert.equal(run.child.exitCode, null, 'still running');
    assert.ok(!run.stdout().includes('gateway-secret') && !run.stderr().includes('gateway-secret'), 'the secret is never logged');
  });
});
