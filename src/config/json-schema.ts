import { z } from 'zod';
import { configSchema } from './schema.js';

/** The schema's `$id`: a name, not a location (editors are pointed at a saved copy). */
export const SCHEMA_ID = 'urn:phantom-gateway:config';

type Json = Record<string, unknown>;

/** `${NAME}` or `${NAME:-default}` somewhere in a value: replaced at load, so any shape may be written this way. */
const VARIABLE_STRING: Json = { type: 'string', pattern: '\\$\\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\\}' };

/*
 * Descriptions of the main options, by dotted path (`[]` for list items).
 * The structure itself comes from the zod schema, so options added there
 * appear without an entry here.
 */
const DESCRIPTIONS: Readonly<Record<string, string>> = {
  '': 'phantom-gateway configuration. ${VAR} and ${VAR:-default} in values are replaced from the environment.',
  listen: 'The reverse proxy listener (default 0.0.0.0:8080; absent with forward_auth set: no proxy).',
  phantom_token: 'Phantom token options shared by every protected route (Curity plugin names).',
  'phantom_token.introspection_endpoint': 'RFC 7662 introspection endpoint (or give issuer to discover it).',
  'phantom_token.issuer': "The authorization server's issuer: discovery finds the endpoints; iss is checked.",
  'phantom_token.introspection_response': 'How the authorization server answers: jwt (Curity), jwt_claim (Keycloak), json, token_introspection_jwt (RFC 9701) or auto.',
  'phantom_token.client_id': 'Client the gateway introspects as.',
  'phantom_token.client_secret': 'Its secret; better ${VAR} or client_secret_file.',
  'phantom_token.scope': 'Space-separated scopes every token must have.',
  'phantom_token.token_cache_seconds': 'Longest time an introspection answer is cached (also bounded by exp and Cache-Control).',
  'phantom_token.timeout_ms': 'Timeout of one introspection call, in milliseconds.',
  'phantom_token.dpop': 'How DPoP proofs are checked (algorithms, max_age_seconds, clock_skew_seconds, nonce) and what the upstream gets (forward: dpop or bearer); public_base_url is the URL clients address.',
  'phantom_token.forward_client_cert': "Send the client's TLS certificate upstream in RFC 9440 Client-Cert.",
  routes: 'Path prefixes and their upstreams; the longest matching prefix wins.',
  'routes[].path': 'Path prefix, starting with /.',
  'routes[].upstream': 'Where requests go (http:// or https://, no query string); a path replaces the prefix.',
  'routes[].phantom_token': 'false: an open route (no token needed); a mapping: overrides of the top-level phantom_token block.',
  'routes[].forward_authorization': "Open routes only: pass the client's Authorization to the upstream (default false: removed).",
  upstream: 'Connections to upstreams.',
  server: 'Limits and timeouts of client connections.',
  trusted_proxies: 'Peers (IP or CIDR) whose X-Forwarded-* headers are believed.',
  cache: 'Bounds of the token cache.',
  workers: 'Processes serving requests: a number, or auto for one per core.',
  log: 'Logging.',
  minting: 'Signing of the JWTs the gateway mints (answers without a JWT).',
  forward_auth: 'The forward-auth decision listener (NGINX auth_request, Caddy, Traefik, APISIX, Envoy); off when absent.',
};

/**
 * The JSON Schema (draft 2020-12) of the configuration file, generated from
 * the zod schema as the file is written (`io: 'input'`: defaults optional),
 * widened where the loader accepts more than the parsed type: numbers and
 * booleans written as strings or `${VAR}`, `workers: auto`, `forward_auth:`
 * left empty, and a route's `phantom_token: false`.
 */
export function configJsonSchema(version?: string): Json {
  const generated = z.toJSONSchema(configSchema, { io: 'input', target: 'draft-2020-12', unrepresentable: 'any' }) as Json;
  const { $schema: _s, ...body } = generated;
  const root = widen(body, '') as Json;
  const props = root.properties as Record<string, Json>;

  // One definition of the phantom token options, used at the top level and by routes.
  const { default: _d, ...block } = props.phantom_token!;
  props.phantom_token = { $ref: '#/$defs/phantom_token', ...(DESCRIPTIONS.phantom_token ? { description: DESCRIPTIONS.phantom_token } : {}) };
  const route = ((props.routes as Json).items as Json).properties as Record<string, Json>;
  route.phantom_token = {
    description: DESCRIPTIONS['routes[].phantom_token'],
    anyOf: [{ type: 'boolean' }, { type: 'null' }, { $ref: '#/$defs/phantom_token' }],
  };
  // `scheme` is read in any case (Curity writes DPoP; bearer, dpop, ANY pass too).
  const pt = block.properties as Record<string, Json>;
  pt.scheme = { description: 'Bearer (default), DPoP or any, in any case: the Authorization scheme the route takes.', anyOf: [{ type: 'string', pattern: '^\\s*(?:[Bb][Ee][Aa][Rr][Ee][Rr]|[Dd][Pp][Oo][Pp]|[Aa][Nn][Yy])\\s*$' }, VARIABLE_STRING] };
  props.workers = { ...props.workers, anyOf: [...((props.workers!.anyOf as Json[] | undefined) ?? []), { const: 'auto' }] };
  if (props.forward_auth !== undefined) props.forward_auth = { description: DESCRIPTIONS.forward_auth, anyOf: [stripDescription(props.forward_auth), { type: 'null' }] };

  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: SCHEMA_ID,
    title: `phantom-gateway configuration${version ? ` (${version})` : ''}`,
    ...root,
    $defs: { phantom_token: block },
  };
}

function stripDescription(s: Json): Json {
  const { description: _d, ...rest } = s;
  return rest;
}

/** Descriptions added, and each scalar that a `${VAR}` (or a quoted number or boolean) may stand for widened. */
function widen(node: unknown, path: string): unknown {
  if (Array.isArray(node)) return node.map((n) => widen(n, path));
  if (node === null || typeof node !== 'object') return node;
  const s = { ...(node as Json) };
  if (s.properties !== undefined) {
    const props: Json = {};
    for (const [k, v] of Object.entries(s.properties as Json)) props[k] = widen(v, path === '' ? k : `${path}.${k}`);
    s.properties = props;
  }
  if (s.items !== undefined) s.items = widen(s.items, `${path}[]`);
  if (s.additionalProperties !== undefined && typeof s.additionalProperties === 'object') s.additionalProperties = widen(s.additionalProperties, `${path}.*`);
  if (s.anyOf !== undefined) s.anyOf = (s.anyOf as unknown[]).map((n) => widen(n, path));
  const description = DESCRIPTIONS[path];
  const scalar = s.properties === undefined && s.items === undefined && s.anyOf === undefined && (s.type !== undefined || s.enum !== undefined || s.const !== undefined);
  const plainString = s.type === 'string' && s.pattern === undefined && s.enum === undefined && s.minLength === undefined;
  if (!scalar || plainString) return description !== undefined && s.description === undefined ? { description, ...s } : s;
  // The loader reads "8080" as 8080 and "true" as true: both spellings pass.
  const spelled: Json[] = [VARIABLE_STRING];
  if (s.type === 'integer') spelled.push({ type: 'string', pattern: '^\\s*-?\\d+\\s*$' });
  if (s.type === 'boolean') spelled.push({ enum: ['true', 'false'] });
  const { default: dflt, description: own, ...rest } = s;
  return {
    ...(description !== undefined || own !== undefined ? { description: own ?? description } : {}),
    ...(dflt !== undefined ? { default: dflt } : {}),
    anyOf: [rest, ...spelled],
  };
}

export const SCHEMA_USAGE = `Usage: phantom-gateway schema

Prints the JSON Schema (draft 2020-12) of the configuration file, for
editors: save it (phantom-gateway schema > phantom-gateway.schema.json) and
put this first line in gateway.yaml (YAML language server: VS Code, Neovim,
IntelliJ):

  # yaml-language-server: $schema=./phantom-gateway.schema.json

  -h, --help            show this help
`;

/** `phantom-gateway schema`: exit 0 with the schema on stdout, 2 on a usage error. */
export async function runSchema(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    out.write(SCHEMA_USAGE);
    return 0;
  }
  if (argv.length > 0) {
    err.write(`phantom-gateway schema: unexpected argument ${JSON.stringify(argv[0])}\n\n${SCHEMA_USAGE}`);
    return 2;
  }
  const { createRequire } = await import('node:module');
  const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
  out.write(`${JSON.stringify(configJsonSchema(pkg.version), null, 2)}\n`);
  return 0;
}
