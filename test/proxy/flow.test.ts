import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import type { EchoUpstream, ScriptedIntrospection } from '../helpers/servers.js';
import { basicConfig, startStack, type Stack, type TestGateway } from '../helpers/gateway.js';

describe('phantom token flow through the reverse proxy', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;

  let stack: Stack;
  before(async () => {
    ({ as, api, gw } = stack = await startStack((as, api) => basicConfig(as.url, api.url)));
  });
  after(() => stack.close());
  beforeEach(() => {
    as.calls.length = 0;
    api.received.length = 0;
  });

  test('an active opaque token is swapped for its JWT on the way to the API', async () => {
    const jwt = await as.activate('opaque-1');
    const res = await request(`${gw.url}/api/orders?x=1`, { headers: { authorization: 'Bearer opaque-1' } });
    assert.equal(res.statusCode, 200);
    const seen = (await res.body.json()) as { headers: Record<string, string>; url: string };
    assert.equal(seen.headers.authorization, `Bearer ${jwt}`);
    assert.equal(seen.url, '/api/orders?x=1');
    assert.equal(as.callsFor('opaque-1'), 1);
  });

  test('the introspection request carries only the form-encoded token and the gateway credentials', async () => {
    await as.activate('a+b/c=');
    const res = await request(`${gw.url}/api`, { headers: { authorization: 'Bearer a+b/c=', cookie: 'session=1' } });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    const call = as.calls[0]!;
    assert.equal(call.method, 'POST');
    assert.equal(call.url, '/introspect');
    assert.equal(call.body, 'token=a%2Bb%2Fc%3D');
    assert.equal(call.headers.accept, 'application/jwt');
    assert.equal(call.headers['content-type'], 'application/x-www-form-urlencoded');
    const basic = Buffer.from(String(call.headers.authorization).slice(6), 'base64').toString();
    assert.equal(basic, 'gateway-client:s3cret%3A%26%3D%2B+x');
    assert.equal(call.headers.cookie, undefined);
  });

  test('no token: 401 with a Bearer challenge and no introspection', async () => {
    const res = await request(`${gw.url}/api`);
    assert.equal(res.statusCode, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer');
    assert.deepEqual(await res.body.json(), { code: 'unauthorized', message: 'Access token required' });
    assert.equal(as.calls.length, 0);
    assert.equal(api.received.length, 0);
  });

  test('public route passes without a token', async () => {
    const res = await request(`${gw.url}/public/x`);
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(api.received.length, 1);
  });
});
