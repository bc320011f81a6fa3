/*
 * The forward-auth listener and sender-constrained tokens: what it believes
 * of the gateway that asks (the URL the client addressed, a client
 * certificate) only from a peer in trusted_proxies, the request line under
 * Envoy's path_prefix, dpop.public_base_url, and what its log says (which
 * check failed; never a token or a proof). Scripted introspection endpoint
 * (its JWTs carry cnf).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { ask, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { makeTestPki, type TestPki } from '../client-auth/certs.js';
import { dpopClient, dpopProof, x5tS256, type DpopClient } from '../frontdoors/dpop.js';

const yaml = (as: ScriptedIntrospection, extra: string) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
routes:
  - path: /api
  - path: /dpop
    phantom_token: { scheme: DPoP }
  - path: /based
    phantom_token: { scheme: DPoP, dpop: { public_base_url: "https://api.example.com/v2" } }
log: { level: info }
${extra}`;

/** Headers a gateway sends for `GET https://api.example.com<target>` (Traefik's and Caddy's forward-auth headers). */
const asked = (target: string, extra: string[] = []) => ['x-forwarded-method', 'GET', 'x-forwarded-uri', target, 'x-forwarded-proto', 'https', 'x-forwarded-host', 'api.example.com', ...extra];

describe('forward-auth listener: sender-constrained tokens and the peer asking', () => {
  let as: ScriptedIntrospection;
  let trusting: TestForwardAuth;
  let untrusting: TestForwardAuth;
  let envoy: TestForwardAuth;
  let key: DpopClient;
  let pki: TestPki;
  let n = 0;

  before(async () => {
    as = await startScriptedIntrospection();
    key = await dpopClient();
    pki = makeTestPki('fa-client');
    trusting = await startForwardAuth(yaml(as, 'trusted_proxies: [127.0.0.1]\ntrust_client_cert_header: true\nforward_auth: { listen: { host: 127.0.0.1, port: 0 } }'));
    untrusting = await startForwardAuth(yaml(as, 'forward_auth: { listen: { host: 127.0.0.1, port: 0 } }'));
    envoy = await startForwardAuth(yaml(as, 'trusted_proxies: [127.0.0.1]\ntrust_client_cert_header: true\nforward_auth: { listen: { host: 127.0.0.1, port: 0 }, path_prefix: /authz }'));
  });
  after(async () => {
    await trusting?.close();
    await untrusting?.close();
    await envoy?.close();
    await as?.close();
    pki?.cleanup();
  });

  const bound = async (cnf: Record<string, string>) => {
    const t = `fa-sender-${++n}`;
    const jwt = await as.activate(t, { scope: 'read', cnf });
    return { t, jwt };
  };

  test('from a trusted peer, the URL is rebuilt from X-Forwarded-Proto/-Host: a proof for it is allowed; from any other peer, a DPoP request is refused (the URL is unknown)', async () => {
    const { t, jwt } = await bound({ jkt: key.jkt });
    const proof = () => dpopProof(key, 'GET', 'https://api.example.com/dpop/x', t);
    const ok = await ask(trusting.url, asked('/dpop/x?y=1', ['authorization', `DPoP ${t}`, 'dpop', await proof()]));
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.authorization, `DPoP ${jwt}`);
    assert.equal(ok.headers['x-dpop-verified'], key.jkt);
    assert.equal(ok.headers['x-accel-expires'], '0', 'an allow resting on a proof is never cached outside');
    const no = await ask(untrusting.url, asked('/dpop/x', ['authorization', `DPoP ${t}`, 'dpop', await proof()]));
    assert.equal(no.status, 401);
    assert.match(String(no.headers['www-authenticate']), /^DPoP error="invalid_dpop_proof"/);
    assert.equal(untrusting.logs.filter((l) => l.msg === 'decision').at(-1)!.code, 'ERR_DPOP_PROOF_MISMATCH', 'refused for its htu');
  });

  test('without trusted_proxies, one warning at start names the DPoP routes without dpop.public_base_url', () => {
    const about = (fa: TestForwardAuth) => fa.logs.filter((l) => l.level === 'warn' && /^forward_auth: these routes take DPoP/.test(String(l.msg)));
    assert.equal(about(untrusting).length, 1);
    assert.deepEqual(about(untrusting)[0]!.routes, ['/dpop']);
    assert.match(String(about(untrusting)[0]!.msg), /trusted_proxies/);
    assert.equal(about(trusting).length, 0);
  });

  test('dpop.public_base_url: htu is that URL and the request path, whoever asks', async () => {
    const { t } = await bound({ jkt: key.jkt });
    const proof = await dpopProof(key, 'GET', 'https://api.example.com/v2/based/x', t);
    const a = await ask(untrusting.url, ['x-forwarded-method', 'GET', 'x-forwarded-uri', '/based/x', 'authorization', `DPoP ${t}`, 'dpop', proof]);
    assert.equal(a.status, 200);
  });

  test('under path_prefix (Envoy HTTP ext_authz) the request line is the original request and its Host the client\'s', async () => {
    const { t } = await bound({ jkt: key.jkt });
    const proof = await dpopProof(key, 'GET', 'https://api.example.com:8443/dpop/x', t);
    const a = await ask(envoy.url, ['host', 'api.example.com:8443', 'x-forwarded-proto', 'https', 'authorization', `DPoP ${t}`, 'dpop', proof], { path: '/authz/dpop/x' });
    assert.equal(a.status, 200);
  });

  test('a certificate-bound token: a trusted peer\'s Client-Cert is checked (RFC 9440 and NGINX\'s escaped PEM); any other peer\'s is not believed', async () => {
    const { t, jwt } = await bound({ 'x5t#S256': x5tS256(pki.client.cert) });
    const der = new X509Certificate(pki.client.cert).raw;
    const sf = `:${der.toString('base64')}:`;
    for (const value of [sf, encodeURIComponent(pki.client.cert.toString('utf8'))]) {
      const a = await ask(trusting.url, asked('/api/x', ['authorization', `Bearer ${t}`, 'client-cert', value]));
      assert.equal(a.status, 200);
      assert.equal(a.headers.authorization, `Bearer ${jwt}`);
      assert.equal(a.headers['x-accel-expires'], '0');
    }
    const other = await ask(trusting.url, asked('/api/x', ['authorization', `Bearer ${t}`, 'client-cert', `:${new X509Certificate(pki.otherSubject.cert).raw.toString('base64')}:`]));
    assert.equal(other.status, 401);
    assert.equal(other.headers['www-authenticate'], 'Bearer error="invalid_token"');
    const twice = await ask(trusting.url, asked('/api/x', ['authorization', `Bearer ${t}`, 'client-cert', sf, 'client-cert', sf]));
    assert.equal(twice.status, 401, 'two Client-Cert lines are no certificate');
    const untrusted = await ask(untrusting.url, asked('/api/x', ['authorization', `Bearer ${t}`, 'client-cert', sf]));
    assert.equal(untrusted.status, 401);
  });

  test('the access log names the failed check\'s code, never the token, the JWT or the proof', async () => {
    const { t, jwt } = await bound({ jkt: key.jkt });
    const proof = await dpopProof(key, 'POST', 'https://api.example.com/dpop/x', t);
    const a = await ask(trusting.url, asked('/dpop/x', ['authorization', `DPoP ${t}`, 'dpop', proof]));
    assert.equal(a.status, 401);
    assert.deepEqual(JSON.parse(a.body), { code: 'unauthorized', message: 'Invalid DPoP proof' });
    const line = trusting.logs.filter((l) => l.msg === 'decision').at(-1)!;
    assert.equal(line.code, 'ERR_DPOP_PROOF_MISMATCH');
    assert.equal(line.status, 401);
    const all = trusting.rawLogs();
    for (const secret of [t, jwt, proof, proof.split('.')[2]!]) assert.ok(!all.includes(secret), 'a secret in the log');
  });
});
