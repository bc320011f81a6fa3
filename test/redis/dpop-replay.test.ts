/*
 * DPoP proofs are remembered in Redis when `cache.redis` is set: a proof
 * used at one instance is refused at another (real redis-server, two
 * in-process gateways, a SCRIPTED introspection endpoint whose JWT carries
 * cnf.jkt). And both instances accept each other's server nonces, since
 * they derive the nonce secret from the shared key secret.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { sharedUp, skip, startRedis, TEST_KEY_SECRET, type RedisInstance } from '../helpers/redis.js';

const PUBLIC = 'https://api.example.com';

describe('DPoP proofs shared through Redis (scripted introspection)', { skip }, () => {
  let redis: RedisInstance;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let a: TestGateway;
  let b: TestGateway;
  const yaml = (nonce: boolean) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
  dpop: { public_base_url: "${PUBLIC}", nonce: ${nonce} }
cache:
  redis: { url: "${redis.url}", key_secret: "${TEST_KEY_SECRET}" }
routes:
  - path: /api
    upstream: ${api.url}
`;
  before(async () => {
    redis = await startRedis();
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    a = await startGateway(yaml(false));
    b = await startGateway(yaml(false));
    await sharedUp(a.gateway.guards.shared!);
    await sharedUp(b.gateway.guards.shared!);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await api?.close();
    await as?.close();
    await redis?.close();
  });

  test('a proof accepted by instance A is a replay at instance B', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(publicKey);
    await as.activate('bound', { cnf: { jkt: await calculateJwkThumbprint(jwk, 'sha256') } });
    const proof = await new SignJWT({ jti: crypto.randomUUID(), htm: 'GET', htu: `${PUBLIC}/api/x`, iat: Math.floor(Date.now() / 1000), ath: hash('sha256', 'bound', 'base64url') })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
      .sign(privateKey);
    const headers = { authorization: 'DPoP bound', dpop: proof };
    assert.equal((await fetch(`${a.url}/api/x`, { headers })).status, 200);
    const again = await fetch(`${b.url}/api/x`, { headers });
    assert.equal(again.status, 401);
    assert.match(String(again.headers.get('www-authenticate')), /invalid_dpop_proof/);
    assert.equal(api.received.length, 1);
    // Redis holds the proof under a keyed hash: neither the jti nor the thumbprint.
    const keys = redis.keys().filter((k) => k.includes(':d:'));
    assert.equal(keys.length, 1);
  });

  test('a nonce handed out by A is accepted by B', async () => {
    await a.close();
    await b.close();
    a = await startGateway(yaml(true));
    b = await startGateway(yaml(true));
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(publicKey);
    await as.activate('bound-2', { cnf: { jkt: await calculateJwkThumbprint(jwk, 'sha256') } });
    const make = (nonce?: string) =>
      new SignJWT({ jti: crypto.randomUUID(), htm: 'GET', htu: `${PUBLIC}/api/x`, iat: Math.floor(Date.now() / 1000), ath: hash('sha256', 'bound-2', 'base64url'), ...(nonce ? { nonce } : {}) })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
        .sign(privateKey);
    const first = await fetch(`${a.url}/api/x`, { headers: { authorization: 'DPoP bound-2', dpop: await make() } });
    assert.equal(first.status, 401);
    const nonce = first.headers.get('dpop-nonce')!;
    assert.ok(nonce);
    const atB = await fetch(`${b.url}/api/x`, { headers: { authorization: 'DPoP bound-2', dpop: await make(nonce) } });
    assert.equal(atB.status, 200, await atB.text());
  });
});
