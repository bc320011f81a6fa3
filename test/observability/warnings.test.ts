/*
 * Rate-limited warnings: the WarnChannel with a moved clock, then through
 * the real gateway a dead upstream hit 50 times and an introspection
 * endpoint answering 503 ten times, each followed by its recovery.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { createLogger } from '../../src/observability/logger.js';
import { WarnChannel } from '../../src/observability/warn-limiter.js';
import { startEchoUpstream, startScriptedIntrospection } from '../helpers/servers.js';
import { startGateway } from '../helpers/gateway.js';
import { closedPort, gatewayConfig } from '../helpers/core.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, logger: createLogger('info', sink) };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('WarnChannel (moved clock)', () => {
  test('one line when failing starts, a count once a window has passed, one line on recovery', async () => {
    const { lines, logger } = capture();
    let now = 1_000_000;
    const ch = new WarnChannel(logger, { upstream: 'http://10.0.0.5:8080', route: '/api' }, 'upstream', 60_000, () => now);
    for (let i = 0; i < 30; i++) {
      ch.fail('ECONNREFUSED', 'upstream unreachable');
      now += 1000; // 30 failures over 30 s
    }
    await tick();
    assert.equal(lines.length, 1, 'only the first failure within the window');
    assert.equal(lines[0]!.level, 'warn');
    assert.equal(lines[0]!.upstream, 'http://10.0.0.5:8080');
    assert.equal(lines[0]!.code, 'ECONNREFUSED');
    now = 1_000_000 + 61_000;
    ch.fail('ECONNREFUSED', 'upstream unreachable'); // the 31st, past the window: the count
    await tick();
    assert.equal(lines.length, 2);
    assert.equal(lines[1]!.repeated, 30);
    assert.match(lines[1]!.msg as string, /still failing, 30 more in the last 61 s/);
    ch.fail('ECONNREFUSED', 'upstream unreachable');
    ch.fail('ECONNREFUSED', 'upstream unreachable');
    now += 5000;
    assert.equal(ch.failing, true);
    ch.ok();
    ch.ok(); // once only
    await tick();
    assert.equal(lines.length, 3);
    assert.equal(lines[2]!.level, 'info');
    assert.equal(lines[2]!.repeated, 2);
    assert.equal(lines[2]!.failing_for_ms, 66_000);
    assert.match(lines[2]!.msg as string, /^upstream recovered/);
    assert.equal(ch.failing, false);
  });

  test('a failure of another kind is a new line at once, with the count of the previous kind', async () => {
    const { lines, logger } = capture();
    const now = 0;
    const ch = new WarnChannel(logger, { endpoint: 'https://as.example/introspect' }, 'introspection endpoint', 60_000, () => now);
    ch.fail('ERR_INTROSPECTION_UNREACHABLE', 'unreachable');
    ch.fail('ERR_INTROSPECTION_UNREACHABLE', 'unreachable');
    ch.fail('ERR_INTROSPECTION_TIMEOUT', 'timed out');
    ch.fail('ERR_INTROSPECTION_UNAVAILABLE', 'unavailable', { status: 503 });
    ch.fail('ERR_INTROSPECTION_UNAVAILABLE', 'unavailable', { status: 429 });
    await tick();
    assert.deepEqual(lines.map((l) => [l.code, l.repeated, l.status]), [
      ['ERR_INTROSPECTION_UNREACHABLE', undefined, undefined],
      ['ERR_INTROSPECTION_TIMEOUT', 1, undefined],
      ['ERR_INTROSPECTION_UNAVAILABLE', undefined, 503],
      ['ERR_INTROSPECTION_UNAVAILABLE', undefined, 429],
    ]);
  });
});

describe('rate-limited warnings through the gateway', () => {
  const closers: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of closers.reverse()) await c();
  });

  test('a dead upstream hit 50 times: one warning naming it, then one recovery line with the count', async () => {
    const port = await closedPort();
    const as = await startScriptedIntrospection();
    closers.push(() => as.close());
    const gw = await startGateway(gatewayConfig({ introspection: as.url, upstream: `http://127.0.0.1:${port}/base`, routes: [{ path: '/open', phantom_token: false }] }));
    closers.push(() => gw.close());
    for (let i = 0; i < 50; i++) assert.equal((await request(`${gw.url}/open/x?key=k3y`)).statusCode, 502);
    const warnings = gw.logs.filter((l) => l.level === 'warn' && /upstream/.test(String(l.msg)));
    assert.ok(warnings.length >= 1 && warnings.length <= 2, JSON.stringify(warnings));
    assert.equal(warnings[0]!.upstream, `http://127.0.0.1:${port}`);
    assert.equal(warnings[0]!.route, '/open');
    assert.ok(!gw.rawLogs().includes('k3y'), 'never the client\'s query');
    // The upstream comes up on that port.
    const up: Server = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => up.listen(port, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => up.close(() => r())));
    assert.equal((await request(`${gw.url}/open/x`)).statusCode, 200);
    const recovered = gw.logs.filter((l) => /upstream recovered/.test(String(l.msg)));
    assert.equal(recovered.length, 1);
    assert.equal(recovered[0]!.upstream, `http://127.0.0.1:${port}`);
    assert.equal((recovered[0]!.repeated as number) + warnings.length, 50, 'every failure is counted once');
    assert.equal(gw.logs.filter((l) => l.msg === 'request' && l.status === 502).length, 50, 'the access log still has every request');
  });

  test('an introspection endpoint answering 503 ten times: one warning naming it, then one recovery line', async () => {
    const as = await startScriptedIntrospection();
    closers.push(() => as.close());
    const api = await startEchoUpstream();
    closers.push(() => api.close());
    const gw = await startGateway(gatewayConfig({ introspection: as.url, upstream: api.url, routes: [{ path: '/api' }] }));
    closers.push(() => gw.close());
    as.fallback = { status: 503 };
    for (let i = 0; i < 10; i++) assert.equal((await request(`${gw.url}/api/x`, { headers: { authorization: `Bearer down-${i}` } })).statusCode, 503);
    const warnings = gw.logs.filter((l) => l.level === 'warn');
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.equal(warnings[0]!.endpoint, `${as.url}/introspect`);
    assert.equal(warnings[0]!.code, 'ERR_INTROSPECTION_UNAVAILABLE');
    await as.activate('back-up-token');
    assert.equal((await request(`${gw.url}/api/x`, { headers: { authorization: 'Bearer back-up-token' } })).statusCode, 200);
    const recovered = gw.logs.filter((l) => /introspection endpoint recovered/.test(String(l.msg)));
    assert.equal(recovered.length, 1);
    assert.equal(recovered[0]!.repeated, 9);
    assert.equal(recovered[0]!.endpoint, `${as.url}/introspect`);
  });
});
