/*
 * i13 regression: htu is compared without RFC 3986 percent-encoding
 * normalization, though normalizeHtu's comment (and RFC 9449 §4.3: servers
 * SHOULD apply syntax-based normalization, RFC 3986 §6.2.2, before
 * comparing) says it is.
 *
 * `new URL()` lower-cases scheme and host, drops the default port and
 * resolves dot segments, but it neither decodes percent-encoded unreserved
 * characters (§6.2.2.2: `%7E` is `~`, `%41` is `A`) nor upper-cases the hex
 * digits of the others (§6.2.2.1: `%c3%a9` is `%C3%A9`). A client whose
 * HTTP library encodes `~` (Java's URLEncoder, older RFC 2396 libraries) or
 * writes lower-case escapes, and whose DPoP library writes htu from the
 * URL it was given, is refused on every request with invalid_dpop_proof
 * (a false negative the client cannot see the reason for).
 *
 * Fix: in normalizeHtu, after `new URL`, rewrite each `%XX` of the path:
 * decode it when it is an unreserved character (ALPHA / DIGIT / - . _ ~),
 * otherwise upper-case its hex digits.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeHtu } from '../../src/dpop/proof.js';

describe('i13: htu normalization (RFC 3986 §6.2.2)', () => {
  const same: [string, string][] = [
    ['https://api.example.com/api/~items', 'https://api.example.com/api/%7Eitems'],
    ['https://api.example.com/api/~items', 'https://api.example.com/api/%7eitems'],
    ['https://api.example.com/api/Items', 'https://api.example.com/api/%49tems'],
    ['https://api.example.com/api/caf%C3%A9', 'https://api.example.com/api/caf%c3%a9'],
  ];
  for (const [a, b] of same) {
    test(`${a} and ${b} are the same htu`, () => {
      assert.equal(normalizeHtu(b), normalizeHtu(a));
    });
  }

  test('a reserved character stays encoded (%2F is not /)', () => {
    assert.notEqual(normalizeHtu('https://api.example.com/api/a%2Fb'), normalizeHtu('https://api.example.com/api/a/b'));
  });
});
