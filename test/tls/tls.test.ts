/*
 * TLS: the proxy listener over HTTPS (`listen.tls`), its certificate read
 * again on SIGHUP, and TLS towards upstreams (a private CA, no verification,
 * a client certificate). Certificates are made with the openssl CLI.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Agent, request } from 'undici';
import { makeTestPki, type TestPki } from '../client-auth/certs.js';
import { ensureBuilt, freePort, runCli, scratchDir, startCli, type CliRun } from '../helpers/cli.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

const TOKEN = 'tls-opaque-token';

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is shown. */
function peerFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fp);
    });
    socket.once('error', reject);
  });
}

/** Same format as getPeerCertificate().fingerprint256. */
function fingerprintOf(pem: Buffer): string {
  return new X509Certificate(pem).fingerprint256;
}

/** An HTTPS upstream answering what it saw (path, x-forwarded-proto, whether a client certificate came). */
async function httpsUpstream(pki: TestPki, opts: { requireClientCert?: boolean } = {}): Promise<{ server: HttpsServer; url: string; close(): Promise<void> }> {
  const server = createHttpsServer(
    { cert: pki.server.cert, key: pki.server.key, ...(opts.requireClientCert ? { ca: pki.ca, requestCert: true, rejectUnauthorized: true } : {}) },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      const body = JSON.stringify({ url: req.url, client: peer?.subject?.CN ?? null });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `https://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('TLS', () => {
  let pki: TestPki;
  let other: TestPki;
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let files: ReturnType<typeof scratchDir>;
  const runs: CliRun[] = [];
  const gateways: TestGateway[] = [];
  const closers: Array<() => Promise<void>> = [];

  before(async () => {
    ensureBuilt();
    pki = makeTestPki('gateway-client');
    other = makeTestPki('gateway-client');
    as = await startScriptedIntrospection();
    await as.activate(TOKEN, { scope: 'read' });
    api = await startEchoUpstream();
    files = scratchDir();
  });
  after(async () => {
    for (const r of runs) r.kill();
    await Promise.all(runs.map((r) => r.exited));
    await Promise.all(gateways.map((g) => g.close()));
    for (const c of closers) await c();
    await Promise.all([as.close(), api.close()]);
    pki.cleanup();
    other.cleanup();
    files.cleanup();
  });

  const listenerYaml = (port: number, cert: string, key: string) => `listen:
  host: 127.0.0.1
  port: ${port}
  tls:
    cert_file: ${cert}
    key_file: ${key}
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: tls-secret
routes:
  - path: /api
    upstream: ${api.url}
`;

  test('listen.tls: a request over HTTPS is served (200) and the upstream sees x-forwarded-proto: https; new certificate files and SIGHUP: new connections see the new certificate', async () => {
    const port = await freePort();
    const cert = `${files.dir}/listener.crt`;
    const key = `${files.dir}/listener.key`;
    copyFileSync(pki.server.certFile, cert);
    copyFileSync(pki.server.keyFile, key);
    const file = files.write('tls.yaml', listenerYaml(port, cert, key));
    const run = startCli(['--config', file]);
    runs.push(run);
    await run.waitFor(/"msg":"phantom-gateway listening"/);
    const agent = new Agent({ connect: { ca: pki.ca } });
    closers.push(() => agent.close());
    const res = await request(`https://127.0.0.1:${port}/api/items`, { dispatcher: agent, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.statusCode, 200);
    const seen = (await res.body.json()) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.ok(seen.headers.authorization?.startsWith('Bearer ey'), 'the JWT went upstream');
    assert.equal(await peerFingerprint(port), fingerprintOf(pki.server.cert));

    // TLS 1.1 and older are refused.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }, () => resolve(s.destroy()));
        s.once('error', reject);
      }),
    );

    copyFileSync(other.server.certFile, cert);
    copyFileSync(other.server.keyFile, key);
    run.child.kill('SIGHUP');
    await run.waitFor(/"msg":"configuration reloaded"/);
    assert.equal(await peerFingerprint(port), fingerprintOf(other.server.cert));
    assert.notEqual(fingerprintOf(other.server.cert), fingerprintOf(pki.server.cert));

    // A certificate that does not match its key: the reload is refused with the line, the current certificate stays.
    copyFileSync(pki.server.certFile, cert);
    run.child.kill('SIGHUP');
    await run.waitFor(/"msg":"reload refused: the configuration in use is kept"/);
    assert.match(run.stdout(), /tls\.yaml:5: listen\.tls\.cert_file: \\"[^"]*listener\.crt\\" and key_file \\"[^"]*listener\.key\\" are not a usable certificate and key pair \(key values mismatch\)/);
    assert.equal(await peerFingerprint(port), fingerprintOf(other.server.cert));
    assert.equal(run.child.exitCode, null);
    run.child.kill('SIGTERM');
    assert.deepEqual(await run.exited, { code: 0, signal: null });
  });

  test('--check: a missing certificate file and a certificate that does not match its key are reported with their lines (exit 2)', async () => {
    const missing = files.write('missing.yaml', listenerYaml(8443, `${files.dir}/nope.crt`, pki.server.keyFile));
    let r = await runCli(['--config', missing, '--check']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing\.yaml:5: listen\.tls\.cert_file: cannot read "[^"]*nope\.crt" \(ENOENT\)/);
    const mismatched = files.write('mismatched.yaml', listenerYaml(8443, pki.server.certFile, other.server.keyFile));
    r = await runCli(['--config', mismatched, '--check']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /mismatched\.yaml:5: listen\.tls\.cert_file: .* are not a usable certificate and key pair/);
    const notPem = files.write('notpem.yaml', listenerYaml(8443, missing, pki.server.keyFile));
    r = await runCli(['--config', notPem, '--check']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /notpem\.yaml:5: listen\.tls\.cert_file: .* are not a usable certificate and key pair/);
  });

  const upstreamYaml = (upstream: string, extra = '') => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: tls-secret
routes:
  - path: /api
    upstream: ${upstream}
${extra}`;

  async function gatewayFor(yaml: string): Promise<TestGateway> {
    const g = await startGateway(yaml);
    gateways.push(g);
    return g;
  }
  const ask = async (g: TestGateway, path = '/api/x') => {
    const res = await request(`${g.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return { status: res.statusCode, body: await res.body.text() };
  };

  test('an HTTPS upstream with a private CA: 502 without ca_file, 200 with upstream.ca_file, and with a route\'s own ca_file', async () => {
    const up = await httpsUpstream(pki);
    closers.push(up.close);
    assert.equal((await ask(await gatewayFor(upstreamYaml(up.url)))).status, 502);
    const withCa = await ask(await gatewayFor(upstreamYaml(up.url, `upstream:\n  ca_file: ${pki.caFile}\n`)));
    assert.equal(withCa.status, 200);
    assert.equal(JSON.parse(withCa.body).url, '/api/x');
    const perRoute = await gatewayFor(upstreamYaml(`{ url: "${up.url}/v1", ca_file: "${pki.caFile}" }`, `  - path: /other\n    upstream: ${up.url}\n`));
    const r = await ask(perRoute);
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).url, '/v1/x');
    assert.equal((await ask(perRoute, '/other/x')).status, 502, 'another route keeps the default trust');
  });

  test('upstream verify_ssl: false: 200 from an unknown CA, and a loud warning naming the upstream', async () => {
    const up = await httpsUpstream(pki);
    closers.push(up.close);
    const g = await gatewayFor(upstreamYaml(up.url, 'upstream:\n  verify_ssl: false\n'));
    assert.equal((await ask(g)).status, 200);
    const warning = g.logs.find((l) => String(l.msg).startsWith('upstream verify_ssl is false'));
    assert.ok(warning, 'warned');
    assert.equal(warning.level, 'warn');
    assert.deepEqual(warning.upstreams, [up.url]);
  });

  test('an upstream requiring a client certificate: 200 with client_cert_file/client_key_file (it sees the subject), 502 without', async () => {
    const up = await httpsUpstream(pki, { requireClientCert: true });
    closers.push(up.close);
    assert.equal((await ask(await gatewayFor(upstreamYaml(up.url, `upstream:\n  ca_file: ${pki.caFile}\n`)))).status, 502);
    const g = await gatewayFor(
      upstreamYaml(up.url, `upstream:\n  ca_file: ${pki.caFile}\n  client_cert_file: ${pki.client.certFile}\n  client_key_file: ${pki.client.keyFile}\n`),
    );
    const r = await ask(g);
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).client, 'gateway-client');
    assert.ok(!g.rawLogs().includes('PRIVATE KEY'), 'no key material in the logs');
  });

  test('upstream TLS options are checked at load: a client certificate without its key, options on an http:// route, an unreadable CA (lines named)', async () => {
    const bad = files.write(
      'upstream-tls.yaml',
      `listen: { host: 127.0.0.1, port: 8080 }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s
upstream:
  client_cert_file: ${pki.client.certFile}
routes:
  - path: /a
    upstream:
      url: http://127.0.0.1:9/a
      ca_file: ${pki.caFile}
  - path: /b
    upstream:
      url: https://127.0.0.1:9/b
      ca_file: ${files.dir}/none.pem
`,
    );
    const r = await runCli(['--config', bad, '--check']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /upstream-tls\.yaml:7: upstream\.client_key_file: is required with upstream\.client_cert_file/);
    assert.match(r.stderr, /upstream-tls\.yaml:11: routes\[0\]\.upstream\.url: TLS options are set but the upstream is not https:\/\//);
    assert.match(r.stderr, /upstream-tls\.yaml:16: routes\[1\]\.upstream\.ca_file: cannot read "[^"]*none\.pem" \(ENOENT\)/);
  });
});
