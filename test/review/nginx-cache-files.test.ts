/*
 * Review of the generated NGINX configuration (issue 9): what the decision
 * cache puts on disk, and a configuration change that cached decisions outlive.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { NGINX_CONF_DEFAULTS, nginxConf } from '../../src/forward-auth/nginx-conf.js';
import { createLogger } from '../../src/observability/logger.js';
import { rawRequest } from '../helpers/raw.js';
import { reviewYaml, skip, startReviewStack, type ReviewStack } from './nginx-stack.js';

function files(dir: string): string[] {
  let out: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e);
    out = statSync(p).isDirectory() ? out.concat(files(p)) : out.concat(p);
  }
  return out;
}

describe('review: what the NGINX decision cache writes to disk', { skip }, () => {
  let s: ReviewStack;
  let jwt: string;
  before(async () => {
    s = await startReviewStack();
    jwt = await s.as.activate('disk-1', { scope: 'read', client_id: 'alice' });
    const r = await rawRequest(s.port, 'GET /api/x HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer disk-1\r\nConnection: close\r\n\r\n');
    assert.equal(r.status, 200);
  });
  after(() => s?.stop());

  it('a cache file holds the key (route requirements + unsalted SHA-1 of "Bearer <opaque>"), the JWT and the identity headers; mode 0600', () => {
    const all = files(s.nginx.cacheDir);
    assert.equal(all.length, 1);
    const text = readFileSync(all[0]!, 'latin1');
    const sha1 = createHash('sha1').update('Bearer disk-1').digest('hex');
    assert.match(text, new RegExp(`KEY: r0-[0-9a-f]{16} ${sha1}`));
    assert.ok(text.includes(jwt), 'the upstream JWT (a bearer credential) is in the file');
    assert.match(text, /x-user-id: alice/i);
    assert.ok(!text.includes('disk-1'));
    assert.equal(statSync(all[0]!).mode & 0o777, 0o600);
  });

  it('the default cache path is on tmpfs (/run or /dev/shm), not on disk, since files hold JWTs', () => {
    assert.match(NGINX_CONF_DEFAULTS.cachePath, /^\/(?:run|dev\/shm)\//);
  });
});

describe('review: a cached decision outlives a change of forward_auth.identity_headers (regenerate + nginx reload)', { skip }, () => {
  let s: ReviewStack;
  let listener2: ForwardAuthListener | undefined;
  before(async () => {
    s = await startReviewStack();
    await s.as.activate('who-1', { scope: 'read', client_id: 'alice', sub: 'user-42' });
  });
  after(async () => {
    if (listener2 === undefined) return s?.stop();
    // The first listener was closed by the test.
    await s.nginx.stop();
    await listener2.close();
    await s.as.close();
    await s.api.close();
  });

  it('after X-User-Id is remapped from client_id to sub, the upstream gets the sub, not the old cached client_id', async () => {
    const send = () => rawRequest(s.port, 'GET /api/x HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer who-1\r\nConnection: close\r\n\r\n');
    assert.equal((await send()).status, 200);
    assert.equal(s.api.received.at(-1)!.headers['x-user-id'], 'alice');
    // The operator changes the mapping: a new listener on the same port, the file regenerated, NGINX reloaded.
    const faPort = s.listener.server.address() as { port: number };
    const yaml = reviewYaml(s.as.url, s.api.url, faPort.port).replace('identity_headers: { client_id: X-User-Id }', 'identity_headers: { sub: X-User-Id }');
    const config = parseConfig(yaml, { file: 'review.yaml', env: {} });
    await s.listener.close();
    listener2 = new ForwardAuthListener(config, { logger: createLogger('silent') });
    await listener2.listen();
    writeFileSync(join(s.nginx.dir, 'phantom-gateway.conf'), nginxConf(config, { listen: { host: '127.0.0.1', port: s.port }, cachePath: s.nginx.cacheDir }));
    process.kill(s.nginx.process.pid!, 'SIGHUP');
    // The new worker takes over once the reload is done.
    await new Promise((r) => setTimeout(r, 1500));
    s.api.received.length = 0;
    assert.equal((await send()).status, 200);
    assert.equal(s.api.received.at(-1)!.headers['x-user-id'], 'user-42');
  });
});
