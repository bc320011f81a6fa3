import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';

const FILE = 'gateway.yaml';

/** 1-based line of the first line of `text` containing `needle` (so tests do not hard-code line numbers). */
function lineOf(text: string, needle: string): number {
  const i = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `fixture has no line containing ${needle}`);
  return i + 1;
}

function parse(text: string, env: Record<string, string> = {}): GatewayConfig {
  return parseConfig(text, { file: FILE, env });
}

/** The problems reported for `text`; fails if it parses. */
function problems(text: string, env: Record<string, string> = {}): readonly string[] {
  try {
    parse(text, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.message, `invalid configuration:\n  ${err.problems.join('\n  ')}`);
    return err.problems;
  }
  assert.fail('configuration was accepted');
}

/** The one problem reported for `text`. */
function problem(text: string, env: Record<string, string> = {}): string {
  const all = problems(text, env);
  assert.equal(all.length, 1, `expected one problem, got:\n${all.join('\n')}`);
  return all[0]!;
}

const BASE = `phantom_token:
  introspection_endpoint: https://login.example.com/oauth/v2/oauth-introspect
  client_id: introspection-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: http://127.0.0.1:3000
`;

describe('config: defaults', () => {
  test('a minimal file is completed with every documented default', () => {
    const cfg = parse(`${BASE}  - path: /public
    upstream: http://127.0.0.1:3001/v1
    phantom_token: false
`);
    assert.deepEqual(cfg, {
      listen: { host: '0.0.0.0', port: 8080 },
      upstream: { connect_timeout_ms: 5000, response_timeout_ms: 30_000, idle_timeout_ms: 30_000, connections: 128, verify_ssl: true },
      server: {
        max_headers: 100,
        max_header_bytes: 16384,
        headers_timeout_ms: 10_000,
        request_timeout_ms: 60_000,
        keep_alive_timeout_ms: 5000,
        shutdown_timeout_ms: 10_000,
        send_timeout_ms: 60_000,
        max_body_bytes: 10 * 1024 * 1024,
        body_buffer_bytes: 65_536,
        min_body_rate_bytes: 240,
        min_body_rate_window_ms: 5000,
        underscores_in_headers: false,
      },
      trusted_proxies: [],
      trust_client_cert_header: false,
      cache: { max_entries: 10_000, max_negative_entries: 10_000, max_dpop_proofs: 100_000 },
      workers: 1,
      log: { level: 'info', access_log: true, access_log_sub: false },
      minting: { published_key_files: [], max_lifetime_seconds: 300, copy_claims: [] },
      routes: [
        {
          path: '/api',
          upstream: 'http://127.0.0.1:3000',
          request_buffering: true,
          forward_authorization: false,
          body_idle_timeout_ms: 10_000,
          phantom_token: {
            introspection_endpoint: 'https://login.example.com/oauth/v2/oauth-introspect',
            client_id: 'introspection-client',
            client_secret: 's3cret',
            token_cache_seconds: 300,
            scope: '',
            verify_ssl: true,
            negative_cache_seconds: 10,
            timeout_ms: 5000,
            max_token_length: 4096,
            max_answer_bytes: 65536,
            connections: 32,
            max_queued: 1024,
            max_queued_per_client: 32,
            introspection_response: 'jwt',
            client_auth_method: 'client_secret_basic',
            access_tokens_only: true,
            scheme: 'Bearer',
            forward_client_cert: false,
            dpop: { algorithms: ['ES256', 'EdDSA', 'Ed25519', 'PS256', 'RS256'], max_age_seconds: 60, clock_skew_seconds: 5, nonce: false, forward: 'dpop' },
          },
        },
        { path: '/public', upstream: 'http://127.0.0.1:3001/v1', request_buffering: true, body_idle_timeout_ms: 10_000, forward_authorization: false, phantom_token: false },
      ],
    });
  });

  test('a partly given section keeps the defaults of the options it leaves out', () => {
    const cfg = parse(`${BASE}listen:\n  port: 9000\nserver:\n  max_headers: 50\n`);
    assert.deepEqual(cfg.listen, { host: '0.0.0.0', port: 9000 });
    assert.equal(cfg.server.max_headers, 50);
    assert.equal(cfg.server.shutdown_timeout_ms, 10_000);
  });

  test('the top-level phantom_token block is only defaults: the config has none left after merging', () => {
    const cfg = parse(BASE) as unknown as Record<string, unknown>;
    assert.equal('phantom_token' in cfg, false);
  });
});

describe('config: required options', () => {
  test('a protected route without client_id names the option, the route and its line', () => {
    const text = BASE.replace('  client_id: introspection-client\n', '');
    const p = problem(text);
    assert.match(p, new RegExp(`^${FILE}:${lineOf(text, '- path: /api')}: phantom_token\\.client_id is required for protected route routes\\[0\\] \\("/api"\\)`));
    assert.match(p, /phantom_token: false/, 'the message says how to leave a route unprotected');
  });

  test('each protected route missing an option is reported, unprotected ones are not', () => {
    const text = `phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: c
routes:
  - path: /a
    upstream: http://127.0.0.1:3000
  - path: /open
    upstream: http://127.0.0.1:3000
    phantom_token: false
  - path: /b
    upstream: http://127.0.0.1:3000
`;
    const all = problems(text);
    assert.equal(all.length, 2, all.join('\n'));
    assert.match(all[0]!, new RegExp(`^${FILE}:${lineOf(text, '- path: /a')}: phantom_token\\.client_secret is required for protected route routes\\[0\\] \\("/a"\\)`));
    assert.match(all[1]!, new RegExp(`^${FILE}:${lineOf(text, '- path: /b')}: phantom_token\\.client_secret is required for protected route routes\\[2\\] \\("/b"\\)`));
  });

  test('a required option given only in the route is enough', () => {
    const text = BASE.replace('  client_id: introspection-client\n', '') + '    phantom_token:\n      client_id: route-client\n';
    const pt = parse(text).routes[0]!.phantom_token;
    assert.ok(pt);
    assert.equal(pt.client_id, 'route-client');
  });

  test('routes: missing, not a list, or empty', () => {
    assert.equal(problem('listen: { port: 8080 }\n'), `${FILE}:1: routes: is required`);
    assert.equal(problem('routes: /api\n'), `${FILE}:1: routes: must be a list of routes`);
    assert.equal(problem('routes: []\n'), `${FILE}:1: routes: must have at least one route`);
  });

  test('an empty file says what is missing', () => {
    assert.equal(problem(''), `${FILE}: routes: is required`);
  });

  test('a value of the wrong type is reported as such, not as missing', () => {
    const text = BASE.replace('client_id: introspection-client', 'client_id: 5') + 'listen:\n  port: eighty\n';
    assert.deepEqual(problems(text), [
      `${FILE}:${lineOf(text, 'client_id: 5')}: phantom_token.client_id: must be a string`,
      `${FILE}:${lineOf(text, 'port: eighty')}: listen.port: must be a whole number`,
    ]);
  });

  test('numbers out of range name the bound', () => {
    const text = `${BASE}listen:\n  port: 70000\n`;
    assert.equal(problem(text), `${FILE}:${lineOf(text, 'port: 70000')}: listen.port: must be at most 65535`);
  });

  test('an enum lists its allowed values', () => {
    const text = `${BASE}log:\n  level: verbose\n`;
    assert.equal(
      problem(text),
      `${FILE}:${lineOf(text, 'level: verbose')}: log.level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent"`,
    );
  });
});

describe('config: misspelt keys', () => {
  test('misspelt phantom_token options: each named with its line and the right name', () => {
    const text = BASE.replace('  client_secret: s3cret\n', '  client_secret: s3cret\n  token_cache_secs: 60\n  scop: read\n');
    assert.deepEqual(problems(text), [
      `${FILE}:${lineOf(text, 'token_cache_secs')}: phantom_token.token_cache_secs: unknown option (did you mean "token_cache_seconds"?)`,
      `${FILE}:${lineOf(text, 'scop:')}: phantom_token.scop: unknown option (did you mean "scope"?)`,
    ]);
  });

  test('misspelt keys in other sections and at the top level', () => {
    const text = `${BASE}listen:\n  prot: 8080\nupstreams:\n  connections: 4\n`;
    assert.deepEqual(problems(text), [
      `${FILE}:${lineOf(text, 'prot:')}: listen.prot: unknown option (did you mean "port"?)`,
      `${FILE}:${lineOf(text, 'upstreams:')}: upstreams: unknown option (did you mean "upstream"?)`,
    ]);
  });

  test('a key with no near match gets no guess', () => {
    const text = `${BASE}  - path: /x\n    upstream: http://127.0.0.1:3000\n    colour: blue\n`;
    assert.equal(problem(text), `${FILE}:${lineOf(text, 'colour:')}: routes[1].colour: unknown option`);
  });

  test("a misspelt key inside a route's phantom_token override is reported with its own line", () => {
    const text = `${BASE}    phantom_token:\n      scope: read\n      token_cache_second: 30\n`;
    assert.equal(
      problem(text),
      `${FILE}:${lineOf(text, 'token_cache_second:')}: routes[0].phantom_token.token_cache_second: unknown option (did you mean "token_cache_seconds"?)`,
    );
  });

  test('problems at the top level and in route overrides are reported in the same run, in file order', () => {
    const text = `phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: c
  client_secret: s
  scop: read
routes:
  - path: /api
    upstream: http://127.0.0.1:3000
    phantom_token:
      verify_ssl: maybe
  - path: /b
    upstream: http://127.0.0.1:3000/?x
    phantom_token:
      timeout: 100
`;
    const all = problems(text);
    assert.equal(all.length, 4, all.join('\n'));
    assert.equal(all[0], `${FILE}:${lineOf(text, 'scop:')}: phantom_token.scop: unknown option (did you mean "scope"?)`);
    assert.equal(all[1], `${FILE}:${lineOf(text, 'verify_ssl: maybe')}: routes[0].phantom_token.verify_ssl: must be true or false`);
    assert.match(all[2]!, new RegExp(`^${FILE}:${lineOf(text, '3000/?x')}: routes\\[1\\]\\.upstream: must not contain a query string`));
    assert.match(all[3]!, new RegExp(`^${FILE}:${lineOf(text, 'timeout: 100')}: routes\\[1\\]\\.phantom_token\\.timeout: unknown option`));
  });
});

describe('config: URLs', () => {
  // One message per rule: the user learns which one failed.
  for (const [bad, why] of [
    ['not a url', 'is not a URL (the introspection endpoint URL must be absolute, such as https://host/path)'],
    ['', 'is not a URL (the introspection endpoint URL must be absolute, such as https://host/path)'],
    ['ftp://as.example/introspect', 'must be an http:// or https:// introspection endpoint URL, not ftp://'],
    ['https://user:pw@as.example/introspect', 'must not contain credentials (user:password@): give them as client_id and client_secret'],
    ['https://as.example/introspect#x', 'must not have a fragment (#...): it is never sent'],
  ] as const) {
    test(`introspection_endpoint ${JSON.stringify(bad)} is refused with its line and the rule it breaks`, () => {
      const text = BASE.replace('https://login.example.com/oauth/v2/oauth-introspect', JSON.stringify(bad));
      assert.equal(problem(text), `${FILE}:${lineOf(text, 'introspection_endpoint')}: phantom_token.introspection_endpoint: ${why}`);
    });
  }

  for (const [bad, why] of [
    ['127.0.0.1:3000', 'is not a URL (the upstream URL must be absolute, such as https://host/path)'],
    ['ws://127.0.0.1:3000', 'must be an http:// or https:// upstream URL, not ws://'],
    ['http://u:p@127.0.0.1:3000', 'must not contain credentials (user:password@)'],
    ['http://127.0.0.1:3000/#top', 'must not have a fragment (#...): it is never sent'],
    ['http://127.0.0.1:3000/?a=1', "must not contain a query string (the client's query string is forwarded)"],
  ] as const) {
    test(`upstream ${JSON.stringify(bad)} is refused with its line and the rule it breaks`, () => {
      const text = BASE.replace('http://127.0.0.1:3000', bad);
      assert.equal(problem(text), `${FILE}:${lineOf(text, 'upstream:')}: routes[0].upstream: ${why}`);
    });
  }

  for (const withQuery of ['http://127.0.0.1:3000/v1?tenant=a', 'http://127.0.0.1:3000/?']) {
    test(`an upstream with a query string (${withQuery}) is refused: the client's query is forwarded`, () => {
      const text = BASE.replace('http://127.0.0.1:3000', withQuery);
      assert.equal(
        problem(text),
        `${FILE}:${lineOf(text, 'upstream:')}: routes[0].upstream: must not contain a query string (the client's query string is forwarded)`,
      );
    });
  }

  test('an upstream with a path is accepted as written', () => {
    assert.equal(parse(BASE.replace('http://127.0.0.1:3000', 'https://api.internal:8443/v2/')).routes[0]!.upstream, 'https://api.internal:8443/v2/');
  });
});

describe('config: ${VAR} substitution', () => {
  const withVars = `phantom_token:
  introspection_endpoint: \${AS_URL:-https://as.example/introspect}
  client_id: introspection-client
  client_secret: \${INTROSPECTION_CLIENT_SECRET}
listen:
  port: \${PORT}
routes:
  - path: /api
    upstream: http://\${API_HOST:-127.0.0.1}:3000
`;

  test('variables are replaced from the environment; ${VAR:-default} falls back when unset', () => {
    const cfg = parse(withVars, { INTROSPECTION_CLIENT_SECRET: 'from-env', PORT: '9123' });
    const pt = cfg.routes[0]!.phantom_token;
    assert.ok(pt);
    assert.equal(pt.client_secret, 'from-env');
    assert.equal(pt.introspection_endpoint, 'https://as.example/introspect');
    assert.equal(cfg.routes[0]!.upstream, 'http://127.0.0.1:3000');
  });

  test('${PORT} gives a number where a number is expected', () => {
    const cfg = parse(withVars, { INTROSPECTION_CLIENT_SECRET: 'x', PORT: '9123' });
    assert.equal(cfg.listen!.port, 9123);
    assert.equal(typeof cfg.listen!.port, 'number');
  });

  test('a set variable wins over the default; an empty one takes the default', () => {
    const cfg = parse(withVars, { INTROSPECTION_CLIENT_SECRET: 'x', PORT: '1', AS_URL: 'https://other.example/i', API_HOST: '' });
    const pt = cfg.routes[0]!.phantom_token;
    assert.ok(pt);
    assert.equal(pt.introspection_endpoint, 'https://other.example/i');
    assert.equal(cfg.routes[0]!.upstream, 'http://127.0.0.1:3000');
  });

  test('an unset variable names the variable, the field and the line; all are reported', () => {
    assert.deepEqual(problems(withVars), [
      `${FILE}:${lineOf(withVars, 'INTROSPECTION_CLIENT_SECRET')}: phantom_token.client_secret: environment variable INTROSPECTION_CLIENT_SECRET is not set`,
      `${FILE}:${lineOf(withVars, '${PORT}')}: listen.port: environment variable PORT is not set`,
    ]);
  });

  test('an unset variable does not hide the other problems of the file, nor adds one about its emptied value', () => {
    const text = `${BASE.replace('client_secret: s3cret', 'client_secret: ${SECRET}')}listen:\n  prot: 8080\n`;
    assert.deepEqual(problems(text), [
      `${FILE}:${lineOf(text, '${SECRET}')}: phantom_token.client_secret: environment variable SECRET is not set`,
      `${FILE}:${lineOf(text, 'prot:')}: listen.prot: unknown option (did you mean "port"?)`,
    ]);
  });

  test('a variable inside a route is located by its index', () => {
    const text = BASE.replace('http://127.0.0.1:3000', '${UPSTREAM}');
    assert.equal(problem(text), `${FILE}:${lineOf(text, '${UPSTREAM}')}: routes[0].upstream: environment variable UPSTREAM is not set`);
  });

  test('a substituted value that is not a number is reported against the field', () => {
    const text = `${BASE}listen:\n  port: \${PORT}\n`;
    assert.equal(problem(text, { PORT: 'http' }), `${FILE}:${lineOf(text, '${PORT}')}: listen.port (from \${PORT}): must be a whole number`);
  });

  test('substituted values are taken literally: no YAML, no second round of substitution', () => {
    const text = BASE.replace('client_secret: s3cret', 'client_secret: ${SECRET}');
    const secret = 'a: [b] #c ${HOME}';
    const pt = parse(text, { SECRET: secret, HOME: '/root' }).routes[0]!.phantom_token;
    assert.ok(pt);
    assert.equal(pt.client_secret, secret);
  });

  test('problems never echo the value of a substituted secret', () => {
    const text = BASE.replace('client_secret: s3cret', 'client_secret: ${SECRET}') + 'listen:\n  port: ${SECRET}\n';
    const all = problems(text, { SECRET: 'hunter2-very-secret' });
    assert.equal(all.length, 1);
    assert.doesNotMatch(all[0]!, /hunter2/);
  });
});

describe('config: routes', () => {
  test('duplicate route paths: the second is named with its line and the first', () => {
    const text = `${BASE}  - path: /other\n    upstream: http://127.0.0.1:3000\n  - path: /api\n    upstream: http://127.0.0.1:4000\n`;
    const dupLine = text.split('\n').findLastIndex((l) => l.includes('- path: /api')) + 1;
    assert.equal(problem(text), `${FILE}:${dupLine}: routes[2].path: duplicates routes[0].path "/api"`);
  });

  test('route paths that differ only by case: refused, since the proxy would never reach one of them', () => {
    const text = `${BASE}  - path: /API\n    upstream: http://127.0.0.1:4000\n    phantom_token: false\n`;
    assert.equal(
      problem(text),
      `${FILE}:${lineOf(text, '- path: /API')}: routes[1].path: "/API" differs from routes[0].path "/api" only by case; ` +
        'requests whose route depends on case are refused, so one of them could never be reached',
    );
  });

  test('request body options of a route: streaming opt-in with its idle bound, and its own size bound', () => {
    const cfg = parse('routes:\n  - path: /up\n    upstream: http://127.0.0.1:3000\n    phantom_token: false\n    request_buffering: false\n    body_idle_timeout_ms: 2000\n    max_body_bytes: 1073741824\n');
    assert.deepEqual(cfg.routes, [
      { path: '/up', upstream: 'http://127.0.0.1:3000', request_buffering: false, body_idle_timeout_ms: 2000, max_body_bytes: 1073741824, forward_authorization: false, phantom_token: false },
    ]);
    assert.throws(() => parse('routes:\n  - path: /up\n    upstream: http://127.0.0.1:3000\n    phantom_token: false\n    request_buffering: maybe\n'), /request_buffering: must be true or false/);
    assert.throws(() => parse('routes:\n  - path: /up\n    upstream: http://127.0.0.1:3000\n    phantom_token: false\n    body_idle_timeout_ms: 5\n'), /body_idle_timeout_ms: must be at least 100/);
  });

  test('routes with phantom_token: false need no phantom_token options at all', () => {
    const cfg = parse('routes:\n  - path: /\n    upstream: http://127.0.0.1:3000\n    phantom_token: false\n');
    assert.deepEqual(cfg.routes, [{ path: '/', upstream: 'http://127.0.0.1:3000', request_buffering: true, body_idle_timeout_ms: 10_000, forward_authorization: false, phantom_token: false }]);
  });

  test('per-route overrides merge over the top-level block, which stays the default for other routes', () => {
    const text = `phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: shared
  client_secret: shared-secret
  scope: read
  token_cache_seconds: 60
routes:
  - path: /api
    upstream: http://127.0.0.1:3000
  - path: /admin
    upstream: http://127.0.0.1:3000
    phantom_token:
      scope: admin write
      client_id: admin-client
      client_secret: admin-secret
      timeout_ms: 1500
  - path: /explicit
    upstream: http://127.0.0.1:3000
    phantom_token: true
`;
    const [api, admin, explicit] = parse(text).routes;
    assert.ok(api?.phantom_token && admin?.phantom_token && explicit?.phantom_token);
    assert.deepEqual(
      { ...admin.phantom_token },
      {
        ...api.phantom_token,
        scope: 'admin write',
        client_id: 'admin-client',
        client_secret: 'admin-secret',
        timeout_ms: 1500,
      },
    );
    assert.equal(admin.phantom_token.token_cache_seconds, 60, 'inherited from the top level');
    assert.equal(api.phantom_token.scope, 'read');
    assert.equal(api.phantom_token.client_id, 'shared');
    assert.equal(api.phantom_token.timeout_ms, 5000, 'the default');
    assert.deepEqual(explicit.phantom_token, api.phantom_token);
  });

  test('an invalid override value is reported against the route', () => {
    const text = `${BASE}    phantom_token:\n      token_cache_seconds: -1\n`;
    assert.equal(problem(text), `${FILE}:${lineOf(text, 'token_cache_seconds: -1')}: routes[0].phantom_token.token_cache_seconds: must be at least 0`);
  });

  test('phantom_token: false is a route option only', () => {
    const text = 'phantom_token: false\nroutes:\n  - path: /\n    upstream: http://127.0.0.1:3000\n    phantom_token: false\n';
    assert.match(problem(text), new RegExp(`^${FILE}:1: phantom_token: must be a mapping of phantom token options`));
  });

  for (const bad of ['api', '', '/a/../b', '/..', '/a/./b', '/a//b', '/a?x=1', '/a#f', '/a%2e%2e', '/a\\b', '/a b']) {
    test(`route path ${JSON.stringify(bad)} is refused with its line`, () => {
      const text = BASE.replace('path: /api', `path: ${JSON.stringify(bad)}`);
      const p = problem(text);
      assert.ok(p.startsWith(`${FILE}:${lineOf(text, '- path:')}: routes[0].path: must `), p);
    });
  }

  for (const good of ['/', '/api/v1', '/a.b', '/v1.0/items-x_y~z', '/api/']) {
    test(`route path ${JSON.stringify(good)} is accepted`, () => {
      assert.equal(parse(BASE.replace('path: /api', `path: ${good}`)).routes[0]!.path, good);
    });
  }
});

describe('config: YAML', () => {
  test('a syntax error reports its line', () => {
    const text = `${BASE}listen:\n  port: [8080\n  host: x\n`;
    const p = problem(text);
    assert.match(p, new RegExp(`^${FILE}:(\\d+): YAML syntax error at column \\d+: `));
    const line = Number(/:(\d+):/.exec(p)![1]);
    assert.ok(line >= lineOf(text, 'port: [8080') && line <= lineOf(text, 'host: x') + 1, p);
  });

  test('a duplicated key is a syntax error with the line of the second', () => {
    const text = BASE.replace('  client_secret: s3cret\n', '  client_secret: s3cret\n  client_id: again\n');
    assert.equal(problem(text), `${FILE}:${lineOf(text, 'client_id: again')}: YAML syntax error at column 3: the key client_id appears twice in the same mapping`);
  });

  test('the file name given is the one reported; without one, "config"', () => {
    assert.throws(() => parseConfig('routes: []\n', { env: {} }), (e: ConfigError) => e.problems[0] === 'config:1: routes: must have at least one route');
  });
});

describe('config: the result is deeply frozen', () => {
  test('no object in the configuration can be changed', () => {
    const cfg = parse(`${BASE}trusted_proxies: [10.0.0.0/8]\n  `);
    const route = cfg.routes[0]!;
    assert.ok(route.phantom_token);
    for (const o of [cfg, cfg.listen, cfg.upstream, cfg.server, cfg.cache, cfg.log, cfg.trusted_proxies, cfg.routes, route, route.phantom_token]) {
      assert.ok(Object.isFrozen(o));
    }
    // ESM is strict mode: writes to frozen objects throw.
    assert.throws(() => {
      (cfg.listen as { port: number }).port = 1;
    }, TypeError);
    assert.throws(() => {
      (route.phantom_token as { client_secret: string }).client_secret = 'x';
    }, TypeError);
    assert.throws(() => (cfg.routes as unknown[]).push({}), TypeError);
    assert.throws(() => (cfg.trusted_proxies as string[]).push('0.0.0.0/0'), TypeError);
  });

  test('two parses share no mutable state (defaults are not one shared object)', () => {
    const a = parse(BASE);
    const b = parse(BASE);
    assert.notEqual(a.listen, b.listen);
    assert.notEqual(a.trusted_proxies, b.trusted_proxies);
    assert.notEqual(a.routes[0]!.phantom_token, b.routes[0]!.phantom_token);
  });
});

describe('config: workers', () => {
  const base = 'routes: [{ path: /x, upstream: "http://127.0.0.1:1", phantom_token: false }]\n';
  test('a number of workers, or auto for one per core', async () => {
    const { availableParallelism } = await import('node:os');
    assert.equal(parseConfig(`${base}workers: 3\n`).workers, 3);
    assert.equal(parseConfig(`${base}workers: auto\n`).workers, availableParallelism());
    assert.equal(parseConfig(`${base}workers: \${W}\n`, { env: { W: '2' } }).workers, 2);
  });
  test('zero or a word other than auto is refused with the line', () => {
    assert.throws(() => parseConfig(`${base}workers: 0\n`), /config:2: workers: must be at least 1/);
    assert.throws(() => parseConfig(`${base}workers: many\n`), /config:2: workers: must be a whole number/);
  });
});

describe('config: checks that keep a valid-looking file from failing at start or at the first request', () => {
  const pt = 'phantom_token: { introspection_endpoint: "https://as.test/introspect", client_id: a, client_secret: b }\n';
  const route = 'routes: [{ path: /api, upstream: "http://127.0.0.1:3000" }]\n';
  test('a scope written as a YAML block scalar is trimmed', () => {
    const cfg = parseConfig(`phantom_token:\n  introspection_endpoint: "https://as.test/i"\n  client_id: a\n  client_secret: b\n  scope: |\n    read write\n${route}`);
    const p = cfg.routes[0]!.phantom_token;
    assert.ok(p !== false);
    assert.equal(p.scope, 'read write');
  });
  test('a scope with characters no scope token may hold (quote, backslash, control) is refused with its line', () => {
    assert.throws(() => parseConfig(`${pt}${route}`.replace('client_secret: b', 'client_secret: b, scope: "read \\"x\\""')), /config:1: phantom_token\.scope: must be scopes separated by single spaces/);
    assert.throws(() => parseConfig(`${pt}${route}`.replace('client_secret: b', 'client_secret: b, scope: "read\\twrite"')), /phantom_token\.scope/);
  });
  test('headers_timeout_ms larger than request_timeout_ms is refused (Node would refuse to start)', () => {
    assert.throws(() => parseConfig(`${pt}${route}server: { headers_timeout_ms: 70000, request_timeout_ms: 60000 }\n`), /config:3: server\.headers_timeout_ms: headers_timeout_ms must not be larger than request_timeout_ms/);
  });
  test('a ca_file that is a directory is refused at the config check (it used to pass, then fail in the gateway)', () => {
    const dir = tmpdir();
    assert.throws(
      () => parseConfig(`phantom_token:\n  introspection_endpoint: "https://as.test/i"\n  client_id: a\n  client_secret: b\n  ca_file: ${dir}\n${route}`),
      /config:5: phantom_token\.ca_file: cannot read ".*" \(EISDIR\)/,
    );
  });
  test('a server.body_temp_dir that is missing or not a directory is refused at the config check, with its line', () => {
    assert.throws(() => parseConfig(`${pt}${route}server:\n  body_temp_dir: /nonexistent/bodies\n`), /config:\d+: server\.body_temp_dir: cannot write in "\/nonexistent\/bodies" \(ENOENT\)/);
    const file = fileURLToPath(import.meta.url);
    assert.throws(() => parseConfig(`${pt}${route}server:\n  body_temp_dir: ${file}\n`), /server\.body_temp_dir: cannot write in ".*" \(ENOTDIR\)/);
    assert.equal(parseConfig(`${pt}${route}server:\n  body_temp_dir: ${tmpdir()}\n`).server.body_temp_dir, tmpdir());
  });
  test('an unreadable ca_file is refused with its line', () => {
    assert.throws(
      () => parseConfig(`phantom_token:\n  introspection_endpoint: "https://as.test/i"\n  client_id: a\n  client_secret: b\n  ca_file: /nonexistent/ca.pem\n${route}`),
      /config:5: phantom_token\.ca_file: cannot read "\/nonexistent\/ca\.pem" \(ENOENT\)/,
    );
  });
  for (const bad of ['http://127.0.0.1:3000/v1/../v2', 'http://127.0.0.1:3000/a b', 'http://127.0.0.1:3000/v1//x', 'http://127.0.0.1:3000/./v1']) {
    test(`an upstream path that is not normalized is refused: ${bad}`, () => {
      assert.throws(() => parseConfig(`${pt}routes: [{ path: /api, upstream: "${bad}" }]\n`), /routes\[0\]\.upstream: must have a normalized path/);
    });
  }
  test('a normalized upstream path with percent-encoding is accepted', () => {
    assert.equal(parseConfig(`${pt}routes: [{ path: /api, upstream: "http://127.0.0.1:3000/v1/a%20b" }]\n`).routes[0]!.upstream, 'http://127.0.0.1:3000/v1/a%20b');
  });
});
