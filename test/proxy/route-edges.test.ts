/*
 * Route edges: spellings of a path that an upstream serves with a protected
 * route's handler must not fall to a less protected route. With `/admin/`
 * protected and `/` open, `/admin` reached the upstream without a JWT
 * (Express and Spring MVC serve `/admin` with the `/admin/` handler), and so
 * did `/admin.json` (Rails' `(.:format)`).
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { rewritePath, Router } from '../../src/proxy/router.js';
import { parseConfig, ConfigError } from '../../src/config/load.js';
import { startStack, type Stack } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';

let serial = 0;

describe('route edges: the prefix without its trailing slash, and with an extension', { timeout: 10_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack(
      (as, api) => `
phantom_token: { introspection_endpoint: "${as.url}/introspect", client_id: c, client_secret: s }
routes:
  - { path: /admin/, upstream: "${api.url}" }
  - { path: /v/, upstream: "${api.url}/v1/" }
  - { path: /w, upstream: "${api.url}/w1" }
  - { path: /, upstream: "${api.url}", phantom_token: false }
`,
    );
  });
  after(() => stack.close());
  beforeEach(() => {
    stack.as.calls.length = 0;
    stack.api.received.length = 0;
  });

  const get = (target: string, token?: string) =>
    rawRequest(stack.gw.port, `GET ${target} HTTP/1.1\r\nHost: gw.test\r\n${token ? `Authorization: Bearer ${token}\r\n` : ''}Connection: close\r\n\r\n`);

  for (const target of ['/admin', '/admin?x=1', '/admin.json', '/admin.json?x=1', '/admin.x']) {
    test(`trailing-slash route bypass: ${target} without a token gets 401, never the open route`, async () => {
      const res = await get(target);
      assert.equal(res.status, 401, res.raw.slice(0, 200));
      assert.equal(stack.api.received.length, 0);
    });
  }

  test('/admin with a valid token is forwarded unchanged', async () => {
    const token = `route-edges-${++serial}`;
    await stack.as.activate(token);
    const res = await get('/admin?x=1', token);
    assert.equal(res.status, 200);
    assert.equal(stack.api.received[0]!.url, '/admin?x=1');
    assert.match(String(stack.api.received[0]!.headers.authorization), /^Bearer ey/);
  });

  const rewrites: Array<[string, string]> = [
    ['/v', '/v1'],
    ['/v/', '/v1/'],
    ['/v/x', '/v1/x'],
    ['/v.json?q=1', '/v1.json?q=1'],
    ['/w', '/w1'],
    ['/w.json', '/w1.json'],
    ['/w/x', '/w1/x'],
  ];
  for (const [from, to] of rewrites) {
    test(`with an upstream base path, ${from} reaches the upstream as ${to} (with the route's protection)`, async () => {
      const token = `route-edges-${++serial}`;
      await stack.as.activate(token);
      assert.equal((await get(from)).status, 401);
      const res = await get(from, token);
      assert.equal(res.status, 200);
      assert.equal(stack.api.received.length, 1);
      assert.equal(stack.api.received[0]!.url, to);
    });
  }

  for (const target of ['/administrator', '/admin.json/x', '/adminx', '/vx']) {
    test(`${target} is not a spelling of a protected route: the open route serves it`, async () => {
      const res = await get(target);
      assert.equal(res.status, 200);
      assert.equal(stack.api.received[0]!.url, target);
    });
  }
});

describe('route edges: the router', () => {
  const router = (...prefixes: string[]) => new Router(prefixes.map((p) => ({ prefix: p, value: p })));

  test('a longer configured prefix still wins over an extension spelling', () => {
    const r = router('/admin/', '/admin.json', '/');
    assert.equal(r.match('/admin.json')?.value, '/admin.json');
    assert.equal(r.match('/admin.xml')?.value, '/admin/');
    assert.equal(r.match('/admin')?.value, '/admin/');
  });

  test('the root route: / matches everything, nothing gets an extension rule from it', () => {
    const r = router('/');
    assert.equal(r.match('/.json')?.value, '/');
    assert.equal(router('/a').match('/.json'), undefined);
  });

  test('rewritePath for a path matched without the trailing slash or with an extension', () => {
    assert.equal(rewritePath('/admin', '/admin/', ''), '/admin');
    assert.equal(rewritePath('/admin', '/admin/', '/v1/'), '/v1');
    assert.equal(rewritePath('/admin', '/admin/', '/'), '/');
    assert.equal(rewritePath('/admin.json', '/admin/', '/'), '/.json');
    assert.equal(rewritePath('/admin.json', '/admin', '/v1'), '/v1.json');
    assert.equal(rewritePath('/admin.json', '/admin/', '/v1/'), '/v1.json');
  });

  // Route tables as the config allows them: no two prefixes that differ only
  // by a trailing slash (refused at start, see below).
  const segment = fc.constantFrom('a', 'b', 'ab', 'c.d');
  const prefix = fc
    .tuple(fc.array(segment, { minLength: 0, maxLength: 3 }), fc.boolean())
    .map(([segs, slash]) => (segs.length === 0 ? '/' : `/${segs.join('/')}${slash ? '/' : ''}`));
  const table = fc.uniqueArray(prefix, { minLength: 1, maxLength: 6, selector: (p) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p) });
  const path = fc.array(fc.constantFrom('a', 'b', 'ab', 'c', 'c.d', 'a.json', 'x'), { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`);

  test('property (trailing-slash route bypass): a path and the same path with a trailing / choose the same route', () => {
    fc.assert(
      fc.property(table, path, (prefixes, p) => {
        const r = router(...prefixes);
        assert.equal(r.match(p)?.value, r.match(`${p}/`)?.value, `${p} vs ${p}/ in ${JSON.stringify(prefixes)}`);
      }),
      { numRuns: 500 },
    );
  });

  test('property (extension route bypass): /x.ext is as protected as /x unless a route names /x.ext itself', () => {
    fc.assert(
      fc.property(table, path, fc.constantFrom('json', 'xml', 'x'), (prefixes, p, ext) => {
        const r = router(...prefixes);
        const withExt = `${p}.${ext}`;
        if (prefixes.some((q) => withExt === q || withExt.startsWith(q.endsWith('/') ? q : `${q}/`) || `${withExt}/` === q)) return;
        const longerOwn = r.match(withExt)?.value;
        // Either the same route as /x, or a route whose prefix is longer than /x's (configured for it).
        const base = r.match(p)?.value;
        if (longerOwn !== base) assert.ok(base === undefined || (longerOwn !== undefined && longerOwn.length > base.length), `${withExt}: ${longerOwn} vs ${p}: ${base}`);
      }),
      { numRuns: 500 },
    );
  });
});

describe('route edges: configuration', () => {
  test('/admin and /admin/ as two routes are refused at start, naming both', () => {
    const text = `
phantom_token: { introspection_endpoint: "https://as.test/introspect", client_id: c, client_secret: s }
routes:
  - { path: /admin/, upstream: "http://127.0.0.1:1" }
  - { path: /admin, upstream: "http://127.0.0.1:1", phantom_token: false }
`;
    assert.throws(
      () => parseConfig(text, { file: 'f.yaml', env: {} }),
      (err: unknown) => err instanceof ConfigError && /routes\[1\]\.path: "\/admin" differs from routes\[0\]\.path "\/admin\/" only by a trailing \//.test(err.message),
    );
  });
});
