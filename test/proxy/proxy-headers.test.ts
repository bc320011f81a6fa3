/*
 * The proxy-supplied header family, underscore spellings, method overrides
 * and Host. From an untrusted peer nothing an upstream could read as set by a
 * proxy (client address, scheme, host, port, prefix, path, TLS client
 * certificate) may reach it, in any case or `_`/`-` spelling; the gateway's
 * own X-Forwarded-For/-Proto/-Host are the only ones there.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { basicConfig, suiteStack } from '../helpers/gateway.js';
import { rawRequest, type RawResponse } from '../helpers/raw.js';
import type { EchoRequest } from '../helpers/servers.js';
import { isProxySupplied } from '../../src/proxy/headers.js';
import { isValidHost } from '../../src/routing/request-target.js';

/** The proxy-supplied family, as the issue and the frameworks that trust them name it. */
const FAMILY = [
  'Forwarded',
  'X-Forwarded-For',
  'X-Forwarded-Proto',
  'X-Forwarded-Host',
  'X-Forwarded-Port',
  'X-Forwarded-Prefix',
  'X-Forwarded-Ssl',
  'X-Forwarded-Scheme',
  'X-Forwarded-Server',
  'X-Forwarded-Uri',
  'X-Forwarded-Path',
  'X-Forwarded-Tls-Client-Cert',
  'X-Forwarded-Client-Cert',
  'X-Original-URL',
  'X-Original-URI',
  'X-Original-Host',
  'X-Original-Method',
  'X-Original-Forwarded-For',
  'X-Rewrite-URL',
  'X-Real-IP',
  'Client-IP',
  'True-Client-IP',
  'X-Client-IP',
  'X-Cluster-Client-IP',
  'CF-Connecting-IP',
  'Fastly-Client-IP',
  'X-Host',
  'X-HTTP-Host-Override',
  'X-ProxyUser-Ip',
  'X-Scheme',
  'X-Url-Scheme',
  'Front-End-Https',
  'X-Client-Cert',
  'X-Ssl-Client-Cert',
  'X-Arr-Ssl',
  'X-Envoy-External-Address',
];

const GATEWAY_SET = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'];
const MARK = 'marker-6-6-6-6';

const norm = (name: string) => name.toLowerCase().replaceAll('_', '-');

/** Every header the upstream got whose value carries the client's marker, or whose normalized name is in the family but not one the gateway set. */
function leaked(s: EchoRequest): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.rawHeaders.length; i += 2) {
    const name = s.rawHeaders[i]!;
    const value = s.rawHeaders[i + 1]!;
    if (value.includes(MARK)) out.push(`${name}: ${value}`);
    else if (isProxySupplied(name) && !GATEWAY_SET.includes(name.toLowerCase())) out.push(`${name}: ${value}`);
  }
  return out;
}

function assertGatewayValues(s: EchoRequest, host = 'gw.test'): void {
  const values = (n: string) => s.rawHeaders.filter((_, i) => i % 2 === 1 && norm(s.rawHeaders[i - 1]!) === n);
  assert.deepEqual(values('x-forwarded-for'), ['127.0.0.1']);
  assert.deepEqual(values('x-forwarded-proto'), ['http']);
  assert.deepEqual(values('x-forwarded-host'), [host]);
}

const head = (target: string, headers: string, host = 'gw.test') => `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${headers}Connection: close\r\n\r\n`;

describe('proxy-supplied headers from an untrusted peer (proxy header spoofing)', { timeout: 20_000 }, () => {
  const stack = suiteStack((as, api) => basicConfig(as.url, api.url));

  test('every member of the family is dropped; only the gateway\'s X-Forwarded-For/-Proto/-Host reach the upstream', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', FAMILY.map((n) => `${n}: ${MARK}\r\n`).join('')));
    assert.equal(res.status, 200);
    const s = stack.api.received[0]!;
    assert.deepEqual(leaked(s), []);
    assertGatewayValues(s);
  });

  test('the underscore spellings are dropped too (X_Forwarded_For is HTTP_X_FORWARDED_FOR to CGI, WSGI, PHP)', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', FAMILY.map((n) => `${n.replaceAll('-', '_')}: ${MARK}\r\n`).join('')));
    assert.equal(res.status, 200);
    const s = stack.api.received[0]!;
    assert.deepEqual(leaked(s), []);
    assertGatewayValues(s);
  });

  test('property: a family header in any case and any mix of _ and - never reaches the upstream', async () => {
    const spelling = fc
      .tuple(fc.constantFrom(...FAMILY), fc.infiniteStream(fc.boolean()), fc.infiniteStream(fc.boolean()))
      .map(([name, upper, under]) => {
        const u = upper[Symbol.iterator]();
        const d = under[Symbol.iterator]();
        return [...name].map((c) => (c === '-' && d.next().value ? '_' : u.next().value ? c.toUpperCase() : c.toLowerCase())).join('');
      });
    await fc.assert(
      fc.asyncProperty(spelling, async (name) => {
        stack.api.received.length = 0;
        const res = await rawRequest(stack.gw.port, head('/public/p', `${name}: ${MARK}\r\n`));
        assert.equal(res.status, 200, name);
        assert.deepEqual(leaked(stack.api.received[0]!), [], name);
      }),
      { numRuns: 80 },
    );
  });

  test('any other header with _ in its name is dropped by default (NGINX underscores_in_headers off)', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', 'X_Custom: 1\r\nX-Kept: 2\r\n'));
    assert.equal(res.status, 200);
    const s = stack.api.received[0]!;
    assert.equal(s.headers['x_custom'], undefined);
    assert.equal(s.headers['x-kept'], '2');
  });

  test('Via is kept (informational, loop detection; no framework reads address, scheme, host or path from it)', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', 'Via: 1.1 edge\r\n'));
    assert.equal(res.status, 200);
    assert.equal(stack.api.received[0]!.headers.via, '1.1 edge');
  });

  for (const name of ['X-HTTP-Method-Override', 'x-http-method', 'X-Method-Override']) {
    test(`method override: ${name} is refused with 405 on any route, nothing forwarded, no introspection`, async () => {
      for (const path of ['/public/x', '/api/x']) {
        const res = await rawRequest(stack.gw.port, head(path, `${name}: DELETE\r\nAuthorization: Bearer some-token\r\n`));
        assert.equal(res.status, 405, `${path}: ${res.raw.slice(0, 120)}`);
        assert.deepEqual(JSON.parse(res.body), { code: 'bad_request', message: 'Method not allowed' });
      }
      assert.equal(stack.api.received.length, 0);
      assert.equal(stack.as.calls.length, 0);
    });
  }

  test('method override: a CORS preflight (which passes without a token) cannot carry one to act as DELETE', async () => {
    const res = await rawRequest(
      stack.gw.port,
      'OPTIONS /api/x HTTP/1.1\r\nHost: gw.test\r\nOrigin: https://app.test\r\nAccess-Control-Request-Method: DELETE\r\nX-HTTP-Method-Override: DELETE\r\n\r\n',
    );
    assert.equal(res.status, 405);
    assert.equal(stack.api.received.length, 0);
  });
});

/** Identity headers that authenticating proxies set and their upstreams trust as the signed-in user. */
const IDENTITY = [
  'Remote-User',
  'Remote-Groups',
  'Remote-Email',
  'Remote-Name',
  'X-Remote-User',
  'X-Remote-Group',
  'X-Remote-Extra-Scopes',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
  'X-Auth-Request-Access-Token',
  'X-WEBAUTH-USER',
  'X-Webauth-Email',
  'X-MS-CLIENT-PRINCIPAL',
  'X-MS-CLIENT-PRINCIPAL-NAME',
  'X-MS-CLIENT-PRINCIPAL-ID',
  'X-MS-TOKEN-AAD-ID-TOKEN',
  'X-Goog-Authenticated-User-Email',
  'X-Goog-Authenticated-User-Id',
  'X-Goog-IAP-JWT-Assertion',
  'X-Endpoint-API-UserInfo',
  'X-Apigateway-Api-Userinfo',
  'X-Amzn-Oidc-Identity',
  'X-Amzn-Oidc-Data',
  'X-Amzn-Oidc-Accesstoken',
  'Cf-Access-Authenticated-User-Email',
  'Cf-Access-Jwt-Assertion',
  'X-Consumer-ID',
  'X-Consumer-Username',
  'X-Consumer-Custom-ID',
  'X-Consumer-Groups',
  'X-Authenticated-User',
  'X-Authenticated-Userid',
  'X-Authenticated-Scope',
  'X-Credential-Identifier',
  'X-Credential-Username',
  'X-Anonymous-Consumer',
  'X-Userinfo',
  'X-JWT-Assertion',
  'X-Pomerium-Jwt-Assertion',
  'X-Pomerium-Claim-Email',
  'X-Vouch-User',
  'X-Authentik-Username',
  'X-Authentik-Groups',
  'Tailscale-User-Login',
  'Tailscale-User-Name',
  'X-Forwarded-User',
  'X-Forwarded-Email',
  'X-Forwarded-Groups',
  'X-Forwarded-Preferred-Username',
];

/** Every header the upstream got whose value carries the client's marker. */
function marked(s: EchoRequest): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.rawHeaders.length; i += 2) if (s.rawHeaders[i + 1]!.includes(MARK)) out.push(`${s.rawHeaders[i]}: ${s.rawHeaders[i + 1]}`);
  return out;
}

describe('auth-proxy identity headers from an untrusted peer (identity header spoofing)', { timeout: 20_000 }, () => {
  const stack = suiteStack((as, api) => basicConfig(as.url, api.url));

  test('every identity header is dropped on a protected route, beside the JWT', async () => {
    await stack.as.activate('identity-token');
    const res = await rawRequest(stack.gw.port, head('/api/me', `Authorization: Bearer identity-token\r\n${IDENTITY.map((n) => `${n}: ${MARK}\r\n`).join('')}`));
    assert.equal(res.status, 200, res.raw.slice(0, 200));
    const s = stack.api.received[0]!;
    assert.match(String(s.headers.authorization), /^Bearer ey/);
    assert.deepEqual(marked(s), []);
  });

  test('every identity header is dropped on an open route', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', IDENTITY.map((n) => `${n}: ${MARK}\r\n`).join('')));
    assert.equal(res.status, 200);
    assert.deepEqual(marked(stack.api.received[0]!), []);
  });

  test('property: an identity header in any case and any mix of _ and - never reaches the upstream', async () => {
    const spelling = fc
      .tuple(fc.constantFrom(...IDENTITY), fc.infiniteStream(fc.boolean()), fc.infiniteStream(fc.boolean()))
      .map(([name, upper, under]) => {
        const u = upper[Symbol.iterator]();
        const d = under[Symbol.iterator]();
        return [...name].map((c) => (c === '-' && d.next().value ? '_' : u.next().value ? c.toUpperCase() : c.toLowerCase())).join('');
      });
    await fc.assert(
      fc.asyncProperty(spelling, async (name) => {
        stack.api.received.length = 0;
        const res = await rawRequest(stack.gw.port, head('/public/p', `${name}: ${MARK}\r\n`));
        assert.equal(res.status, 200, name);
        assert.deepEqual(marked(stack.api.received[0]!), [], name);
        assert.ok(isProxySupplied(name), name);
      }),
      { numRuns: 80 },
    );
  });

  test('names too generic to be an auth proxy\'s alone pass (X-User, X-Email, X-Auth-Token, X-Access-Token, X-Remote-ish lookalikes)', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', 'X-User: u\r\nX-Email: e\r\nX-Auth-Token: t\r\nX-Access-Token: a\r\nX-Remoteness: r\r\nRemotely: y\r\n'));
    assert.equal(res.status, 200);
    const h = stack.api.received[0]!.headers;
    assert.deepEqual([h['x-user'], h['x-email'], h['x-auth-token'], h['x-access-token'], h['x-remoteness'], h['remotely']], ['u', 'e', 't', 'a', 'r', 'y']);
  });
});

describe('proxy-supplied headers: server.underscores_in_headers: true', { timeout: 10_000 }, () => {
  const stack = suiteStack((as, api) => basicConfig(as.url, api.url, 'server:\n  underscores_in_headers: true\n'));

  test('other _ names pass; family spellings with _ are still dropped from an untrusted peer', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', `X_Custom: 1\r\nX_Forwarded_Prefix: ${MARK}\r\nTrue_Client_IP: ${MARK}\r\nX_Forwarded_For: ${MARK}\r\n`));
    assert.equal(res.status, 200);
    const s = stack.api.received[0]!;
    assert.equal(s.headers['x_custom'], '1');
    assert.deepEqual(leaked(s), []);
    assertGatewayValues(s);
  });

  test('a method override spelled with _ is still refused', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', 'X_HTTP_Method_Override: DELETE\r\n'));
    assert.equal(res.status, 405);
    assert.equal(stack.api.received.length, 0);
  });
});

describe('proxy-supplied headers from a trusted proxy', { timeout: 10_000 }, () => {
  const stack = suiteStack((as, api) => basicConfig(as.url, api.url, 'trusted_proxies: [127.0.0.1]\nserver:\n  underscores_in_headers: true\n'));

  test('the family is kept (as before); the gateway still sets the X-Forwarded-For/-Proto/-Host it owns, and _ copies of those are dropped', async () => {
    const res = await rawRequest(
      stack.gw.port,
      head('/public/x', 'X-Forwarded-Prefix: /edge\r\nX-Original-URL: /public/x\r\nX-Forwarded-Port: 443\r\nX_Forwarded_For: 6.6.6.6\r\nX_Forwarded_Host: evil.example\r\n'),
    );
    assert.equal(res.status, 200);
    const s = stack.api.received[0]!;
    assert.equal(s.headers['x-forwarded-prefix'], '/edge');
    assert.equal(s.headers['x-original-url'], '/public/x');
    assert.equal(s.headers['x-forwarded-port'], '443');
    assert.equal(s.headers['x_forwarded_for'], undefined);
    assert.equal(s.headers['x_forwarded_host'], undefined);
    assertGatewayValues(s);
  });

  test('identity headers from the trusted proxy pass (it is the auth proxy that sets them)', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', 'Remote-User: alice\r\nX-Auth-Request-Email: alice@example.com\r\n'));
    assert.equal(res.status, 200);
    const s = stack.api.received[0]!;
    assert.equal(s.headers['remote-user'], 'alice');
    assert.equal(s.headers['x-auth-request-email'], 'alice@example.com');
  });

  for (const xfh of ['evil.example/x?y=1', 'a.example, b.example', 'user@evil.example']) {
    test(`an invalid X-Forwarded-Host from the trusted proxy is refused like an invalid Host: ${JSON.stringify(xfh)}`, async () => {
      const res = await rawRequest(stack.gw.port, head('/public/x', `X-Forwarded-Host: ${xfh}\r\n`));
      assert.equal(res.status, 400);
      assert.equal(stack.api.received.length, 0);
    });
  }

  test('X-Forwarded-Host on two lines from the trusted proxy is a chain, refused like a comma-separated one (not the first line picked)', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', 'X-Forwarded-Host: a.example\r\nX-Forwarded-Host: b.example\r\n'));
    assert.equal(res.status, 400);
    assert.equal(stack.api.received.length, 0);
  });

  test('a valid X-Forwarded-Host from the trusted proxy is relayed', async () => {
    const res = await rawRequest(stack.gw.port, head('/public/x', 'X-Forwarded-Host: public.example:8443\r\n'));
    assert.equal(res.status, 200);
    assert.equal(stack.api.received[0]!.headers['x-forwarded-host'], 'public.example:8443');
  });
});

describe('Host validation (RFC 9112 §3.2: an invalid Host is a 400, never relayed as X-Forwarded-Host)', { timeout: 10_000 }, () => {
  const stack = suiteStack((as, api) => basicConfig(as.url, api.url));

  function assertBadHost(res: RawResponse): void {
    assert.equal(res.status, 400, res.raw.slice(0, 200));
    assert.deepEqual(JSON.parse(res.body), { code: 'bad_request', message: 'Bad request' });
    assert.equal(stack.api.received.length, 0);
    assert.equal(stack.as.calls.length, 0);
  }

  const invalid = [
    'evil.example/x?y=1',
    'user@evil.example',
    'evil.example"',
    "evil.example'",
    '<script>',
    'a.example, b.example',
    'evil.example:80:80',
    'evil.example:port',
    'evil.example:123456',
    '%65vil.example',
    '[::1',
    '[not-v6]',
    '[v1.future]',
    '',
    'a b',
  ];
  for (const host of invalid) {
    test(`Host ${JSON.stringify(host)}: 400, nothing forwarded`, async () => {
      const res = await rawRequest(stack.gw.port, `GET /api/x HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer tok-host\r\nConnection: close\r\n\r\n`);
      if (res.status !== 400) assert.fail(`expected 400, got ${res.raw.slice(0, 200)}`);
      // Node's parser refuses some of these itself, with the gateway's JSON refusal too.
      assert.equal(stack.api.received.length, 0);
      assert.equal(stack.as.calls.length, 0);
      if (host !== '' && host !== 'a b') assertBadHost(res);
    });
  }

  test('the refusal is logged with the internal code ERR_BAD_HOST', async () => {
    await rawRequest(stack.gw.port, head('/public/x', '', 'user@evil.example'));
    assert.ok(stack.gw.logs.some((l) => l.code === 'ERR_BAD_HOST'));
  });

  for (const host of ['gw.test', 'gw.test:8080', 'GW.Test.', '127.0.0.1:1', '[::1]:8080', '[2001:db8::1]', 'my_host.internal']) {
    test(`Host ${JSON.stringify(host)} is valid and relayed as X-Forwarded-Host`, async () => {
      const res = await rawRequest(stack.gw.port, head('/public/x', '', host));
      assert.equal(res.status, 200, res.raw.slice(0, 200));
      assert.equal(stack.api.received[0]!.headers['x-forwarded-host'], host);
    });
  }

  test('property: isValidHost accepts every name[:port] of letters, digits, . - _ and refuses any value with another printable character', () => {
    const nameChar = fc.constantFrom(...'abcXYZ019.-_');
    fc.assert(
      fc.property(fc.string({ unit: nameChar, minLength: 1, maxLength: 30 }), fc.option(fc.integer({ min: 0, max: 65535 })), (name, port) => {
        assert.ok(isValidHost(port === null ? name : `${name}:${port}`));
      }),
    );
    fc.assert(
      fc.property(fc.string({ unit: nameChar, maxLength: 10 }), fc.constantFrom(...'/?#@"\'<>\\ ,;()&=+*!$%`{}|^~'), fc.string({ unit: nameChar, maxLength: 10 }), (a, bad, b) => {
        assert.equal(isValidHost(`${a}${bad}${b}`), false);
      }),
    );
  });
});
