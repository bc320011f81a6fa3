/*
 * Review of the generated NGINX configuration (issue 9): what an operator
 * meets when the file is included in a real nginx.conf.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { nginxConf } from '../../src/forward-auth/nginx-conf.js';
import { nginxPrefix, nginxTest } from '../helpers/nginx.js';
import { rawRequest } from '../helpers/raw.js';
import { MODULES, nginx, reviewYaml, skip, startReviewStack, type ReviewStack } from './nginx-stack.js';

describe('review: two generated files in one NGINX', { skip }, () => {
  it('two gateways, each with its own --cache-zone, cache path and listen, pass nginx -t together', () => {
    const a = parseConfig(reviewYaml('http://127.0.0.1:1', 'http://127.0.0.1:2', 9001), { file: 'a.yaml', env: {} });
    const b = parseConfig(reviewYaml('http://127.0.0.1:3', 'http://127.0.0.1:4', 9002), { file: 'b.yaml', env: {} });
    const prefix = nginxPrefix((cacheDir) => nginxConf(a, { listen: { host: '127.0.0.1', port: 18091 }, cachePath: `${cacheDir}-a`, cacheZone: 'zone_a' }), MODULES);
    try {
      writeFileSync(join(prefix.dir, 'second.conf'), nginxConf(b, { listen: { host: '127.0.0.1', port: 18092 }, cachePath: `${prefix.cacheDir}-b`, cacheZone: 'zone_b' }));
      const conf = readFileSync(prefix.conf, 'utf8').replace(/(include \S+phantom-gateway\.conf;)/, `$1\n  include ${join(prefix.dir, 'second.conf')};`);
      writeFileSync(prefix.conf, conf);
      const t = nginxTest(nginx.path!, prefix.dir);
      assert.equal(t.status, 0, t.output);
    } finally {
      prefix.remove();
    }
  });
});

describe('review: an operator\'s underscores_in_headers on (http {} context)', { skip }, () => {
  let s: ReviewStack;
  before(async () => {
    s = await startReviewStack({ httpExtra: 'underscores_in_headers on;' });
    await s.as.activate('ident-1', { scope: 'read', client_id: 'alice' });
  });
  after(() => s?.stop());

  it('a client-sent X_User_Id (read as X-User-Id by CGI/WSGI/PHP upstreams) never reaches the upstream, protected or open route', async () => {
    s.api.received.length = 0;
    const send = (target: string, auth: string) =>
      rawRequest(s.port, `GET ${target} HTTP/1.1\r\nHost: localhost\r\n${auth}X_User_Id: mallory\r\nConnection: close\r\n\r\n`);
    assert.equal((await send('/api/x', 'Authorization: Bearer ident-1\r\n')).status, 200);
    assert.equal((await send('/public/x', '')).status, 200);
    const spoofed = s.api.received.map((r) => r.rawHeaders.filter((_, i) => i % 2 === 0 && r.rawHeaders[i]!.toLowerCase().replaceAll('_', '-') === 'x-user-id' && r.rawHeaders[i + 1] === 'mallory'));
    assert.deepEqual(spoofed, [[], []]);
  });
});
