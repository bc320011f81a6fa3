/*
 * `rediss://`: a real redis-server speaking TLS only (its certificate from a
 * test CA made with openssl). With `ca_file`, two gateways share over TLS;
 * without it (Node's roots do not know the test CA) the certificate is
 * refused and the gateway serves without sharing, one warning; with
 * `verify_ssl: false` it connects, and warns at start.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { makeTestPki, type TestPki } from '../client-auth/certs.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { basicConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { skip, startRedis, sharedUp, TEST_KEY_SECRET, type RedisInstance } from '../helpers/redis.js';

describe('the shared cache over TLS (rediss://, real redis-server with a test CA, scripted introspection peer)', { skip }, () => {
  let pki: TestPki;
  let redis: RedisInstance;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  const gateways: TestGateway[] = [];
  const yaml = (extra: string) => basicConfig(as.url, api.url, `cache:\n  redis:\n    url: ${redis.url}\n    key_secret: ${TEST_KEY_SECRET}\n${extra}`);
  const call = async (gw: TestGateway, token: string) => {
    const res = await request(`${gw.url}/api/x`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    return res.statusCode;
  };
  before(async () => {
    pki = makeTestPki('unused');
    [redis, as, api] = await Promise.all([startRedis({ tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile, caFile: pki.caFile } }), startScriptedIntrospection(), startEchoUpstream()]);
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await Promise.all([redis.close(), as.close(), api.close()]);
    pki.cleanup();
  });

  test('with ca_file: two gateways share over TLS (one introspection), and the entry is in the TLS Redis', async () => {
    assert.match(redis.url, /^rediss:/);
    const [a, b] = await Promise.all([startGateway(yaml(`    ca_file: ${pki.caFile}\n`)), startGateway(yaml(`    ca_file: ${pki.caFile}\n`))]);
    gateways.push(a, b);
    await Promise.all([sharedUp(a.gateway.guards.shared!), sharedUp(b.gateway.guards.shared!)]);
    await as.activate('over-tls', { scope: 'read' });
    assert.equal(await call(a, 'over-tls'), 200);
    assert.equal(await call(b, 'over-tls'), 200);
    assert.equal(as.callsFor('over-tls'), 1);
    assert.ok(redis.keys().some((k) => k.includes(':t:')));
  });

  test("without ca_file the server's certificate is refused: served without sharing, one warning naming Redis", async () => {
    const c = await startGateway(yaml(''));
    gateways.push(c);
    await as.activate('untrusted-tls', { scope: 'read' });
    const deadline = Date.now() + 5000;
    while (!c.logs.some((l) => /shared cache unavailable/.test(String(l.msg))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await call(c, 'untrusted-tls'), 200);
    assert.equal(c.gateway.guards.sharedCacheState(), 'down');
    const warnings = c.logs.filter((l) => /shared cache unavailable/.test(String(l.msg)));
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!.redis, redis.url);
  });

  test('verify_ssl: false connects (and warns at start)', async () => {
    const d = await startGateway(yaml('    verify_ssl: false\n'));
    gateways.push(d);
    await sharedUp(d.gateway.guards.shared!);
    assert.ok(d.logs.some((l) => /cache\.redis\.verify_ssl is false/.test(String(l.msg))));
  });
});
