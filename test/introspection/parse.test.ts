/*
 * The strict readers of introspection answers on their own, property-tested:
 * Cache-Control (every line, first max-age, 1*DIGIT only, quoted strings),
 * duplicate JSON member names (no false positives on anything JSON.stringify
 * makes, every injected duplicate found), Retry-After and singleton headers.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AMBIGUOUS, hasDuplicateKeys, parseMaxAge, parseRetryAfter, singleHeader } from '../../src/introspection/parse.js';

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const token = fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 8 });
/** Any text a quoted-string may carry, commas, quotes and directive names included. */
const quotedContent = fc.string({ unit: fc.constantFrom(...'ab ,="\\\t', 'no-store', 'max-age=0', 'no-cache'), maxLength: 6 });
const quote = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

interface Directive {
  name: string;
  arg: { quoted: boolean; value: string } | undefined;
}

const directiveName = fc.oneof(
  token,
  fc.constantFrom('max-age', 'MAX-AGE', 'Max-Age', 'no-store', 'No-Store', 'no-cache', 'NO-CACHE', 'private', 'public', 's-maxage', 'must-revalidate', 'no-transform'),
);
const digits = fc.oneof(fc.nat({ max: 100_000 }).map(String), fc.constantFrom('0', '007', '2147483648', '99999999999999999999'));
const directive: fc.Arbitrary<Directive> = fc.record({
  name: directiveName,
  arg: fc.option(
    fc.oneof(
      fc.record({ quoted: fc.constant(false), value: fc.oneof(digits, token) }),
      fc.record({ quoted: fc.constant(true), value: fc.oneof(digits, quotedContent) }),
    ),
    { nil: undefined },
  ),
});
const ows = fc.constantFrom('', ' ', '  ', '\t');

/** What RFC 9111 makes of a list of directives, for a cache that takes the first max-age. */
function model(list: Directive[]): number | undefined {
  if (list.some((d) => ['no-store', 'no-cache'].includes(d.name.toLowerCase()))) return 0;
  const first = list.find((d) => d.name.toLowerCase() === 'max-age');
  if (first === undefined) return undefined;
  if (first.arg === undefined || !/^\d+$/.test(first.arg.value)) return 0;
  return Math.min(Number(first.arg.value), 2 ** 31);
}

/** The directives written as header lines: random OWS, empty list elements, split over lines. */
const written = fc
  .array(fc.tuple(directive, ows, ows, fc.boolean()), { maxLength: 8 })
  .chain((items) =>
    fc.array(fc.nat({ max: items.length }), { maxLength: 3 }).map((cuts) => {
      const parts = items.map(([d, before, after, emptyAfter]) => {
        const text = d.arg === undefined ? d.name : `${d.name}=${d.arg.quoted ? quote(d.arg.value) : d.arg.value}`;
        return `${before}${text}${after}${emptyAfter ? ', ' : ''}`;
      });
      const bounds = [...new Set([0, ...cuts, items.length])].sort((a, b) => a - b);
      const lines: string[] = [];
      for (let i = 1; i < bounds.length; i++) lines.push(parts.slice(bounds[i - 1], bounds[i]).join(','));
      return { list: items.map(([d]) => d), lines: lines.length > 0 ? lines : [''] };
    }),
  );

describe('Cache-Control: strict max-age', () => {
  test('property: any directive list, however split over lines, means what RFC 9111 says (first max-age, 1*DIGIT, no-store/no-cache anywhere -> 0)', () => {
    fc.assert(
      fc.property(written, ({ list, lines }) => {
        const value = lines.length === 1 ? lines[0]! : lines;
        assert.equal(parseMaxAge(value), model(list), JSON.stringify(lines));
      }),
      { numRuns: 1000 },
    );
  });

  test('property: no-store or no-cache on any line, in any case, with or without an argument -> 0', () => {
    fc.assert(
      fc.property(written, fc.constantFrom('no-store', 'NO-STORE', 'no-cache', 'No-Cache', 'no-cache="set-cookie"'), fc.nat(), ({ lines }, d, at) => {
        const all = [...lines];
        all.splice(at % (all.length + 1), 0, d);
        assert.equal(parseMaxAge(all), 0);
      }),
    );
  });

  test('property: max-age is accepted only as 1*DIGIT (numbers in any other spelling are not a lifetime)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.double().map(String), fc.integer().map((n) => `0x${n.toString(16)}`), fc.string({ unit: fc.constantFrom(...'0123456789.eE+-x_ ') })), (v) => {
        const expected = /^\d+[ \t]*$/.test(v) ? Math.min(Number(v), 2 ** 31) : 0;
        assert.equal(parseMaxAge(`max-age=${v}`), expected, v);
      }),
      { numRuns: 500 },
    );
  });

  test('property: the first max-age wins, on one line or on several', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1e6 }), fc.nat({ max: 1e6 }), (a, b) => {
        assert.equal(parseMaxAge(`max-age=${a}, max-age=${b}`), a);
        assert.equal(parseMaxAge([`max-age=${a}`, `public, max-age=${b}`]), a);
      }),
    );
  });

  for (const [value, expected] of [
    [undefined, undefined],
    ['', undefined],
    ['private', undefined],
    ['max-age=60', 60],
    ['MAX-AGE=60', 60],
    ['max-age="60"', 60],
    ['max-age="6\\0"', 60],
    ['max-age=0x10', 0],
    ['max-age=1e2', 0],
    ['max-age=+5', 0],
    ['max-age=5.0', 0],
    ['max-age="5 "', 0],
    ['max-age= 5', 0],
    ['max-age', 0],
    ['max-age=99999999999999999999', 2 ** 31],
    ['max-age=60, no-store', 0],
    [['max-age=300', 'no-store'], 0],
    ['private="no-store", max-age=60', 60],
    ['private="a, b", max-age=60', 60],
    ['private="unterminated, max-age=60', 0],
    ['max-age=60 private', 0],
    ['max-age=60;x', 0],
    [' , ,max-age=60 , ', 60],
  ] as const) {
    test(`parseMaxAge(${JSON.stringify(value)}) = ${expected}`, () => {
      assert.equal(parseMaxAge(value), expected);
    });
  }
});

/** A JSON tree whose objects may repeat member names (a small alphabet makes repeats likely). */
type Tree = { kind: 'leaf'; text: string } | { kind: 'arr'; items: Tree[] } | { kind: 'obj'; entries: Array<[string, Tree, boolean]> };
const { tree } = fc.letrec<{ tree: Tree; leaf: Tree; arr: Tree; obj: Tree }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('arr'), tie('obj')),
  leaf: fc
    .oneof(fc.constant(null), fc.boolean(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string({ unit: 'binary', maxLength: 6 }), fc.constantFrom('"a":', '{"a":1,"a":2}', '\\', '"'))
    .map((v) => ({ kind: 'leaf' as const, text: JSON.stringify(v) })),
  arr: fc.array(tie('tree'), { maxLength: 4 }).map((items) => ({ kind: 'arr' as const, items })),
  obj: fc
    .array(fc.tuple(fc.constantFrom('a', 'b', 'A', 'é', '"', '\\', '{', '', '__proto__', '😀'), tie('tree'), fc.boolean()), { maxLength: 4 })
    .map((entries) => ({ kind: 'obj' as const, entries })),
}));

/** Every UTF-16 unit as \uXXXX: the same name, spelt differently. */
const escapeAll = (k: string) => `"${[...Array(k.length).keys()].map((i) => `\\u${k.charCodeAt(i).toString(16).padStart(4, '0')}`).join('')}"`;

function serialise(t: Tree, ws: string): string {
  if (t.kind === 'leaf') return t.text;
  if (t.kind === 'arr') return `[${ws}${t.items.map((i) => serialise(i, ws)).join(`,${ws}`)}${ws}]`;
  return `{${ws}${t.entries.map(([k, v, esc]) => `${esc ? escapeAll(k) : JSON.stringify(k)}${ws}:${ws}${serialise(v, ws)}`).join(`,${ws}`)}${ws}}`;
}

function repeats(t: Tree): boolean {
  if (t.kind === 'leaf') return false;
  if (t.kind === 'arr') return t.items.some(repeats);
  const names = t.entries.map(([k]) => k);
  return new Set(names).size !== names.length || t.entries.some(([, v]) => repeats(v));
}

describe('duplicate JSON member names', () => {
  test('property: no false positive on anything JSON.stringify writes, compact or indented', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        assert.equal(hasDuplicateKeys(JSON.stringify(v)), false);
        assert.equal(hasDuplicateKeys(JSON.stringify(v, null, 2)), false);
      }),
      { numRuns: 500 },
    );
  });

  test('property: on random trees (names repeated, escaped or not, at any depth) the answer is exactly "some object repeats a name"', () => {
    fc.assert(
      fc.property(tree, fc.constantFrom('', ' ', '\n  '), (t, ws) => {
        const text = serialise(t, ws);
        JSON.parse(text); // the checker only ever sees JSON that parsed
        assert.equal(hasDuplicateKeys(text), repeats(t), text);
      }),
      { numRuns: 1000 },
    );
  });

  test('property: a duplicate injected into any object of a JSON.stringify output is found', () => {
    const entries = fc.uniqueArray(fc.tuple(fc.string({ unit: 'binary', maxLength: 5 }), fc.jsonValue({ maxDepth: 2 })), { selector: (e) => e[0], minLength: 1, maxLength: 5 });
    fc.assert(
      fc.property(entries, fc.nat(), fc.jsonValue({ maxDepth: 1 }), fc.boolean(), fc.array(fc.constantFrom('arr', 'obj'), { maxLength: 4 }), (es, pick, extra, escaped, wrappers) => {
        const [name] = es[pick % es.length]!;
        const members = es.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
        members.push(`${escaped ? escapeAll(name) : JSON.stringify(name)}:${JSON.stringify(extra)}`);
        let text = `{${members.join(',')}}`;
        for (const w of wrappers) text = w === 'arr' ? `[1,${text},{"x":1}]` : `{"x":{"x":1},"y":${text},"z":[]}`;
        JSON.parse(text);
        assert.equal(hasDuplicateKeys(text), true, text);
      }),
      { numRuns: 500 },
    );
  });

  for (const [text, expected] of [
    ['{"a":1,"b":2}', false],
    ['{"a":{"a":1},"b":[{"a":1},{"a":2}]}', false],
    ['{"a":"\\"a\\":1","b":"{\\"a\\":2}"}', false],
    ['{"a":1,"a":1}', true],
    ['{"a":1,"\\u0061":2}', true],
    ['[{"x":[{"a":1,"b":{},"a":2}]}]', true],
    ['{"__proto__":1,"__proto__":2}', true],
    ['{"":1,"":2}', true],
  ] as const) {
    test(`hasDuplicateKeys(${text}) = ${expected}`, () => {
      assert.equal(hasDuplicateKeys(text), expected);
    });
  }
});

describe('Retry-After and singleton headers', () => {
  for (const [value, expected] of [
    ['7', '7'],
    [' 7 ', '7'],
    [['7'], '7'],
    [['7', '8'], undefined],
    ['Sun, 29 Nov 2026 08:00:00 GMT', 'Sun, 29 Nov 2026 08:00:00 GMT'],
    ['Sunday, 29-Nov-26 08:00:00 GMT', undefined],
    ['Sun Nov 29 08:00:00 2026', undefined],
    ['-1', undefined],
    ['1.5', undefined],
    ['12345678901', undefined],
    ['7, 8', undefined],
    [undefined, undefined],
  ] as const) {
    test(`parseRetryAfter(${JSON.stringify(value)}) = ${JSON.stringify(expected)}`, () => {
      assert.equal(parseRetryAfter(value), expected);
    });
  }

  test('singleHeader: one line, identical lines, different lines', () => {
    assert.equal(singleHeader(undefined), undefined);
    assert.equal(singleHeader('application/jwt'), 'application/jwt');
    assert.equal(singleHeader(['application/jwt', ' Application/JWT ']), 'application/jwt');
    assert.equal(singleHeader(['application/jwt', 'application/json']), AMBIGUOUS);
  });
});
