import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { startupWarnings } from '../../src/config/warnings.js';
import { ensureBuilt, runCli, scratchDir } from '../helpers/cli.js';

const FILE = 'gateway.yaml';

function lineOf(text: string, needle: string): number {
  const i = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `fixture has no line containing ${needle}`);
  return i + 1;
}

function parse(text: string, env: Record<string, string> = {}): GatewayConfig {
  return parseConfig(text, { file: FILE, env });
}

function problems(text: string, env: Record<string, string> = {}): readonly string[] {
  try {
    parse(text, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('configuration was accepted');
}

function problem(text: string, env: Record<string, string> = {}): string {
  const all = problems(text, env);
  assert.equal(all.length, 1, `expected one problem, got:\n${all.join('\n')}`);
  return all[0]!;
}

const secretOf = (cfg: GatewayConfig): string | undefined => {
  const pt = cfg.routes[0]!.phantom_token;
  assert.ok(pt);
  return pt.client_secret;
};

const ROUTES = `routes:
  - path: /api
    upstream: http://127.0.0.1:3000
`;

describe('config: ${VAR} in flow style', () => {
  test("the README's own style works: listen: { host: 0.0.0.0, port: ${PORT} }", () => {
    const text = `listen: { host: 0.0.0.0, port: \${PORT} }
phantom_token: { introspection_endpoint: \${AS_URL}, client_id: c, client_secret: \${SECRET} }
${ROUTES}`;
    const cfg = parse(text, { PORT: '9123', AS_URL: 'https://as.example/introspect', SECRET: 's' });
    assert.deepEqual(cfg.listen, { host: '0.0.0.0', port: 9123 });
    const pt = cfg.routes[0]!.phantom_token;
    assert.ok(pt);
    assert.equal(pt.introspection_endpoint, 'https://as.example/introspect');
    assert.equal(pt.client_secret, 's');
  });

  test('in flow sequences, with text around it, and with a default holding , and :', () => {
    const text = `phantom_token: { introspection_endpoint: "https://as.example/i", client_id: c, client_secret: x }
trusted_proxies: [\${NET_A}, 10.\${B}.0.0/16]
routes: [{ path: /api, upstream: "http://\${HOST:-127.0.0.1}:3000" }]
minting: { copy_claims: [\${CLAIMS:-a,b:c}] }
`;
    const cfg = parse(text, { NET_A: '192.168.0.0/16', B: '7' });
    assert.deepEqual(cfg.trusted_proxies, ['192.168.0.0/16', '10.7.0.0/16']);
    assert.equal(cfg.routes[0]!.upstream, 'http://127.0.0.1:3000');
    // The default is one scalar, not two list items.
    assert.deepEqual(cfg.minting.copy_claims, ['a,b:c']);
  });

  test('plain, single- and double-quoted and block scalars all substitute', () => {
    for (const [spelling, expected] of [
      ['${S}', 'v'],
      ["'${S}'", 'v'],
      ['"${S}"', 'v'],
      ['"pre-${S}-post"', 'pre-v-post'],
      ['|-\n    ${S}\n    line2', 'v\nline2'],
    ] as const) {
      const text = `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: c\n  client_secret: ${spelling}\n${ROUTES}`;
      assert.equal(secretOf(parse(text, { S: 'v' })), expected, spelling);
    }
  });

  test('a key is never substituted: ${X} as a key stays as written and is an unknown option', () => {
    const text = `phantom_token: { introspection_endpoint: https://as.example/i, client_id: c, client_secret: s, \${X}: 1 }\n${ROUTES}`;
    assert.match(problem(text, { X: 'scope' }), /phantom_token\.\$\{X\}: unknown option/);
  });

  test('an unset variable in a flow map is reported with its line and field', () => {
    const text = `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: c\n  client_secret: s\nlisten: { host: 0.0.0.0, port: \${PORT} }\n${ROUTES}`;
    assert.equal(problem(text), `${FILE}:${lineOf(text, '${PORT}')}: listen.port: environment variable PORT is not set`);
  });

  // Whatever a variable holds stays one string: never YAML structure, never a second substitution.
  const spellings = [
    (v: string) => `phantom_token: { introspection_endpoint: https://as.example/i, client_id: c, client_secret: \${S} }\n${ROUTES}`.replace('${S}', v),
    (v: string) => `phantom_token: { introspection_endpoint: https://as.example/i, client_id: c, client_secret: "\${S}" }\n${ROUTES}`.replace('${S}', v),
    (v: string) => `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: c\n  client_secret: \${S}\n${ROUTES}`.replace('${S}', v),
    (v: string) => `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: c\n  client_secret: '\${S}'\n${ROUTES}`.replace('${S}', v),
  ];
  test('property: any value round-trips as the exact string, in flow and block style, quoted or not', () => {
    const tricky = fc.constantFrom('}', '{', ',', ': ', '\n', '#', '"', "'", '[', ']', '- ', '${S}', '${HOME}', '\\', ' ', '&a', '*a', '!!int ', '%');
    const value = fc.array(fc.oneof(tricky, fc.string({ minLength: 1, maxLength: 4 })), { minLength: 1, maxLength: 8 }).map((parts) => parts.join(''));
    fc.assert(
      fc.property(value, fc.constantFrom(...spellings.keys()), (v, k) => {
        const cfg = parse(spellings[k]!('${S}'), { S: v, HOME: '/root' });
        assert.equal(secretOf(cfg), v);
      }),
      { numRuns: 300 },
    );
  });
});

describe('config: a value from a variable names the variable in problems', () => {
  test('listen.port (from ${PORT}): must be a whole number, in flow style too', () => {
    const text = `listen: { host: 0.0.0.0, port: \${PORT} }\nphantom_token: { introspection_endpoint: https://as.example/i, client_id: c, client_secret: s }\n${ROUTES}`;
    assert.equal(problem(text, { PORT: 'abc' }), `${FILE}:1: listen.port (from \${PORT}): must be a whole number`);
  });

  test('an upstream from two variables names both, and never quotes their values', () => {
    const text = `phantom_token: { introspection_endpoint: https://as.example/i, client_id: c, client_secret: s }\nroutes:\n  - path: /api\n    upstream: \${SCHEME}://\${API}\n`;
    const p = problem(text, { SCHEME: 'ftp', API: 'secret-host' });
    assert.match(p, new RegExp(`^${FILE}:4: routes\\[0\\]\\.upstream \\(from \\$\\{SCHEME\\}, \\$\\{API\\}\\): `));
    assert.doesNotMatch(p, /secret-host/);
  });

  test('an inherited top-level value names its variable in the route problem too', () => {
    const text = `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: c\n  client_secret: s\n  timeout_ms: \${TIMEOUT}\n${ROUTES}`;
    assert.equal(problem(text, { TIMEOUT: 'soon' }), `${FILE}:5: phantom_token.timeout_ms (from \${TIMEOUT}): must be a whole number`);
  });
});

describe('config: warnings about references that will not be replaced', () => {
  const base = (extra: string) => `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: c\n  client_secret: s\n${extra}${ROUTES}`;

  test('$NAME without braces: a warning with the line, the field and how to write it', () => {
    const text = `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: $CLIENT_ID\n  client_secret: s\n${ROUTES}`;
    const cfg = parse(text, {});
    assert.deepEqual(
      startupWarnings(cfg).map((w) => w.message),
      [`${FILE}:3: phantom_token.client_id: contains $CLIENT_ID, which is not replaced: write \${CLIENT_ID} to read the environment variable`],
    );
  });

  test('a secret option is warned about without quoting any of it', () => {
    const text = `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: c\n  client_secret: pa$SWORD\n${ROUTES}`;
    const [w, ...rest] = startupWarnings(parse(text));
    assert.equal(rest.length, 0);
    assert.equal(w!.message, `${FILE}:4: phantom_token.client_secret: contains $ followed by a variable-like name, which is not replaced: write \${NAME} to read an environment variable`);
    assert.doesNotMatch(w!.message, /SWORD/);
  });

  test('an unclosed ${NAME: a warning naming what was written', () => {
    const text = base('').replace('client_id: c', 'client_id: ${CLIENT_ID');
    const w = startupWarnings(parse(text));
    assert.equal(w.length, 1);
    assert.equal(w[0]!.message, `${FILE}:3: phantom_token.client_id: contains "\${" that is not a variable reference ("\${CLIENT_ID"): only \${NAME} and \${NAME:-default} are replaced, with a closing } and a name of letters, digits and _`);
  });

  test('no warning for $ in ordinary values (OData $metadata), nor for a $NAME that came from a variable', () => {
    const text = `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: \${ID}\n  client_secret: s\nroutes:\n  - path: /odata/$metadata\n    upstream: http://127.0.0.1:3000\n`;
    const cfg = parse(text, { ID: '$HOME' });
    assert.deepEqual(startupWarnings(cfg), []);
    assert.equal(cfg.sourceWarnings, undefined);
  });

  const files = scratchDir();
  before(() => ensureBuilt());
  after(() => files.cleanup());
  test('--check prints the warnings on stderr and still exits 0 (real CLI)', async () => {
    const text = `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: $CLIENT_ID\n  client_secret: s\n${ROUTES}`;
    const file = files.write('warn.yaml', text);
    const r = await runCli(['--config', file, '--check'], {});
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${file}: configuration is valid (1 route(s))\n`);
    assert.equal(r.stderr, `phantom-gateway: warning: ${file}:3: phantom_token.client_id: contains $CLIENT_ID, which is not replaced: write \${CLIENT_ID} to read the environment variable\n`);
  });
});

describe('config: a YAML syntax error is one sentence: the first error, its line and column', () => {
  test('an unclosed flow sequence: one problem (the library reports several)', () => {
    const text = `a: b: c\nlisten:\n  port: [8080\n`;
    assert.equal(problem(text), `${FILE}:1: YAML syntax error at column 4: a mapping cannot start on the line of its key (\`a: b: c\`); put it on the next line, indented, or quote the value`);
  });

  test('a tab used for indentation', () => {
    assert.equal(problem('listen:\n\tport: 1\n'), `${FILE}:2: YAML syntax error at column 1: a tab is used for indentation; YAML indents with spaces only`);
  });

  test('the column counts in the file as written, after a ${VAR} on the same line', () => {
    const p = problem('listen: { host: ${HOST}, port: @1 }\n');
    assert.equal(p, `${FILE}:1: YAML syntax error at column 32: Plain value cannot start with reserved character @`);
  });

  test('a missing quote: the library message, once', () => {
    assert.equal(problem('listen:\n  host: "x\n  port: 1\n'), `${FILE}:4: YAML syntax error at column 1: Missing closing "quote`);
  });
});

describe("config: hints for other gateways' option names (Kong, APISIX, Curity's NGINX module)", () => {
  const text = (block: string, top = '') => `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: c\n  client_secret: s\n${block}${top}${ROUTES}`;
  for (const [option, hint] of [
    ['introspection_url: https://as.example/i', '(did you mean "introspection_endpoint"?)'],
    ['introspection_endpoint_auth_method: client_secret_post', '(did you mean "client_auth_method"?)'],
    ['ssl_verify: false', '(did you mean "verify_ssl"?)'],
    ['ttl: 60', '(did you mean "token_cache_seconds"?)'],
    ['timeout: 3', '(did you mean "timeout_ms"? in milliseconds)'],
    ['discovery: https://as.example/.well-known/openid-configuration', '(did you mean "issuer"? the issuer\'s URL: its discovery document is read from issuer + /.well-known/...)'],
    ['hide_credentials: true', "(not needed: on a protected route the opaque token never reaches the upstream (a JWT replaces it), and an open route drops the client's Authorization unless forward_authorization: true)"],
    ['bearer_only: true', '(not needed: the gateway only accepts bearer tokens and never redirects to a login page)'],
    ['token_signing_alg_values_expected: [RS256]', "(not needed: minted JWTs are signed with minting.signing_key_file's key (its type picks the algorithm); signed introspection answers are checked with jwks_uri)"],
  ] as const) {
    test(`phantom_token.${option.split(':')[0]}: ${hint}`, () => {
      const t = text(`  ${option}\n`);
      assert.equal(problem(t), `${FILE}:5: phantom_token.${option.split(':')[0]}: unknown option ${hint}`);
    });
  }

  test('a phantom token option outside its block, or a foreign name at the top level, points into the block', () => {
    const all = problems(text('', 'client_secret: s\nintrospection_url: https://as.example/i\n'));
    assert.deepEqual(all, [
      `${FILE}:5: client_secret: unknown option (did you mean "phantom_token.client_secret"? the phantom token options go in the phantom_token block, at the top level or on a route)`,
      `${FILE}:6: introspection_url: unknown option (did you mean "phantom_token.introspection_endpoint"?)`,
    ]);
  });

  test('foreign names are not hinted in unrelated blocks (upstream.timeout)', () => {
    assert.equal(problem(text('', 'upstream:\n  timeout: 3\n')), `${FILE}:6: upstream.timeout: unknown option`);
  });
});

describe('config: the gateway logs the file\'s warnings at start', () => {
  test('createGuards logs each one as a warn line with its option, never the value of a secret', async () => {
    const { Writable } = await import('node:stream');
    const { createGuards } = await import('../../src/core/guards.js');
    const { createLogger } = await import('../../src/observability/logger.js');
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const text = `phantom_token:\n  introspection_endpoint: https://as.example/i\n  client_id: $CLIENT_ID\n  client_secret: pa$SWORD\n${ROUTES}`;
    const guards = createGuards(parse(text), { logger: createLogger('info', sink) });
    await guards.close();
    const warned = lines.filter((l) => l.level === 40 || l.level === 'warn');
    assert.deepEqual(
      warned.map((l) => [l.option, l.msg]),
      [
        ['phantom_token.client_id', `${FILE}:3: phantom_token.client_id: contains $CLIENT_ID, which is not replaced: write \${CLIENT_ID} to read the environment variable`],
        ['phantom_token.client_secret', `${FILE}:4: phantom_token.client_secret: contains $ followed by a variable-like name, which is not replaced: write \${NAME} to read an environment variable`],
      ],
    );
    assert.doesNotMatch(JSON.stringify(lines), /SWORD/);
  });
});
