import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { phantomToken } from '../../src/middleware/express.js';
import { createLogger } from '../../src/observability/logger.js';
import { ask, forwarded, startForwardAuth, type TestForwardAuth } from '../helpers/forward-auth.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { suiteStack } from '../helpers/gateway.js';

/*
 * Regression (found in review): a route path with upper-case letters (`/Admin`,
 * allowed by the schema) is only compared case-insensitively when the
 * REQUEST path has an upper-case letter (Router.match). `/admin/x` has none,
 * so it takes the open root route, while a case-insensitive upstream
 * (Express by default, IIS, ASP.NET) serves it with the `/Admin` handler.
 */

const yaml = (as: ScriptedIntrospection) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
forward_auth: {}
routes:
  - path: /Admin
    phantom_token: { scope: admin }
  - path: /
    phantom_token: false
`;

describe('route-case bypass: an upper-case route prefix and a lower-case request', { timeout: 20_000 }, () => {
  let as: ScriptedIntrospection;
  let fa: TestForwardAuth;
  let guards: Guards;
  let server: Server;
  let url: string;
  const reached: string[] = [];

  before(async () => {
    as = await startScriptedIntrospection();
    fa = await startForwardAuth(yaml(as));
    guards = createGuards(parseConfig(yaml(as), { file: 'test.yaml', env: {}, proxy: false }), { logger: createLogger('silent') });
    const app = express();
    app.use(phantomToken({ guards }));
    // Express routes case-insensitively by default.
    app.get('/Admin/secrets', (req, res) => {
      reached.push(req.originalUrl);
      res.json({ secret: true });
    });
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await fa.close();
    await guards.close();
    await as.close();
  });

  test('sanity: /Admin/secrets without a token is refused (401)', async () => {
    const a = await ask(fa.url, forwarded('GET', '/Admin/secrets'));
    assert.equal(a.status, 401);
  });

  test('forward-auth: /admin/secrets without a token is not allowed as the open root route (route-case bypass)', async () => {
    const a = await ask(fa.url, forwarded('GET', '/admin/secrets'));
    assert.notEqual(a.status, 200, 'a lower-case spelling of the protected /Admin route was allowed without a token');
  });

  test('Express middleware: /admin/secrets without a token never reaches the /Admin handler (route-case bypass)', async () => {
    const res = await request(`${url}/admin/secrets`);
    await res.body.text();
    assert.deepEqual(reached, [], 'the /Admin handler ran without a token');
    assert.notEqual(res.statusCode, 200);
  });
});

describe('review: upper-case route prefix, lower-case request, through the proxy', { timeout: 20_000 }, () => {
  const stack = suiteStack(
    (as, api) => `
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /Admin
    upstream: ${api.url}
    phantom_token: { scope: admin }
  - path: /
    upstream: ${api.url}
    phantom_token: false
`,
  );

  test('proxy: /admin/secrets without a token is not forwarded as the open root route (a case-insensitive upstream serves it as /Admin)', async () => {
    const res = await request(`${stack.gw.url}/admin/secrets`);
    await res.body.text();
    assert.equal(stack.api.received.length, 0, 'forwarded to the upstream without a token');
    assert.notEqual(res.statusCode, 200);
  });
});
