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
import { REFUSED, rewritePath, Router } from '../../src/routing/router.js';

/** The prefix of what `Router.match` chose, or REFUSED. */
const prefixOf = (m: { prefix: string } | undefined | typeof REFUSED) => (m === REFUSED ? m : m?.prefix);
import { parseConfig, ConfigError } from '../../src/config/load.js';
import { startStack, suiteStack, type Stack } from '../helpers/gateway.js';
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

describe('route edges: open-route spelling bypass (an open route never takes spellings of a protected root)', { timeout: 10_000 }, () => {
  const stack = suiteStack(
    (as, api) => `
phantom_token: { introspection_endpoint: "${as.url}/introspect", client_id: c, client_secret: s }
routes:
  - { path: /, upstream: "${api.url}" }
  - { path: /status, upstream: "${api.url}", phantom_token: false }
  - { path: /x/, upstream: "${api.url}", phantom_token: false }
`,
  );
  const get = (target: string) => rawRequest(stack.gw.port, `GET ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`);

  for (const target of ['/status.bak', '/status.internal-export', '/status.json/', '/status.json?x=1', '/x', '/x.json']) {
    test(`open-route spelling bypass: ${target} without a token gets 401 (the protected root), never the open route`, async () => {
      const res = await get(target);
      assert.equal(res.status, 401, res.raw.slice(0, 200));
      assert.equal(stack.api.received.length, 0);
    });
  }

  for (const target of ['/status', '/status/', '/status/x', '/x/', '/x/y']) {
    test(`${target} is under the open route as configured: forwarded without a token`, async () => {
      const res = await get(target);
      assert.equal(res.status, 200, res.raw.slice(0, 200));
      assert.equal(stack.api.received[0]!.url, target);
    });
  }
});

describe('route edges: spellings whose routes do not compare are refused', { timeout: 10_000 }, () => {
  const stack = suiteStack(
    (as, api) => `
phantom_token: { introspection_endpoint: "${as.url}/introspect", client_id: c, client_secret: s }
routes:
  - { path: /, upstream: "${api.url}", phantom_token: { scope: read } }
  - { path: /admin/, upstream: "${api.url}", phantom_token: { scope: admin } }
`,
  );
  for (const target of ['/admin', '/admin.json']) {
    test(`${target}: the root needs scope read, /admin/ scope admin: refused 400 before any introspection`, async () => {
      const res = await rawRequest(stack.gw.port, `GET ${target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n`);
      assert.equal(res.status, 400, res.raw.slice(0, 200));
      assert.equal(JSON.parse(res.body).code, 'bad_request');
      assert.equal(stack.as.calls.length, 0);
      assert.equal(stack.api.received.length, 0);
    });
  }
});

describe('route edges: the router', () => {
  // Route values as the proxy builds them: open, or guarded by an exchange
  // (one per authorization server) and required scopes.
  type V = { readonly prefix: string; readonly guard: { exchange: object; policy: { required: readonly string[] } } | undefined };
  const asA = {};
  const asB = {};
  const level = { open: undefined, a: { exchange: asA, policy: { required: [] } }, aAdmin: { exchange: asA, policy: { required: ['admin'] } }, aOther: { exchange: asA, policy: { required: ['other'] } }, b: { exchange: asB, policy: { required: [] } } };
  type Level = keyof typeof level;
  const table = (...entries: Array<[string, Level]>) => new Router<V>(entries.map(([prefix, l]) => ({ prefix, value: { prefix, guard: level[l] } })));
  const router = (...prefixes: string[]) => table(...prefixes.map((p): [string, Level] => [p, 'a']));

  test('a longer configured prefix still wins over an extension spelling', () => {
    const r = router('/admin/', '/admin.json', '/');
    assert.equal(prefixOf(r.match('/admin.json')), '/admin.json');
    assert.equal(prefixOf(r.match('/admin.xml')), '/admin/');
    assert.equal(prefixOf(r.match('/admin')), '/admin/');
  });

  test('a route configured for a path itself is taken for it, even beside a more protected spelling (/robots.txt open, / protected)', () => {
    const r = table(['/', 'a'], ['/robots.txt', 'open'], ['/admin/', 'aAdmin'], ['/admin.json', 'open']);
    assert.equal(prefixOf(r.match('/robots.txt')), '/robots.txt');
    assert.equal(prefixOf(r.match('/robots.txt/')), '/robots.txt');
    assert.equal(prefixOf(r.match('/admin.json')), '/admin.json');
    assert.notEqual(r.match('/robots.txt'), REFUSED);
  });

  test('the root route: / matches everything, nothing gets an extension rule from it', () => {
    const r = router('/');
    assert.equal(prefixOf(r.match('/.json')), '/');
    assert.equal(router('/a').match('/.json'), undefined);
  });

  test('open-route spelling bypass (bug 03): an open /status does not take /status.bak from a protected root', () => {
    const r = table(['/', 'a'], ['/status', 'open']);
    for (const p of ['/status.bak', '/status.internal-export', '/status.json', '/status.json/']) assert.equal(prefixOf(r.match(p)), '/', p);
    assert.equal(prefixOf(r.match('/status')), '/status');
    assert.equal(prefixOf(r.match('/status/')), '/status');
    const slash = table(['/', 'a'], ['/x/', 'open']);
    assert.equal(prefixOf(slash.match('/x')), '/');
    assert.equal(prefixOf(slash.match('/x.json')), '/');
    assert.equal(prefixOf(slash.match('/x/y')), '/x/');
  });

  test('open-route spelling bypass: without a route covering the path, an extension spelling of an open route is not taken (404)', () => {
    const r = table(['/x/', 'open']);
    assert.equal(r.match('/x.bak'), undefined);
    assert.equal(prefixOf(r.match('/x')), '/x/');
  });

  test('spellings whose routes are guarded in ways that do not compare are refused (other scopes, other authorization server)', () => {
    for (const other of ['aOther', 'b'] as const) {
      const r = table(['/', 'aAdmin'], ['/admin/', other]);
      for (const p of ['/admin', '/admin.json']) assert.equal(r.match(p), REFUSED, `${other} ${p}`);
      assert.equal(prefixOf(r.match('/admin/x')), '/admin/');
      assert.notEqual(r.match('/admin/x'), REFUSED);
    }
    // A superset of the scopes on the same server is more protected.
    const r = table(['/', 'a'], ['/admin/', 'aAdmin'], ['/pub/', 'open']);
    assert.equal(prefixOf(r.match('/admin')), '/admin/');
    assert.equal(prefixOf(r.match('/pub')), '/');
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
  // by a trailing slash (refused at start, see below), each route open or
  // guarded at one of several levels, some of which do not compare.
  const segment = fc.constantFrom('a', 'b', 'ab', 'c.d');
  const prefix = fc
    .tuple(fc.array(segment, { minLength: 0, maxLength: 3 }), fc.boolean())
    .map(([segs, slash]) => (segs.length === 0 ? '/' : `/${segs.join('/')}${slash ? '/' : ''}`));
  const levels = fc.constantFrom<Level>('open', 'open', 'a', 'aAdmin', 'aOther', 'b');
  const routeTable = fc.uniqueArray(fc.tuple(prefix, levels), { minLength: 1, maxLength: 6, selector: ([p]) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p) });
  const path = fc
    .tuple(fc.array(fc.constantFrom('a', 'b', 'ab', 'c', 'c.d', 'a.json', 'ab.c.d', 'x'), { minLength: 1, maxLength: 4 }), fc.boolean())
    .map(([s, slash]) => `/${s.join('/')}${slash ? '/' : ''}`);

  /** The plain segment match alone (the rule before spellings). */
  const plainMatch = (entries: Array<[string, Level]>, p: string) =>
    entries
      .filter(([q]) => p.startsWith(q) && (p.length === q.length || q === '/' || q.endsWith('/') || p[q.length] === '/'))
      .sort((x, y) => y[0].length - x[0].length)[0];
  /** Whether a route at level `x` is at least as protected as one at level `y` (more scopes on the same server count as more). */
  const atLeast = (x: Level, y: Level) => x === y || y === 'open' || (y === 'a' && (x === 'aAdmin' || x === 'aOther'));
  /** What the proxy does with `p`: undefined (404 or 400, never forwarded) or the level it is forwarded with. */
  const outcome = (r: Router<V>, p: string): V | undefined => {
    const m = r.match(p);
    return m !== undefined && m !== REFUSED ? m.value : undefined;
  };
  const levelOf = (v: V) => (Object.keys(level) as Level[]).find((k) => level[k] === v.guard)!;

  test('property (open-route spelling bypass): the route taken is at least as protected as the plain segment match', () => {
    fc.assert(
      fc.property(routeTable, path, (entries, p) => {
        const r = table(...entries);
        const got = outcome(r, p);
        const plain = plainMatch(entries, p);
        if (got === undefined || plain === undefined) return;
        assert.ok(atLeast(levelOf(got), plain[1]), `${p} in ${JSON.stringify(entries)}: ${got.prefix} (${levelOf(got)}) is less protected than ${plain[0]} (${plain[1]})`);
      }),
      { numRuns: 1000 },
    );
  });

  test('property (trailing-slash route bypass): /x is at least as protected as /x/, and as protected unless a route names /x/ itself', () => {
    fc.assert(
      fc.property(routeTable, path, (entries, p) => {
        const r = table(...entries);
        const n = p.endsWith('/') ? p.slice(0, -1) : p;
        const [x, y] = [outcome(r, n), outcome(r, `${n}/`)];
        if (x === undefined || y === undefined) return;
        assert.ok(atLeast(levelOf(x), levelOf(y)), `${n}: ${x.prefix} vs ${n}/: ${y.prefix} in ${JSON.stringify(entries)}`);
        if (!entries.some(([q]) => q === `${n}/`)) assert.ok(atLeast(levelOf(y), levelOf(x)), `${n}/: ${y.prefix} vs ${n}: ${x.prefix} in ${JSON.stringify(entries)}`);
      }),
      { numRuns: 1000 },
    );
  });

  test('property (extension route bypass): /x.ext is at least as protected as /x unless a route names /x.ext itself', () => {
    fc.assert(
      fc.property(routeTable, path, fc.constantFrom('json', 'xml', 'x', 'bak.old'), (entries, p, ext) => {
        const r = table(...entries);
        const n = p.endsWith('/') ? p.slice(0, -1) : p;
        const withExt = `${n}.${ext}${p.endsWith('/') ? '/' : ''}`;
        // A route configured for the spelling itself is taken for it.
        if (entries.some(([q]) => (q.endsWith('/') && q.length > 1 ? q.slice(0, -1) : q) === `${n}.${ext}`)) return;
        const [x, base] = [outcome(r, withExt), outcome(r, n)];
        if (x === undefined || base === undefined) return;
        assert.ok(atLeast(levelOf(x), levelOf(base)), `${withExt}: ${x.prefix} (${levelOf(x)}) vs ${n}: ${base.prefix} (${levelOf(base)}) in ${JSON.stringify(entries)}`);
      }),
      { numRuns: 1000 },
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
