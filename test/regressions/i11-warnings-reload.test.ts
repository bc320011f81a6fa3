/*
 * Review of issue 11 (rate-limited warnings): the outage state lives in the
 * WarnChannel of each generation's introspection client. An outage logged
 * before a reload is never closed: the new generation starts "not failing",
 * so when the authorization server comes back no "recovered" line is
 * written, and the last word in the logs stays "unavailable" (scripted
 * authorization server: 503, then answers again).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/observability/logger.js';
import { Runtime } from '../../src/runtime.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

describe('review i11 warnings: an outage that straddles a reload, scripted', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let runtime: Runtime;
  let port: number;
  const lines: Record<string, unknown>[] = [];

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    const yaml = `listen: { host: 127.0.0.1, port: 0 }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: ${api.url}
`;
    const load = (): GatewayConfig => parseConfig(yaml, { file: 'gateway.yaml', env: {} });
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    runtime = new Runtime(load(), { logger: createLogger('info', sink), load });
    port = (await runtime.gateway!.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    await runtime?.close();
    await Promise.all([as?.close(), api?.close()]);
  });

  const get = async (token: string) => {
    const r = await request(`http://127.0.0.1:${port}/api/x`, { headers: { authorization: `Bearer ${token}` } });
    await r.body.text();
    return r.statusCode;
  };

  // Defect: src/core/guards.ts makes `new WarnChannel(...)` per introspection client, i.e. per generation; nothing carries `failing` over a reload.
  test('503 logged as an outage, reload of the same file, the server answers again: "introspection endpoint recovered" is logged', async () => {
    as.fallback = { status: 503 };
    assert.equal(await get('token-during-outage'), 503);
    assert.ok(lines.some((l) => l.level === 'warn' && l.code === 'ERR_INTROSPECTION_UNAVAILABLE'), 'the outage is logged');

    assert.deepEqual(await runtime.reload(), { ok: true });
    await as.activate('token-after-outage', { scope: 'read' });
    assert.equal(await get('token-after-outage'), 200);
    assert.ok(
      lines.some((l) => /introspection endpoint recovered/.test(String(l.msg))),
      `the end of the outage is logged: ${JSON.stringify(lines.filter((l) => l.msg !== 'request').map((l) => l.msg))}`,
    );
  });
});
