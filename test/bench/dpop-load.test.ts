/*
 * The DPoP benchmark's load generator is honest (bench/dpop-load.ts): the
 * proofs it signs ahead of a round are accepted by a real gateway with the
 * benchmark's own configuration and its own scripted introspection endpoint
 * (bench/introspection-server.ts, `dpop-<jkt>` tokens carry cnf.jkt), every
 * answer is a 200 and every request reached the upstream as DPoP. A broken
 * generator (proofs refused) would otherwise report the 401 path's speed as
 * the cost of DPoP: the same proofs sent again are replays, and the generator
 * must count every one of those 401s, which the benchmark refuses to report.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { assertAllOk, dpopBenchGatewayYaml, parseResponse, ProofKey, requestBytes, runLoad } from '../../bench/dpop-load.js';
import { ROOT } from '../helpers/cli.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';

/** bench/introspection-server.ts as the benchmark runs it (here without latency), on a port it picks. */
async function startBenchIntrospection(): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/introspection-server.ts'), '0', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8');
  let timer: NodeJS.Timeout | undefined;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error('bench/introspection-server.ts did not start within 15 s')), 15_000);
      child.stdout!.on('data', (c: string) => {
        out += c;
        const m = /ready (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`bench/introspection-server.ts exited (${code})`)));
    });
    return { port, child };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function introspections(port: number): Promise<number> {
  return ((await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as { calls: number }).calls;
}

describe('bench/dpop-load.ts against a real gateway (the bench scripted introspection endpoint)', () => {
  let as: { port: number; child: ChildProcess };
  let api: EchoUpstream;
  let gw: TestGateway;
  let host: string;
  before(async () => {
    as = await startBenchIntrospection();
    api = await startEchoUpstream();
    gw = await startGateway(dpopBenchGatewayYaml({ port: 0, introspectionEndpoint: `http://127.0.0.1:${as.port}/introspect`, upstream: api.url, maxAgeSeconds: 60 }));
    host = `127.0.0.1:${gw.port}`;
  });
  after(async () => {
    await gw?.close();
    await api?.close();
    if (as && as.child.exitCode === null) {
      as.child.kill('SIGTERM');
      await once(as.child, 'exit');
    }
  });

  for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
    test(`${alg}: every pre-signed proof is answered 200 and reaches the upstream as DPoP with the verified jkt; the same proofs again are replays, each counted as a 401, and the benchmark's check refuses that run`, async () => {
      const key = await ProofKey.generate(alg);
      const token = `dpop-${key.jkt}`;
      const proofs = Array.from({ length: 120 }, () => key.proof('GET', `http://${host}/dpop/items`, token));
      const requests = proofs.map((p) =>
        requestBytes('GET', '/dpop/items', [
          ['Host', host],
          ['Authorization', `DPoP ${token}`],
          ['DPoP', p],
        ]),
      );
      const callsBefore = await introspections(as.port);
      api.received.length = 0;

      const ok = await runLoad({ port: gw.port, connections: 4, seconds: 60, next: (i) => requests[i] });
      assert.deepEqual(ok.statuses, { 200: 120 });
      assert.equal(ok.requests, 120);
      assert.equal(ok.exhausted, true, 'the run ended because the proofs ran out, not the time');
      assert.equal(ok.socketErrors, 0);
      assertAllOk(alg, ok);

      assert.equal(api.received.length, 120, 'every request reached the upstream');
      assert.deepEqual(new Set(api.received.map((r) => r.headers.dpop)), new Set(proofs), 'each proof reached the upstream once, as the client sent it');
      for (const r of api.received) {
        assert.equal(r.url, '/dpop/items');
        assert.equal(r.headers['x-dpop-verified'], key.jkt);
        const m = /^DPoP (.+)$/.exec(r.headers.authorization ?? '');
        assert.ok(m, `forwarded as DPoP <jwt>: ${r.headers.authorization?.slice(0, 10)}`);
        const claims = decodeJwt(m[1]!);
        assert.deepEqual(claims.cnf, { jkt: key.jkt });
        assert.equal(claims.sub, createHash('sha256').update(token).digest('hex'), "the introspection endpoint's JWT for this token");
      }
      assert.equal((await introspections(as.port)) - callsBefore, 1, 'one introspection, then cache hits');

      api.received.length = 0;
      const replayed = await runLoad({ port: gw.port, connections: 4, seconds: 60, next: (i) => requests[i] });
      assert.deepEqual(replayed.statuses, { 401: 120 });
      assert.equal(replayed.non200, 120);
      assert.equal(api.received.length, 0, 'no replayed proof reached the upstream');
      assert.throws(() => assertAllOk(alg, replayed), /statuses \{"401":120\}/);
    });
  }

  test('the Bearer route through the same generator: 200s, no DPoP header upstream', async () => {
    const request = requestBytes('GET', '/bearer/items', [
      ['Host', host],
      ['Authorization', 'Bearer valid-bench-bearer'],
    ]);
    api.received.length = 0;
    const r = await runLoad({ port: gw.port, connections: 4, seconds: 60, next: (i) => (i < 50 ? request : undefined) });
    assert.deepEqual(r.statuses, { 200: 50 });
    assert.equal(api.received.length, 50);
    for (const seen of api.received) {
      assert.equal(seen.headers.dpop, undefined);
      assert.equal(seen.headers['x-dpop-verified'], undefined);
      assert.match(seen.headers.authorization ?? '', /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    }
  });
});

describe('bench/dpop-load.ts response framing', () => {
  const head = (extra: string) => Buffer.from(`HTTP/1.1 401 Unauthorized\r\nwww-authenticate: DPoP error="invalid_dpop_proof"\r\n${extra}\r\n`);
  test('Content-Length: complete only with the whole body', () => {
    const full = Buffer.concat([head('content-length: 5\r\n'), Buffer.from('hello')]);
    assert.equal(parseResponse(full.subarray(0, full.length - 1)), undefined);
    assert.deepEqual(parseResponse(full), { status: 401, length: full.length, close: false });
  });
  test('chunked: complete only after the last chunk; Connection: close is reported', () => {
    const full = Buffer.concat([head('transfer-encoding: chunked\r\nconnection: close\r\n'), Buffer.from('3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n')]);
    for (let cut = 1; cut < 20; cut++) assert.equal(parseResponse(full.subarray(0, full.length - cut)), undefined, `cut ${cut}`);
    assert.deepEqual(parseResponse(full), { status: 401, length: full.length, close: true });
  });
  test('two responses back to back: only the first is taken', () => {
    const one = Buffer.concat([head('content-length: 2\r\n'), Buffer.from('ok')]);
    assert.deepEqual(parseResponse(Buffer.concat([one, one])), { status: 401, length: one.length, close: false });
  });
  test('a response it cannot frame is an error, not a success', () => {
    assert.throws(() => parseResponse(head('')), /without Content-Length/);
    assert.throws(() => parseResponse(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n')), /not an HTTP\/1.1 response/);
  });
});
