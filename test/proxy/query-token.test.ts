/*
 * Access tokens in the query string (RFC 6750 §2.3). On a protected route a
 * request carrying an `access_token` parameter, under any name a framework
 * reads as that one, is refused: the token is never used as the credential,
 * never introspected and never passed to the upstream. Open routes are not
 * the gateway's business and pass it on unchanged.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { hasQueryToken } from '../../src/core/credentials.js';
import { basicConfig, suiteStack } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';

let serial = 0;

/** Spellings of the parameter name that PHP, ASP.NET, Rack, CGI libraries or a percent-decoder read as `access_token`. */
const SPELLINGS = [
  'access_token',
  'ACCESS_TOKEN',
  'Access_Token',
  'access%5Ftoken',
  'access%5ftoken',
  '%61ccess_token',
  'access.token',
  'access+token',
  'access%20token',
  'access[token',
  'access_token[]',
  'access_token[0]',
  'access_token%5B%5D',
  '%20access_token',
];

describe('tokens in the query string (RFC 6750 §2.3 query credential)', { timeout: 10_000 }, () => {
  const stack = suiteStack((as, api) => basicConfig(as.url, api.url));

  const get = (target: string, auth?: string) =>
    rawRequest(stack.gw.port, `GET ${target} HTTP/1.1\r\nHost: gw.test\r\n${auth ? `Authorization: Bearer ${auth}\r\n` : ''}Connection: close\r\n\r\n`);

  test('a protected route with ?access_token= and no Authorization header: 400 invalid_request; the query token is never introspected or forwarded', async () => {
    const token = `query-token-${++serial}`;
    await stack.as.activate(token);
    stack.as.calls.length = 0;
    const res = await get(`/api/x?access_token=${token}`);
    assert.equal(res.status, 400);
    assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_request"');
    assert.deepEqual(JSON.parse(res.body), { code: 'bad_request', message: 'Access tokens are not accepted in the query string' });
    assert.equal(stack.as.calls.length, 0);
    assert.equal(stack.api.received.length, 0);
    assert.ok(!stack.gw.rawLogs().includes(token), 'the token is not logged');
    assert.ok(stack.gw.logs.some((l) => l.code === 'ERR_TOKEN_IN_QUERY'));
  });

  test('a protected route with a valid Authorization header and ?access_token=: 400 as well (the query copy would reach the upstream)', async () => {
    const token = `query-token-${++serial}`;
    await stack.as.activate(token);
    stack.as.calls.length = 0;
    const res = await get(`/api/x?a=1&access_token=${token}`, token);
    assert.equal(res.status, 400);
    assert.equal(stack.as.calls.length, 0);
    assert.equal(stack.api.received.length, 0);
  });

  for (const name of SPELLINGS) {
    test(`the spelling ${JSON.stringify(name)} is refused on a protected route`, async () => {
      const res = await get(`/api/x?q=1&${name}=opaque`, 'whatever');
      assert.equal(res.status, 400, res.raw.slice(0, 200));
      assert.equal(stack.api.received.length, 0);
    });
  }

  test('pairs split on ; as well as & (Rack, older CGI libraries)', async () => {
    const res = await get('/api/x?a=1;access_token=opaque', 'whatever');
    assert.equal(res.status, 400);
  });

  for (const query of ['?access_tokens=1', '?my_access_token=1', '?access_token_hint=1', '?accesstoken=1', '?x=access_token', '?q=access_token%3D1']) {
    test(`other parameters are no credential: ${query} is forwarded unchanged`, async () => {
      const token = `query-token-${++serial}`;
      await stack.as.activate(token);
      const res = await get(`/api/x${query}`, token);
      assert.equal(res.status, 200, res.raw.slice(0, 200));
      assert.equal(stack.api.received[0]!.url, `/api/x${query}`);
    });
  }

  test('an open route passes ?access_token= on unchanged (not a credential the gateway checks)', async () => {
    const res = await get('/public/x?access_token=abc');
    assert.equal(res.status, 200);
    assert.equal(stack.api.received[0]!.url, '/public/x?access_token=abc');
  });

  test('property: any query with an access_token spelling among other pairs is detected, wherever it stands', () => {
    const other = fc.stringMatching(/^[a-z0-9]{1,8}=[a-zA-Z0-9%._-]{0,8}$/).filter((p) => !p.startsWith('access'));
    fc.assert(
      fc.property(fc.array(other, { maxLength: 5 }), fc.constantFrom(...SPELLINGS), fc.nat(), fc.constantFrom('&', ';'), fc.string({ maxLength: 10 }), (pairs, name, at, sep, value) => {
        const all = [...pairs];
        all.splice(at % (pairs.length + 1), 0, `${name}=${encodeURIComponent(value)}`);
        assert.ok(hasQueryToken(`?${all.join(sep)}`), all.join(sep));
      }),
    );
    fc.assert(
      fc.property(fc.array(other, { maxLength: 6 }), (pairs) => {
        assert.equal(hasQueryToken(`?${pairs.join('&')}`), false);
      }),
    );
  });
});
