/*
 * The Runtime in-process: one configuration generation after another over
 * the same sockets, for the proxy and the forward-auth listener together.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/observability/logger.js';
import { pinRestartOptions, Runtime } from '../../src/runtime.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const TOKEN = 'runtime-opaque-token';

describe('Runtime: reload of the proxy and the forward-auth listener together', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let runtime: Runtime;
  let yaml: string;
  let proxyPort: number;
  let faPort: number;
  const lines: string[] = [];
  const agent = new Agent({ keepAliveTimeout: 10_000 });

  const text = (routes: string, mint = false) => `listen: { host: 127.0.0.1, port: 0 }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s
  scope: read
${mint ? '  introspection_response: json\n' : ''}forward_auth:
  listen: { host: 127.0.0.1, port: 0 }
routes:
${routes}`;
  const load = (): GatewayConfig => parseConfig(yaml, { file: 'runtime.yaml', env: {} });

  before(async () => {
    as = await startScriptedIntrospection();
    await as.activate(TOKEN, { scope: 'read' });
    api = await startEchoUpstream();
    yaml = text(`  - path: /api\n    upstream: ${api.url}/v1\n`);
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    runtime = new Runtime(load(), { logger: createLogger('info', sink), load });
    proxyPort = (await runtime.gateway!.listen(0, '127.0.0.1')).port;
    faPort = (await runtime.forwardAuth!.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    await agent.close();
    await runtime.close();
    await Promise.all([as.close(), api.close()]);
  });

  const proxied = async (path: string) => {
    const res = await request(`http://127.0.0.1:${proxyPort}${path}`, { dispatcher: agent, headers: { authorization: `Bearer ${TOKEN}` } });
    return { status: res.statusCode, body: await res.body.text() };
  };
  const decision = async (uri: string) => {
    const res = await request(`http://127.0.0.1:${faPort}/`, {
      dispatcher: agent,
      headers: { authorization: `Bearer ${TOKEN}`, 'x-forwarded-method': 'GET', 'x-forwarded-uri': uri },
    });
    await res.body.dump();
    return res.statusCode;
  };

  test('a new route serves on both front doors after reload() (same sockets, same keep-alive connections), the cache is kept, the removed one is gone', async () => {
    assert.equal((await proxied('/api/x')).status, 200);
    assert.equal(await decision('/api/x'), 200);
    assert.equal(await decision('/new/x'), 404);
    const before = as.callsFor(TOKEN);
    yaml = text(`  - path: /new\n    upstream: ${api.url}/n\n`);
    assert.deepEqual(await runtime.reload(), { ok: true });
    assert.equal(await decision('/new/x'), 200);
    assert.equal(await decision('/api/x'), 404);
    const r = await proxied('/new/x');
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).url, '/n/x');
    assert.equal(as.callsFor(TOKEN), before, 'cache hits after the reload');
    assert.ok(lines.some((l) => l.includes('"cache_kept":true')));
  });

  test('reload() with an invalid file: { ok: false, errors } with each problem and its line, the running routes stay', async () => {
    const running = yaml;
    yaml = running.replace(`upstream: ${api.url}/n`, 'upstream: nowhere');
    const outcome = await runtime.reload();
    assert.equal(outcome.ok, false);
    assert.ok(!outcome.ok && outcome.errors.some((e) => /^runtime\.yaml:11: routes\[0\]\.upstream: is not a URL/.test(e)), JSON.stringify(outcome));
    assert.equal(await decision('/new/x'), 200);
    yaml = running;
  });

  test('a signing key made at start is kept across reloads (same kid published)', async () => {
    yaml = text(`  - path: /new\n    upstream: ${api.url}/n\n`, true);
    assert.deepEqual(await runtime.reload(), { ok: true });
    const kid = runtime.guards.minting!.keys.signer.kid;
    yaml = text(`  - path: /new\n    upstream: ${api.url}/n\n  - path: /more\n    upstream: ${api.url}/m\n`, true);
    assert.deepEqual(await runtime.reload(), { ok: true });
    assert.equal(runtime.guards.minting!.keys.signer.kid, kid);
    const jwks = await request(`http://127.0.0.1:${proxyPort}/.well-known/jwks.json`, { dispatcher: agent });
    assert.deepEqual(((await jwks.body.json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid), [kid]);
  });

  test('pinRestartOptions: listen, workers, forward_auth.listen and parser options keep their running values and are named', () => {
    const running = parseConfig(text(`  - path: /api\n    upstream: ${api.url}\n`), { env: {} });
    const next = parseConfig(
      text(`  - path: /api\n    upstream: ${api.url}\n`)
        .replace('listen: { host: 127.0.0.1, port: 0 }', 'listen: { host: 0.0.0.0, port: 9000 }\nworkers: 3\nserver: { max_header_bytes: 4096, send_timeout_ms: 1234 }')
        .replace('  listen: { host: 127.0.0.1, port: 0 }', '  listen: { host: 127.0.0.1, port: 9001 }'),
      { env: {} },
    );
    const { config, changed } = pinRestartOptions(running, next);
    assert.deepEqual(changed.sort(), ['forward_auth.listen', 'listen.host', 'listen.port', 'server.max_header_bytes', 'workers']);
    assert.deepEqual(config.listen, running.listen);
    assert.deepEqual(config.forward_auth!.listen, running.forward_auth!.listen);
    assert.equal(config.workers, running.workers);
    assert.equal(config.server.max_header_bytes, running.server.max_header_bytes);
    assert.equal(config.server.send_timeout_ms, 1234, 'what can change, changes');
  });

  test('ConfigError from the loader is what reload() reports (not a thrown error)', async () => {
    const r = new Runtime(load(), {
      logger: createLogger('silent'),
      load: () => {
        throw new ConfigError(['x.yaml:1: a: b', 'x.yaml:2: c: d']);
      },
    });
    assert.deepEqual(await r.reload(), { ok: false, errors: ['x.yaml:1: a: b', 'x.yaml:2: c: d'] });
    await r.close();
  });
});
