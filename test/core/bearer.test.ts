/*
 * RFC 6750 §2.1 bearer parsing: the scenarios of Curity's Lua phantom token
 * plugin tests (scheme case, extra spaces, trash after the token, wrong
 * scheme, no header, empty token), illegal characters and the length bound,
 * a property test over arbitrary headers, then a few of them end to end
 * through the gateway (status, challenge, and no introspection for refusals
 * that need none).
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseBearer } from '../../src/core/bearer.js';
import { GatewayError, TOKEN_MALFORMED, TOKEN_MISSING } from '../../src/core/errors.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call, gatewayConfig } from '../helpers/core.js';

const MAX = 64;
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/';
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

describe('parseBearer', () => {
  describe('the Curity Lua plugin scenarios', () => {
    test('canonical "Bearer x" yields the token', () => {
      assert.equal(parseBearer('Bearer abc.DEF-123', MAX), 'abc.DEF-123');
    });
    test('upper case scheme "BEARER x" is accepted', () => {
      assert.equal(parseBearer('BEARER abc', MAX), 'abc');
    });
    test('mixed case scheme "bEaReR x" is accepted', () => {
      assert.equal(parseBearer('bEaReR abc', MAX), 'abc');
      assert.equal(parseBearer('bearer abc', MAX), 'abc');
    });
    test('extra spaces between scheme and token are accepted and not part of the token', () => {
      assert.equal(parseBearer('Bearer     abc', MAX), 'abc');
    });
    test('trash after the token ("Bearer abc def") is malformed', () => {
      assert.equal(parseBearer('Bearer abc def', MAX), TOKEN_MALFORMED);
      assert.equal(parseBearer('Bearer abc ', MAX), TOKEN_MALFORMED);
      assert.equal(parseBearer('Bearer abc,Bearer def', MAX), TOKEN_MALFORMED);
    });
    test('another scheme is "no bearer credential", not malformed', () => {
      assert.equal(parseBearer('Basic dXNlcjpwYXNz', MAX), TOKEN_MISSING);
      assert.equal(parseBearer('DPoP abc', MAX), TOKEN_MISSING);
      assert.equal(parseBearer('Bearerabc', MAX), TOKEN_MISSING, 'a longer scheme name is another scheme');
    });
    test('no header, or an empty one, is missing', () => {
      assert.equal(parseBearer(undefined, MAX), TOKEN_MISSING);
      assert.equal(parseBearer('', MAX), TOKEN_MISSING);
    });
    test('an empty token ("Bearer", "Bearer ", "Bearer   ") is malformed', () => {
      assert.equal(parseBearer('Bearer', MAX), TOKEN_MALFORMED);
      assert.equal(parseBearer('Bearer ', MAX), TOKEN_MALFORMED);
      assert.equal(parseBearer('Bearer   ', MAX), TOKEN_MALFORMED);
    });
  });

  describe('token characters (b64token)', () => {
    test('every b64token character and trailing "=" padding is accepted', () => {
      assert.equal(parseBearer(`Bearer ${B64}==`, 4096), `${B64}==`);
    });
    for (const bad of ['abc!def', 'abc%2Fdef', 'a"b', 'abc;def', 'abc\tdef', 'ab\u00e9', '=abc', 'ab=c', '==', 'abc=d', 'a\0b', 'a,b']) {
      test(`illegal token ${JSON.stringify(bad)} is malformed`, () => {
        assert.equal(parseBearer(`Bearer ${bad}`, MAX), TOKEN_MALFORMED);
      });
    }
    test('a tab instead of a space after the scheme is refused', () => {
      assert.ok(parseBearer('Bearer\tabc', MAX) instanceof GatewayError);
    });
  });

  describe('length bound', () => {
    test('a token of exactly the bound is accepted, one more character is malformed', () => {
      assert.equal(parseBearer(`Bearer ${'a'.repeat(MAX)}`, MAX), 'a'.repeat(MAX));
      assert.equal(parseBearer(`Bearer ${'a'.repeat(MAX + 1)}`, MAX), TOKEN_MALFORMED);
    });
    test('padding counts towards the bound', () => {
      assert.equal(parseBearer(`Bearer ${'a'.repeat(MAX)}=`, MAX), TOKEN_MALFORMED);
    });
    test('a huge header is refused quickly with the right kind of refusal', () => {
      const huge = 'a'.repeat(1_000_000);
      const t0 = performance.now();
      assert.equal(parseBearer(`Bearer ${huge}`, 4096), TOKEN_MALFORMED);
      assert.equal(parseBearer(`Basic ${huge}`, 4096), TOKEN_MISSING);
      assert.equal(parseBearer(`Bearer ${'a '.repeat(500_000)}`, 4096), TOKEN_MALFORMED);
      assert.ok(performance.now() - t0 < 200, 'refusing an oversized header must stay cheap (no backtracking blow-up)');
    });
  });

  describe('properties', () => {
    const b64char = fc.constantFrom(...B64);
    const b64token = fc
      .tuple(fc.string({ unit: b64char, minLength: 1, maxLength: MAX }), fc.nat({ max: 3 }))
      .filter(([body, pad]) => body.length + pad <= MAX)
      .map(([body, pad]) => body + '='.repeat(pad));
    // Headers that come close to valid ones as well as arbitrary text.
    const header = fc.oneof(
      fc.string({ maxLength: 100 }),
      fc.string({ unit: 'binary', maxLength: 100 }),
      fc.tuple(fc.constantFrom('Bearer', 'bearer', 'BEARER', 'Basic', 'Bearer\t', ''), fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 3 }), fc.string({ unit: fc.oneof(b64char, fc.constantFrom('=', ' ', '!', '\u00e9', '"', ',')), maxLength: MAX + 8 })).map(([s, sp, t]) => s + sp + t),
    );

    test('whatever is accepted is a b64token within the bound; refusals are one of the two shared errors', () => {
      fc.assert(
        fc.property(header, (h) => {
          const r = parseBearer(h, MAX);
          if (typeof r === 'string') {
            assert.match(r, B64TOKEN);
            assert.ok(r.length <= MAX, `token of ${r.length} > ${MAX}`);
            assert.ok(h.endsWith(r));
          } else {
            assert.ok(r === TOKEN_MISSING || r === TOKEN_MALFORMED);
          }
        }),
        { numRuns: 2000 },
      );
    });

    test('any b64token within the bound, as "Bearer <t>" (any scheme case, any number of spaces), comes back unchanged', () => {
      const scheme = fc
        .array(fc.boolean(), { minLength: 6, maxLength: 6 })
        .map((upper) => [...'bearer'].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(''));
      fc.assert(
        fc.property(b64token, scheme, fc.integer({ min: 1, max: 8 }), (t, s, spaces) => {
          assert.equal(parseBearer(`Bearer ${t}`, MAX), t);
          assert.equal(parseBearer(`${s}${' '.repeat(spaces)}${t}`, MAX), t);
        }),
        { numRuns: 2000 },
      );
    });
  });
});

describe('bearer parsing through the gateway', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    gw = await startGateway(
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: '', max_token_length: 128 },
        routes: [{ path: '/api' }],
      }),
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
  });
  beforeEach(() => {
    as.calls.length = 0;
    api.received.length = 0;
  });

  for (const [name, header, token] of [
    ['upper case scheme', 'BEARER gw-upper', 'gw-upper'],
    ['mixed case scheme', 'bEaReR gw-mixed', 'gw-mixed'],
    ['extra spaces', 'Bearer     gw-spaces', 'gw-spaces'],
  ] as const) {
    test(`${name}: accepted, the bare token is introspected and its JWT forwarded`, async () => {
      const jwt = await as.activate(token);
      const res = await call(`${gw.url}/api`, header);
      assert.equal(res.status, 200);
      assert.deepEqual(as.calls.map((c) => c.token), [token]);
      assert.equal((JSON.parse(res.body) as { headers: Record<string, string> }).headers.authorization, `Bearer ${jwt}`);
    });
  }

  const MALFORMED = '{"code":"unauthorized","message":"Malformed Authorization header"}';
  const MISSING = '{"code":"unauthorized","message":"Access token required"}';
  for (const [name, header, challenge, body] of [
    ['no header', undefined, 'Bearer', MISSING],
    ['wrong scheme', 'Basic Z2F0ZXdheTpzZWNyZXQ=', 'Bearer', MISSING],
    ['empty token', 'Bearer', 'Bearer error="invalid_request"', MALFORMED],
    ['trash after the token', 'Bearer abc def', 'Bearer error="invalid_request"', MALFORMED],
    ['illegal characters', 'Bearer abc!def', 'Bearer error="invalid_request"', MALFORMED],
    ['token over max_token_length', `Bearer ${'a'.repeat(129)}`, 'Bearer error="invalid_request"', MALFORMED],
    ['two Authorization headers', ['Bearer one', 'Bearer two'], 'Bearer error="invalid_request"', MALFORMED],
  ] as const) {
    test(`${name}: 401, WWW-Authenticate: ${challenge}, no introspection, nothing forwarded`, async () => {
      const res = await call(`${gw.url}/api`, header as string | string[] | undefined);
      assert.equal(res.status, 401);
      assert.equal(res.headers['www-authenticate'], challenge);
      assert.equal(res.body, body);
      assert.equal(as.calls.length, 0, 'a refusal decided by parsing must not call the authorization server');
      assert.equal(api.received.length, 0);
    });
  }

  test('a token of exactly max_token_length is introspected', async () => {
    const token = 'b'.repeat(128);
    await as.activate(token);
    const res = await call(`${gw.url}/api`, `Bearer ${token}`);
    assert.equal(res.status, 200);
    assert.equal(as.callsFor(token), 1);
  });

  test('a well-formed but inactive token: 401 with error="invalid_token" after one introspection', async () => {
    const res = await call(`${gw.url}/api`, 'Bearer gw-unknown-token');
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"');
    assert.deepEqual(JSON.parse(res.body), { code: 'unauthorized', message: 'Invalid or expired access token' });
    assert.equal(as.callsFor('gw-unknown-token'), 1);
  });

  test('HEAD refusals carry the challenge but no body', async () => {
    const res = await call(`${gw.url}/api`, 'Bearer a b', 'HEAD');
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_request"');
    assert.equal(res.body, '');
  });
});
