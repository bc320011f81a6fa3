/*
 * private_key_jwt with the Curity answer format (introspection_response jwt,
 * the default), against a scripted endpoint: the development server's
 * Curity-style answer only knows client secrets. What the endpoint receives
 * is checked as the server would: the assertion verifies with the client's
 * public key and names the server; a cache hit sends nothing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jwtVerify } from 'jose';
import { JWT_BEARER_ASSERTION } from '../../src/introspection/private-key-jwt.js';
import { startStack, type Stack } from '../helpers/gateway.js';

describe('private_key_jwt with introspection_response jwt (scripted Curity-style endpoint)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'phantom-gateway-pkjwt-curity-'));
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyFile = join(dir, 'gateway.jwk');
  writeFileSync(keyFile, JSON.stringify({ ...key.privateKey.export({ format: 'jwk' }), kid: 'gw-1' }));
  let s: Stack;
  before(async () => {
    s = await startStack(
      (as, api) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  issuer: https://issuer.test
  client_id: gateway-client
  client_auth_method: private_key_jwt
  client_key_file: ${keyFile}
routes:
  - path: /api
    upstream: ${api.url}
`,
    );
  });
  after(async () => {
    await s?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (token: string) => fetch(`${s.gw.url}/api/x`, { headers: { authorization: `Bearer ${token}` } });

  async function assertionOf(call: { headers: Record<string, unknown>; body: string }) {
    assert.equal(call.headers.authorization, undefined, 'no Basic credentials alongside the assertion');
    const form = new URLSearchParams(call.body);
    assert.equal(form.get('client_id'), 'gateway-client');
    assert.equal(form.get('client_assertion_type'), JWT_BEARER_ASSERTION);
    assert.equal(form.get('client_secret'), null);
    const { payload, protectedHeader } = await jwtVerify(form.get('client_assertion')!, key.publicKey, { issuer: 'gateway-client', subject: 'gateway-client', audience: 'https://issuer.test' });
    assert.equal(protectedHeader.kid, 'gw-1');
    assert.equal(payload.exp! - payload.iat!, 60);
    return payload.jti;
  }

  test('a miss carries a fresh assertion; a cache hit sends nothing', async () => {
    const jwt = await s.as.activate('tok-a');
    assert.equal((await get('tok-a')).status, 200);
    assert.equal((await get('tok-a')).status, 200);
    assert.equal(s.as.callsFor('tok-a'), 1, 'one introspection, so one assertion, for two requests');
    assert.equal(s.api.received.at(-1)?.headers.authorization, `Bearer ${jwt}`);
    await s.as.activate('tok-b');
    assert.equal((await get('tok-b')).status, 200);
    const [a, b] = s.as.calls.filter((c) => c.token === 'tok-a' || c.token === 'tok-b');
    assert.equal(a!.headers.accept, 'application/jwt');
    assert.notEqual(await assertionOf(a!), await assertionOf(b!), 'each call its own jti');
  });

  test('the server refuses the assertion (401): 502, the hint names private_key_jwt', async () => {
    s.as.answers.set('tok-refused', { status: 401, body: '{"error":"invalid_client"}', headers: { 'content-type': 'application/json' } });
    const res = await get('tok-refused');
    assert.equal(res.status, 502);
    const warning = s.gw.logs.find((l) => l.code === 'ERR_INTROSPECTION_REJECTED' && l.msg !== 'request');
    assert.match(String(warning?.msg), /client assertion.*\(private_key_jwt\)$/);
    assert.ok(!/eyJ/.test(s.gw.rawLogs()), 'no assertion or JWT in the logs');
  });
});
