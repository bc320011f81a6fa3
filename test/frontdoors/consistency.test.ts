import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { ask, forwarded, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startStack, type Stack } from '../helpers/gateway.js';

/*
 * Review finding (quality, visible as status differences): the proxy does not
 * call decide(); it repeats its steps in its own order (proxy/server.ts
 * #handle: target, route, then method override), while decide() refuses a
 * method override first. The same request gets different answers from the
 * proxy and the other front doors.
 */

const yaml = (asUrl: string, upstream: string, fa: boolean) => `
phantom_token:
  introspection_endpoint: ${asUrl}/introspect
  client_id: gateway-client
  client_secret: s3cret
${fa ? 'forward_auth: {}' : ''}
routes:
  - path: /api
    upstream: ${upstream}
`;

describe('every front door refuses a request the same way', { timeout: 20_000 }, () => {
  let stack: Stack;
  let fa: TestForwardAuth;
  before(async () => {
    stack = await startStack((as, api) => yaml(as.url, api.url, false));
    fa = await startForwardAuth(yaml(stack.as.url, stack.api.url, true));
  });
  after(async () => {
    await fa.close();
    await stack.close();
  });

  for (const [what, path] of [
    ['a path no route covers', '/nowhere'],
    ['a refused target', '/api/%61dmin'],
  ] as const) {
    test(`a method-override header on ${what}: one status`, async () => {
      const viaProxy = await request(`${stack.gw.url}${path}`, { headers: { 'x-http-method-override': 'DELETE' } });
      await viaProxy.body.text();
      const viaFa = await ask(fa.url, [...forwarded('GET', path), 'x-http-method-override', 'DELETE']);
      assert.equal(viaProxy.statusCode, viaFa.status, `proxy ${viaProxy.statusCode}, forward-auth ${viaFa.status}`);
    });
  }
});
