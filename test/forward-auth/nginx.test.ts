import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { freePort } from '../helpers/cli.js';
import { startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { findProgram } from '../helpers/services.js';

/*
 * The listener's caching contract against a real NGINX: a `proxy_cache` in
 * front of it keeps an allow for exactly its X-Accel-Expires (X-Accel-Expires
 * is sent before Cache-Control: private, which NGINX would otherwise obey and
 * not cache), keeps a refusal of the token for negative_cache_seconds, and
 * never keeps an authorization-server failure. NGINX here asks the listener
 * directly; the full auth_request configuration is the NGINX generator's.
 */

const nginx = findProgram('nginx', 'nginx');

describe('forward-auth behind a real NGINX proxy_cache', { skip: nginx.skip }, () => {
  let as: ScriptedIntrospection;
  let fa: TestForwardAuth;
  let dir: string;
  let proc: ChildProcess;
  let url: string;
  let client: Agent;

  before(async () => {
    as = await startScriptedIntrospection();
    fa = await startForwardAuth(`
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
  scope: read
  token_cache_seconds: 3
  negative_cache_seconds: 30
forward_auth: {}
routes:
  - path: /api
`);
    dir = mkdtempSync(join(tmpdir(), 'phantom-gateway-nginx-'));
    for (const d of ['cache', 'tmp']) mkdirSync(join(dir, d));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'nginx.conf'),
      `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=decisions:1m inactive=10m;
  upstream forward_auth {
    server 127.0.0.1:${fa.port};
    keepalive 4;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://forward_auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_cache decisions;
      # test only: the generated configuration hashes the token in its key
      proxy_cache_key "$http_authorization $request_uri";
      add_header X-Cache-Status $upstream_cache_status always;
      # NGINX hides X-Accel-* from clients: shown under another name for the test
      add_header X-Decision-TTL $upstream_http_x_accel_expires always;
    }
  }
}
`,
    );
    proc = spawn(nginx.path!, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    client = new Agent();
    // Ready once it answers.
    const end = Date.now() + 5000;
    for (;;) {
      try {
        const r = await request(`${url}/api`, { dispatcher: client });
        await r.body.dump();
        break;
      } catch (err) {
        if (Date.now() > end || proc.exitCode !== null) throw new Error(`nginx did not start: ${stderr} ${readErrorLog(dir)} ${String(err)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });

  after(async () => {
    await client?.close();
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
    await fa?.close();
    await as?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const get = async (path: string, token: string) => {
    const res = await request(`${url}${path}`, { dispatcher: client, headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    return { status: res.statusCode, cache: res.headers['x-cache-status'], authorization: res.headers.authorization, expires: res.headers['x-decision-ttl'] };
  };

  test('an allow is cached for its X-Accel-Expires, then asked again', async () => {
    const token = 'nginx-allow-token';
    const jwt = await as.activate(token);
    const before = fa.requests;
    const first = await get('/api/items', token);
    assert.equal(first.status, 200);
    assert.equal(first.authorization, `Bearer ${jwt}`);
    assert.equal(first.cache, 'MISS');
    const ttl = Number(first.expires);
    assert.ok(ttl >= 2 && ttl <= 3, `X-Accel-Expires ${first.expires}`);
    const second = await get('/api/items', token);
    assert.equal(second.status, 200);
    assert.equal(second.cache, 'HIT');
    assert.equal(second.authorization, `Bearer ${jwt}`);
    assert.equal(fa.requests - before, 1, 'the cached decision did not reach the listener');
    // Past the TTL NGINX asks again (and the listener finds its own entry gone too).
    await new Promise((r) => setTimeout(r, (ttl + 1) * 1000 + 100));
    const third = await get('/api/items', token);
    assert.equal(third.status, 200);
    assert.equal(third.cache, 'EXPIRED');
    assert.equal(fa.requests - before, 2);
    assert.equal(as.callsFor(token), 2);
  });

  test('an inactive token is cached for negative_cache_seconds (what is left of the gateway\'s entry)', async () => {
    const token = 'nginx-inactive-token';
    as.answers.set(token, { status: 204 });
    const before = fa.requests;
    const first = await get('/api', token);
    assert.equal(first.status, 401);
    // What is left of the gateway's own 30 s entry, in whole seconds rounded down.
    assert.ok(first.expires === '30' || first.expires === '29', `X-Accel-Expires ${first.expires}`);
    const second = await get('/api', token);
    assert.equal(second.status, 401);
    assert.equal(second.cache, 'HIT');
    assert.equal(fa.requests - before, 1);
  });

  test('an authorization-server failure (scripted 503) is never cached', async () => {
    const token = 'nginx-outage-token';
    as.answers.set(token, { status: 503, headers: { 'retry-after': '5' } });
    const before = fa.requests;
    for (let i = 0; i < 3; i++) {
      const r = await get('/api', token);
      assert.equal(r.status, 503);
      assert.equal(r.expires, '0');
      assert.equal(r.cache, 'MISS');
    }
    assert.equal(fa.requests - before, 3);
    assert.equal(as.callsFor(token), 3);
  });

  test('NGINX keeps its connections to the listener alive', async () => {
    let connections = 0;
    const count = () => connections++;
    fa.listener.server.on('connection', count);
    try {
      for (let i = 0; i < 5; i++) assert.equal((await get('/api', `nginx-keepalive-${i}`)).status, 401);
      assert.ok(connections <= 1, `${connections} new connections for 5 decisions`);
    } finally {
      fa.listener.server.off('connection', count);
    }
  });
});

function readErrorLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'error.log'), 'utf8');
  } catch {
    return '';
  }
}
