/*
 * Encoded paths an upstream could map onto a different ASCII path: encoded
 * control characters (`%0a` ends a line for a `$`-anchored pattern), encoded
 * `?`/`#` (an upstream that decodes and parses again cuts the path there),
 * segments ending in `.` or `%20` (stripped by Windows/IIS), invalid UTF-8
 * (overlong `/`), and non-ASCII that NFKC or case mapping turns into ASCII.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkTarget } from '../../src/routing/request-target.js';
import { REFUSED, Router } from '../../src/routing/router.js';
import { suiteStack } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';

const hex2 = (n: number, upper: boolean) => {
  const h = n.toString(16).padStart(2, '0');
  return upper ? h.toUpperCase() : h;
};

describe('encoded paths: the rule (checkTarget)', () => {
  test('property (encoded control character): every percent-encoded C0 control and DEL is refused, in either hex case, anywhere in the path', () => {
    const byte = fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.constant(0x7f));
    fc.assert(
      fc.property(byte, fc.boolean(), fc.constantFrom('/a', '/public/x', '/api/'), fc.constantFrom('', 'b', '/c'), (b, upper, before, afterwards) => {
        assert.equal(checkTarget(`${before}%${hex2(b, upper)}${afterwards}`), undefined);
      }),
    );
  });

  const refused: Array<[string, string]> = [
    ['%0a (LF)', '/api%0a'],
    ['%0D (CR)', '/api%0D/x'],
    ['%09 (tab)', '/api%09'],
    ['%7f (DEL)', '/api%7f'],
    ['%3F (an encoded ? cuts the path for an upstream that decodes and reparses)', '/api%3F'],
    ['%3f', '/x/api%3fy'],
    ['%23 (an encoded #)', '/api%23'],
    ['a segment ending in . (Windows/IIS strip it)', '/api./x'],
    ['a path ending in .', '/api.'],
    ['a segment ending in %20', '/api%20/x'],
    ['a path ending in %20', '/api%20'],
    ['a segment ending in ..', '/api../x'],
    ['overlong UTF-8 for / (%C0%AF)', '/public%C0%AFapi'],
    ['overlong UTF-8 for . (%C0%AE)', '/public/%C0%AE%C0%AE/api'],
    ['a lone continuation byte', '/public/%80'],
    ['a truncated UTF-8 sequence', '/public/%C3'],
    ['an encoded surrogate', '/public/%ED%A0%80'],
    ['fullwidth solidus (NFKC: /)', '/public%EF%BC%8Fapi'],
    ['fullwidth full stop (NFKC: .)', '/public/%EF%BC%8E%EF%BC%8E/api'],
    ['dotless i (upper-cases to I)', '/ap%C4%B1'],
    ['the Kelvin sign (lower-cases to k)', '/%E2%84%AAube'],
    ['long s (upper-cases to S)', '/%C5%BFecret'],
    ['a ligature (NFKC: fi)', '/%EF%AC%81le'],
    ['a no-break space (NFKC: space)', '/api%C2%A0'],
    ['NEL (a line end to Java\'s $)', '/api%C2%85'],
    ['LINE SEPARATOR', '/api%E2%80%A8'],
    ['a raw non-ASCII character', '/caf\u00e9'],
    ['a raw DEL', '/api\u007f'],
  ];
  for (const [what, target] of refused) {
    test(`refused: ${what}: ${JSON.stringify(target)}`, () => {
      assert.equal(checkTarget(target), undefined);
    });
  }

  const accepted: Array<[string, string]> = [
    ['é encoded', '/caf%C3%A9'],
    ['CJK encoded', '/%E4%B8%AD%E6%96%87'],
    ['an encoded space inside a segment', '/a%20b/c'],
    ['dots inside segments', '/v1.2/a.json'],
    ['encoded reserved characters', '/a%3Ab%40c'],
    ['%0a, %3F, %23 in the query (only the path is checked)', '/api/x?a=%0a&b=%3F&c=%23'],
  ];
  for (const [what, target] of accepted) {
    test(`accepted: ${what}: ${JSON.stringify(target)}`, () => {
      assert.notEqual(checkTarget(target), undefined);
    });
  }

  test('property (fast path): a path of letters, digits, -._~!$&\'()*+,=:@ and / is accepted exactly when it has no //, no . or .. segment and no segment ending in .', () => {
    const ch = fc.constantFrom(...'aZ09-._~!$&\'()*+,=:@/');
    fc.assert(
      fc.property(fc.string({ unit: ch, maxLength: 16 }), fc.constantFrom('', '?q=1', '?a=%2e#'), (rest, query) => {
        const path = `/${rest}`;
        const expected = !path.includes('//') && !/\.(?:\/|$)/.test(path);
        const got = checkTarget(`${path}${query}`);
        if (query.includes('#')) assert.equal(got, undefined, path);
        else assert.equal(got !== undefined, expected, path);
        if (got !== undefined) assert.deepEqual(got, { path, query });
      }),
      { numRuns: 2000 },
    );
  });

  /** Count of each ASCII character (case-insensitively) in `s`. */
  const asciiCounts = (s: string): Map<string, number> => {
    const m = new Map<string, number>();
    for (const c of s.toLowerCase()) if (c.charCodeAt(0) < 0x80) m.set(c, (m.get(c) ?? 0) + 1);
    return m;
  };

  test('property (Unicode normalisation to ASCII): an accepted path gains no ASCII character under NFKC, upper- or lower-casing once decoded (accent stripping is out: it would refuse every accented letter)', () => {
    const codePoint = fc.integer({ min: 0x80, max: 0x2ffff }).filter((c) => c < 0xd800 || c > 0xdfff);
    const piece = fc.oneof(fc.constantFrom('a', 'p', 'i', 's', 'k', '-', '/x'), codePoint.map((c) => encodeURIComponent(String.fromCodePoint(c))));
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 6 }), (pieces) => {
        const target = `/${pieces.join('')}`;
        if (checkTarget(target) === undefined) return;
        const decoded = decodeURIComponent(target);
        const before = asciiCounts(decoded);
        for (const t of [(s: string) => s.normalize('NFKC'), (s: string) => s.toUpperCase(), (s: string) => s.toLowerCase()]) {
          for (const [c, n] of asciiCounts(t(decoded))) {
            assert.ok(n <= (before.get(c) ?? 0), `${target}: ${JSON.stringify(c)} appears ${n} times after a transform, ${before.get(c) ?? 0} before`);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('encoded paths against a protected /api beside an open / (the layout where they bite)', { timeout: 10_000 }, () => {
  const stack = suiteStack(
    (as, api) => `
phantom_token: { introspection_endpoint: "${as.url}/introspect", client_id: c, client_secret: s }
routes:
  - { path: /api, upstream: "${api.url}" }
  - { path: /, upstream: "${api.url}", phantom_token: false }
`,
  );

  for (const target of ['/api%0a', '/api%0d%0a', '/api%09', '/api%3F', '/api%23', '/api.', '/api./secret', '/api%20/secret', '/ap%C4%B1/secret', '/api%EF%BC%8Fsecret', '/ap%C0%A9']) {
    test(`${target} without a token: 400, never served by the open route`, async () => {
      const res = await rawRequest(stack.gw.port, `GET ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`);
      assert.equal(res.status, 400, res.raw.slice(0, 200));
      assert.deepEqual(JSON.parse(res.body), { code: 'bad_request', message: 'Bad request' });
      assert.equal(stack.api.received.length, 0);
    });
  }

  test('a raw UTF-8 byte sequence in the path: 400', async () => {
    const res = await rawRequest(stack.gw.port, Buffer.concat([Buffer.from('GET /caf'), Buffer.from('é', 'utf8'), Buffer.from(' HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n')]));
    assert.equal(res.status, 400);
    assert.equal(stack.api.received.length, 0);
  });

  test('encoded non-ASCII that stays non-ASCII is served: /caf%C3%A9 reaches the open route unchanged', async () => {
    const res = await rawRequest(stack.gw.port, 'GET /caf%C3%A9 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(stack.api.received[0]!.url, '/caf%C3%A9');
  });
});

describe('encoded sub-delims in a route prefix (encoded route-character bypass)', { timeout: 10_000 }, () => {
  type V = { readonly guard: { exchange: object; policy: { required: readonly string[] } } | undefined };
  const guarded: V = { guard: { exchange: {}, policy: { required: [] } } };
  const open: V = { guard: undefined };
  const subDelims = [...":@!$&'()*+,="];

  test('property: for a protected route whose prefix has sub-delims, no spelling with some of them percent-encoded is forwarded without that route\'s check', () => {
    const word = fc.constantFrom('v1', 'projects', 'admin', 'x');
    const piece = fc.oneof(word, fc.constantFrom(...subDelims));
    const routePrefix = fc.tuple(fc.array(fc.array(piece, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 3 }), fc.boolean()).map(([segs, slash]) => `/${segs.map((s) => s.join('')).join('/')}${slash ? '/' : ''}`);
    fc.assert(
      fc.property(routePrefix, fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }), fc.constantFrom('', '/users', '/a:b'), (prefix, choices, rest) => {
        fc.pre(subDelims.some((c) => prefix.includes(c)));
        const router = new Router<V>([
          { prefix: '/', value: open },
          { prefix, value: guarded },
        ]);
        // Each sub-delim encoded or not, in either hex case.
        let i = 0;
        const spelled = [...prefix].map((c) => (subDelims.includes(c) && choices[i++ % 40] ? `%${c.charCodeAt(0).toString(16)[choices[(i * 7) % 40] ? 'toUpperCase' : 'toLowerCase']()}` : c)).join('');
        const target = `${spelled}${rest}`;
        if (checkTarget(target) === undefined) return;
        const m = router.match(target);
        if (m === undefined || m === REFUSED) return; // refused
        // Forwarded: only with the protected route's check, or to a path that does not decode to it.
        const decoded = decodeURIComponent(target);
        const reachesProtected = decoded === prefix || decoded.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`) || decoded === prefix.replace(/\/$/, '');
        if (reachesProtected) assert.equal(m.value, guarded, `${target} (decoded ${decoded}) forwarded on ${m.prefix} beside the protected ${prefix}`);
      }),
      { numRuns: 1000 },
    );
  });

  test('an encoded character that no route prefix has stays accepted (%40 when no route has @)', () => {
    const router = new Router<V>([
      { prefix: '/', value: open },
      { prefix: '/v1/projects:purge', value: guarded },
    ]);
    assert.notEqual(router.match('/users/a%40b'), REFUSED);
    assert.equal(router.match('/users/a%3Ab'), REFUSED);
    // Refused (400), not 404, also where no route covers the path.
    const only = new Router<V>([{ prefix: '/@admin/', value: guarded }]);
    assert.equal(only.match('/x/%40y'), REFUSED);
  });

  const stack = suiteStack(
    (as, api) => `
phantom_token: { introspection_endpoint: "${as.url}/introspect", client_id: c, client_secret: s }
routes:
  - { path: /, upstream: "${api.url}", phantom_token: false }
  - { path: "/v1/projects:purge", upstream: "${api.url}" }
  - { path: /@admin/, upstream: "${api.url}" }
`,
  );

  for (const target of ['/v1/projects%3Apurge', '/v1/projects%3apurge', '/%40admin/users', '/%40admin', '/x/%3A']) {
    test(`encoded route-character bypass: POST ${target} is refused 400, never served by the open route`, async () => {
      const res = await rawRequest(stack.gw.port, `POST ${target} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      assert.equal(res.status, 400, res.raw.slice(0, 200));
      assert.deepEqual(JSON.parse(res.body), { code: 'bad_request', message: 'Bad request' });
      assert.equal(stack.api.received.length, 0);
    });
  }

  test('the literal spellings keep their protection, and %2C (no route has a comma) still reaches the open route', async () => {
    for (const target of ['/v1/projects:purge', '/@admin/users']) {
      const res = await rawRequest(stack.gw.port, `POST ${target} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      assert.equal(res.status, 401, target);
    }
    const res = await rawRequest(stack.gw.port, 'GET /a%2Cb HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(stack.api.received[0]!.url, '/a%2Cb');
  });
});
