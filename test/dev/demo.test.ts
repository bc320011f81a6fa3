import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'undici';
import { banner, startDemo, type Demo } from '../../src/dev/demo.js';
import { DEV_CLIENTS } from '../../src/dev/authorization-server.js';

async function clientCredentials(demo: Demo, scope: string): Promise<string> {
  const res = await request(demo.as.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret, scope }).toString(),
  });
  assert.equal(res.statusCode, 200);
  const body = (await res.body.json()) as { access_token: string; token_type: string };
  return body.access_token;
}

async function callGateway(demo: Demo, token?: string) {
  const res = await request(`http://127.0.0.1:${demo.ports.gateway}/api`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as Record<string, any> };
}


/** Every line of `text` within 80 columns. */
function assertFits80(text: string): void {
  const long = text.split('\n').filter((l) => l.length > 80);
  assert.deepEqual(long, [], 'lines over 80 columns');
}

/** The banner shows each command as `commands` holds it (which the bash tests run), continued with `\`. */
function assertPrintsCommands(text: string, demo: Demo): void {
  assert.ok(demo.commandList.length === 2 && demo.commands === demo.commandList.join('\n'));
  for (const cmd of demo.commandList) assert.ok(text.includes(cmd.replace(/^/gm, '     ')), `the banner prints:\n${cmd}`);
  assert.match(demo.commandList[0]!, / \\\n/, 'the token command is continued over lines');
  // The DPoP example client, run as printed by test/dev/dpop-client.test.ts.
  assert.ok(text.includes(demo.dpopCommand.replace(/^/gm, '     ')), `the banner prints:\n${demo.dpopCommand}`);
}

/** Starts the demo as `npm start` does (optionally under a pseudo-terminal) and collects its output. */
function startDemoProcess(args: string[], opts: { pty?: boolean } = {}) {
  const argv = ['dist/dev/demo.js', ...args];
  const child = opts.pty
    ? // `exec`: script runs the command through $SHELL -c; a shell that stays in between (dash, the
    // default /bin/sh when SHELL is unset, as under CI) gets the terminal's SIGINT too and exits 130.
    spawn('script', ['-qfec', `exec ${[process.execPath, ...argv].map((a) => `'${a}'`).join(' ')}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  return {
    child,
    out: () => out,
    err: () => err,
    async waitFor(pattern: RegExp, ms = 20_000) {
      const deadline = Date.now() + ms;
      while (!pattern.test(out) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
      assert.match(out, pattern);
    },
  };
}

describe('demo: what a person sees on a terminal', () => {
  test('under a pseudo-terminal (script), oidc-provider coloured warnings are dropped too, and Ctrl+C stops the demo', { skip: spawnSync('sh', ['-c', 'command -v script']).status !== 0 && process.env.CI !== 'true' ? 'script (util-linux) is not installed' : false }, async () => {
    const demo = startDemoProcess(['--as-port', '0', '--api-port', '0', '--gateway-port', '0'], { pty: true });
    await demo.waitFor(/Ctrl\+C stops everything/);
    // A real terminal: oidc-provider sees a TTY and colours its lines (ESC [ 31;1m).
    demo.child.stdin!.write('\x03');
    const [code] = await once(demo.child, 'close');
    assert.equal(code, 0, demo.out());
    assert.match(demo.out(), /stopping the demo/);
    assert.doesNotMatch(demo.out() + demo.err(), /oidc-provider (WARNING|NOTICE)|Unsupported runtime|\x1b\[/);
    assertFits80(demo.out().replace(/\r/g, ''));
  });

  test('the gateway access log is printed as short human lines, not JSON', async () => {
    const demo = startDemoProcess(['--as-port', '0', '--api-port', '0', '--gateway-port', '0']);
    try {
      await demo.waitFor(/Ctrl\+C stops everything/);
      const port = /Gateway\s+http:\/\/localhost:(\d+)\/api/.exec(demo.out())![1];
      const res = await request(`http://127.0.0.1:${port}/api/items`);
      await res.body.dump();
      assert.equal(res.statusCode, 401);
      await demo.waitFor(/^\d\d:\d\d:\d\d INFO  GET \/api\/items -> 401 [\d.]+ms cache=\S+ code=\S+( \S+=\S+)*$/m, 10_000);
      assert.doesNotMatch(demo.out(), /^\{/m, 'no JSON line');
    } finally {
      demo.child.kill('SIGINT');
      await once(demo.child, 'close');
    }
    assert.equal(demo.err(), '');
  });
});

describe('demo: embedded authorization server -> gateway -> example API (real oidc-provider)', () => {
  let demo: Demo;
  before(async () => {
    demo = await startDemo({ as: 0, api: 0, gateway: 0 }, { logLevel: 'silent' });
  });
  after(async () => {
    await demo.close();
  });

  test('client credentials yield an opaque token that the API receives as a verified JWT with its scope', async () => {
    const token = await clientCredentials(demo, 'read');
    assert.equal(token.split('.').length, 1, 'access tokens handed to clients are opaque');
    const res = await callGateway(demo, token);
    assert.equal(res.status, 200);
    const claims = res.body.tokenPayload;
    assert.equal(claims.scope, 'read');
    assert.equal(claims.client_id, 'test-client');
    assert.equal(claims.iss, demo.as.issuer);
    assert.equal(claims.aud, demo.as.audience);
    assert.ok(claims.exp > Date.now() / 1000);
    assert.notEqual(claims.jti, token, 'the JWT must not carry the opaque token');
    assert.ok(!JSON.stringify(res.body).includes(token), 'the opaque token never reaches the API');
  });

  test('the gateway introspects once and then serves the token from its cache', async () => {
    const token = await clientCredentials(demo, 'read');
    const before = demo.as.stats.jwtIntrospections;
    for (let i = 0; i < 3; i++) assert.equal((await callGateway(demo, token)).status, 200);
    assert.equal(demo.as.stats.jwtIntrospections - before, 1);
  });

  test('no token -> 401 from the gateway', async () => {
    const res = await callGateway(demo);
    assert.equal(res.status, 401);
    assert.equal(res.body.code, 'unauthorized');
    assert.equal(res.headers['www-authenticate'], 'Bearer');
  });

  test('an unknown (inactive) token -> 401 invalid_token', async () => {
    const res = await callGateway(demo, 'not-a-token-the-server-issued');
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"');
  });

  test('a revoked token -> 401', async () => {
    const token = await clientCredentials(demo, 'read');
    const revoke = await request(demo.as.revocationEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret }).toString(),
    });
    await revoke.body.dump();
    assert.equal(revoke.statusCode, 200);
    assert.equal((await callGateway(demo, token)).status, 401);
  });

  test('a token without scope read -> 403 insufficient_scope', async () => {
    const token = await clientCredentials(demo, 'write');
    const res = await callGateway(demo, token);
    assert.equal(res.status, 403);
    assert.equal(res.body.code, 'forbidden');
    assert.equal(res.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="read"');
  });

  test('the opaque token sent straight to the API is refused', async () => {
    const token = await clientCredentials(demo, 'read');
    const res = await request(`http://127.0.0.1:${demo.ports.api}/api`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    assert.equal(res.statusCode, 401);
  });

  test('introspection without Accept: application/jwt is plain RFC 7662 JSON; wrong credentials are refused', async () => {
    const token = await clientCredentials(demo, 'read');
    const basic = `Basic ${Buffer.from(`${DEV_CLIENTS.introspection.id}:${DEV_CLIENTS.introspection.secret}`).toString('base64')}`;
    const json = await request(demo.as.introspectionEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
      body: `token=${token}`,
    });
    const body = (await json.body.json()) as { active: boolean; scope: string };
    assert.equal(body.active, true);
    assert.equal(body.scope, 'read');
    const wrong = await request(demo.as.introspectionEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/jwt', authorization: `Basic ${Buffer.from('introspection-client:wrong').toString('base64')}` },
      body: `token=${token}`,
    });
    await wrong.body.dump();
    assert.equal(wrong.statusCode, 401);
  });

  test('discovery names the token, introspection and JWKS endpoints, and the JWKS holds the signing key', async () => {
    const res = await request(`${demo.as.issuer}/.well-known/openid-configuration`);
    const meta = (await res.body.json()) as Record<string, string>;
    assert.equal(meta.token_endpoint, demo.as.tokenEndpoint);
    assert.equal(meta.introspection_endpoint, demo.as.introspectionEndpoint);
    assert.equal(meta.jwks_uri, demo.as.jwksUri);
    const jwks = (await (await request(meta.jwks_uri!)).body.json()) as { keys: { kty: string; crv: string; d?: string }[] };
    assert.equal(jwks.keys[0]!.crv, 'P-256');
    assert.equal(jwks.keys[0]!.d, undefined, 'no private key material is published');
  });

  test('the printed commands work as printed (bash + curl)', { skip: spawnSync('sh', ['-c', 'command -v curl && command -v bash']).status !== 0 && process.env.CI !== 'true' ? 'curl or bash is not installed' : false }, async () => {
    const child = spawn('bash', ['-c', demo.commands], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.match(out, /"message": "API called with a valid JWT"/);
    assert.match(out, /"scope": "read"/);
  });

  test('the banner fits 80 columns and prints the commands that run, with \\ continuations', () => {
    assertFits80(banner(demo));
    assertPrintsCommands(banner(demo), demo);
  });
});

describe('demo --dialect json: the authorization server answers plain JSON, the gateway mints, the API verifies against the gateway JWKS (real oidc-provider)', () => {
  let demo: Demo;
  before(async () => {
    demo = await startDemo({ as: 0, api: 0, gateway: 0 }, { logLevel: 'silent', dialect: 'json' });
  });
  after(async () => {
    await demo.close();
  });

  test('the API receives and verifies a JWT minted by the gateway: iss the gateway, aud from minting.audience, the token scope', async () => {
    assert.equal(demo.dialect, 'json');
    assert.equal(demo.signer.issuer, `http://localhost:${demo.ports.gateway}`);
    const token = await clientCredentials(demo, 'read');
    const jwtAnswers = demo.as.stats.jwtIntrospections;
    const before = demo.as.stats.introspections;
    const res = await callGateway(demo, token);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.message, 'API called with a valid JWT');
    const claims = res.body.tokenPayload;
    assert.equal(claims.iss, demo.signer.issuer, 'signed by the gateway, not the authorization server');
    assert.notEqual(claims.iss, demo.as.issuer);
    assert.equal(claims.aud, demo.as.audience);
    assert.equal(claims.scope, 'read');
    assert.equal(claims.client_id, 'test-client');
    assert.equal(claims.sub, 'test-client');
    assert.ok(claims.exp <= Math.floor(Date.now() / 1000) + 300);
    assert.equal(demo.as.stats.introspections - before, 1);
    assert.equal(demo.as.stats.jwtIntrospections, jwtAnswers, 'no JWT-form answer: the server answered JSON');
    assert.ok(!JSON.stringify(res.body).includes(token), 'the opaque token never reaches the API');
  });

  test('the gateway publishes the keys the API uses; a second call is served from the cache', async () => {
    const jwks = (await (await request(demo.signer.jwksUri)).body.json()) as { keys: { kid: string; d?: string }[] };
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0]!.d, undefined);
    const token = await clientCredentials(demo, 'read');
    assert.equal((await callGateway(demo, token)).status, 200);
    const before = demo.as.stats.introspections;
    const again = await callGateway(demo, token);
    assert.equal(again.status, 200);
    assert.equal(demo.as.stats.introspections, before);
  });

  test('unknown token -> 401; no scope read -> 403; the opaque token straight to the API -> 401', async () => {
    assert.equal((await callGateway(demo, 'not-a-token-the-server-issued')).status, 401);
    const write = await clientCredentials(demo, 'write');
    assert.equal((await callGateway(demo, write)).status, 403);
    const direct = await request(`http://127.0.0.1:${demo.ports.api}/api`, { headers: { authorization: `Bearer ${write}` } });
    await direct.body.dump();
    assert.equal(direct.statusCode, 401);
  });

  test('the printed commands work as printed (bash + curl)', { skip: spawnSync('sh', ['-c', 'command -v curl && command -v bash']).status !== 0 && process.env.CI !== 'true' ? 'curl or bash is not installed' : false }, async () => {
    const child = spawn('bash', ['-c', demo.commands], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.match(out, /"message": "API called with a valid JWT"/);
    assert.match(out, new RegExp(`"iss": "http://localhost:${demo.ports.gateway}"`));
  });

  test('the banner fits 80 columns (json mode, with the JWKS URL) and prints the commands that run', () => {
    assertFits80(banner(demo));
    assertPrintsCommands(banner(demo), demo);
  });
});

describe('npm start (the demo as a process)', () => {
  test('--dialect json says which mode runs and where the keys are; a bad --dialect is a usage error', async () => {
    const child = spawn(process.execPath, ['dist/dev/demo.js', '--dialect', 'json', '--as-port', '0', '--api-port', '0', '--gateway-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const deadline = Date.now() + 20_000;
    while (!out.includes('Ctrl+C stops everything') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, /Mode: json/);
    assert.match(out, /publishes its keys at\s+http:\/\/localhost:\d+\/\.well-known\/jwks\.json/);
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.equal(err, '');
    const bad = spawnSync(process.execPath, ['dist/dev/demo.js', '--dialect', 'xml'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--dialect must be jwt or json/);
  });

  test('prints the banner without oidc-provider or Node warnings, and stops cleanly on Ctrl+C', async () => {
    const child = spawn(process.execPath, ['dist/dev/demo.js', '--as-port', '0', '--api-port', '0', '--gateway-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const deadline = Date.now() + 20_000;
    while (!out.includes('Ctrl+C stops everything') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, /DEVELOPMENT ONLY/);
    assert.match(out, /Mode: jwt/);
    assert.match(out, /curl -s http:\/\/localhost:\d+\/api -H "Authorization: Bearer \$TOKEN"/);
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.doesNotMatch(out + err, /oidc-provider (WARNING|NOTICE)|Unsupported runtime|ExperimentalWarning|DeprecationWarning/);
    assert.equal(err, '');
  });

  test('refuses to start with NODE_ENV=production', async () => {
    const r = spawnSync(process.execPath, ['dist/dev/demo.js', '--as-port', '0', '--api-port', '0', '--gateway-port', '0'], { env: { ...process.env, NODE_ENV: 'production' }, encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /NODE_ENV=production/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  test('a busy port gives a clear message, not a stack trace', async () => {
    const { createServer } = await import('node:net');
    const blocker = createServer().listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const busy = (blocker.address() as { port: number }).port;
    try {
      const r = spawnSync(process.execPath, ['dist/dev/demo.js', '--as-port', '0', '--api-port', String(busy), '--gateway-port', '0'], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`port ${busy} \\(example API\\) is already in use`));
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    } finally {
      blocker.close();
    }
  });
});
