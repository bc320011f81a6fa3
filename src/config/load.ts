import { randomBytes } from 'node:crypto';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { Document, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Node, type YAMLError } from 'yaml';
import type { z } from 'zod';
import { createSecureContext } from 'node:tls';
import { clientAuthProblems } from '../introspection/client-auth.js';
import type { UpstreamTls } from '../net/tls.js';
import {
  configSchema,
  phantomTokenComplete,
  phantomTokenPartial,
  phantomTokenShape,
  FORWARD_AUTH_DEFAULTS,
  LISTEN_DEFAULTS,
  PHANTOM_TOKEN_DEFAULTS,
  DPOP_DEFAULTS,
  MINTING_RESPONSES,
  type GatewayConfig,
  type PhantomTokenOptions,
  type RouteConfig,
} from './schema.js';
import { KeyFileError, loadPublishedKeyFile, loadSigningKeyFile } from '../minting/keys.js';
import { adminTokenProblems } from '../admin/token.js';
import { redisOptionProblems } from '../cache/redis/options.js';

/** Start-up refused: every problem found, each naming the field and line. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Path = ReadonlyArray<string | number>;
type Env = Readonly<Record<string, string | undefined>>;
type Overrides = z.infer<typeof phantomTokenPartial>;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads, substitutes `${VAR}`, validates and freezes a YAML config file (`opts`: see `ParseOptions`). */
export function loadConfigFile(file: string, env: Env = process.env, opts: Pick<ParseOptions, 'proxy'> = {}): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read the configuration file (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfig(text, { file, env, ...opts });
}

export interface ParseOptions {
  /** Named in problems (`gateway.yaml:6: ...`). */
  file?: string;
  env?: Env;
  /**
   * false: the caller runs no proxy listener (the Node middleware), so a
   * missing `listen` means none and routes need no `upstream`, as with
   * `forward_auth`. Default true: a missing `listen` is the default proxy
   * listener (the CLI).
   */
  proxy?: boolean;
}

/**
 * Validates a configuration given as YAML text. `${VAR}` and `${VAR:-default}`
 * are replaced from `env` inside values (never keys); an unset variable without
 * a default is an error, so a secret is never silently empty.
 */
export function parseConfig(text: string, opts: ParseOptions = {}): GatewayConfig {
  const file = opts.file ?? 'config';
  const env = opts.env ?? process.env;
  // `${VAR}` is swapped for a plain word before parsing (`{` and `}` are
  // structure in a flow map: `{ port: ${PORT} }`), and the value goes in
  // after parsing, into the scalar only: a value never becomes YAML structure.
  const refs = new VariableRefs(text);
  const lines = new LineCounter();
  const doc = parseDocument(refs.text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined) => (offset === undefined ? file : `${file}:${lines.linePos(offset).line}`);

  if (doc.errors.length > 0) throw new ConfigError([syntaxError(doc.errors[0]!, text, refs, file)]);
  const problems: string[] = [];
  const sourceWarnings: SourceWarning[] = [];
  // An unset variable is reported, and the rest of the file is still checked,
  // so one run shows every problem; what the schema says about the emptied
  // value itself ("must not be empty") would only repeat it, so it is dropped.
  const unset: string[] = [];
  const unsetLines = new Set<string>();
  /** Variables each substituted value came from, by path. */
  const fromVars = new Map<string, string[]>();
  substituteEnv(doc, refs, env, {
    missing(node, path, name) {
      const where = at(node.range?.[0]);
      unsetLines.add(`${where}: `);
      unset.push(`${where}: ${fmtPath(path)}: environment variable ${name} is not set`);
    },
    used(path, names) {
      fromVars.set(pathKey(path), names);
    },
    warn(node, path, message) {
      const where = at(node.range?.[0]);
      sourceWarnings.push({ message: `${where}: ${fmtPath(path)}: ${message}`, fields: { option: fmtPath(path) } });
    },
  });
  /** A path as problems name it, with the variables its value came from. */
  const fmt = (path: Path): string => {
    const names = fromVars.get(pathKey(path));
    return names === undefined ? fmtPath(path) : `${fmtPath(path)} (from ${names.map((n) => `\${${n}}`).join(', ')})`;
  };
  const failure = (): ConfigError => {
    const rest = problems.filter((p) => ![...unsetLines].some((l) => p.startsWith(l)));
    // A problem of the top-level block is found once per route that inherits it: said once.
    return new ConfigError(inFileOrder([...new Set([...unset, ...rest])], file));
  };

  // An alias without its anchor (`client_secret: *s3cret`, a value that starts
  // with `*`): yaml throws with the alias name, which may be a secret: each is
  // reported by its line only.
  const unresolved: string[] = [];
  visit(doc, {
    Alias(_key, node) {
      if (node.resolve(doc) === undefined) {
        unresolved.push(`${at(node.range?.[0])}: a value starting with * is read as a YAML alias, and no anchor (&) of that name exists: quote the value ("*...") if it is not an alias`);
      }
    },
  });
  if (unresolved.length > 0) throw new ConfigError(unresolved);
  const raw: unknown = doc.toJS() ?? {};
  const lineOf = (path: Path, key?: string) => at(offsetOf(doc, path, key));
  const report = (base: Path, issues: readonly z.core.$ZodIssue[]) => {
    for (const issue of issues) problems.push(...describe(issue, [...base, ...(issue.path as Path)], lineOf, fmt));
  };

  /** A route's own phantom_token: false, its overrides, or undefined when invalid (reported). */
  const overridesOf = (own: unknown, i: number): Overrides | false | undefined => {
    if (own === false) return false;
    if (own === undefined || own === null || own === true) return {};
    const r = phantomTokenPartial.safeParse(own, { reportInput: true });
    if (r.success) return r.data;
    report(['routes', i, 'phantom_token'], r.error.issues);
    return undefined;
  };

  // reportInput: without the input, an issue cannot tell a missing value from a wrong one.
  const parsed = configSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    report([], parsed.error.issues);
    // Route overrides are outside the schema (see below); check them too so
    // that one run reports every problem, not the top level's first.
    const rawRoutes = isRecord(raw) && Array.isArray(raw.routes) ? (raw.routes as unknown[]) : [];
    rawRoutes.forEach((r, i) => overridesOf(isRecord(r) ? r.phantom_token : undefined, i));
    throw failure();
  }
  const cfg = parsed.data;

  // No `listen` means the default proxy listener, unless forward-auth is set
  // or the caller runs no proxy (middleware): then it means no proxy listener.
  const listen = cfg.listen ?? (cfg.forward_auth === undefined && opts.proxy !== false ? { ...LISTEN_DEFAULTS } : undefined);
  const top = cfg.phantom_token;
  const routes: RouteConfig[] = [];
  const readableFiles = new Set<string>();
  const seen = new Map<string, number>();
  const seenFolded = new Map<string, number>();
  cfg.routes.forEach((route, i) => {
    const prev = seen.get(route.path);
    const folded = seenFolded.get(route.path.toLowerCase());
    if (prev !== undefined) problems.push(`${lineOf(['routes', i, 'path'])}: routes[${i}].path: duplicates routes[${prev}].path "${route.path}"`);
    else if (folded !== undefined) {
      // The proxy refuses a path whose route depends on case (see Router.match), so one of the two would never be reached.
      problems.push(
        `${lineOf(['routes', i, 'path'])}: routes[${i}].path: "${route.path}" differs from routes[${folded}].path "${cfg.routes[folded]!.path}" only by case; ` +
          'requests whose route depends on case are refused, so one of them could never be reached',
      );
    }
    // `/admin` and `/admin/` name the same resource to Express and Spring,
    // and the router gives `/admin` to the `/admin/` route (see Router).
    const twin = route.path.length > 1 ? (route.path.endsWith('/') ? route.path.slice(0, -1) : `${route.path}/`) : undefined;
    const twinAt = twin === undefined ? undefined : seenFolded.get(twin.toLowerCase());
    if (prev === undefined && folded === undefined && twinAt !== undefined) {
      problems.push(
        `${lineOf(['routes', i, 'path'])}: routes[${i}].path: "${route.path}" differs from routes[${twinAt}].path "${cfg.routes[twinAt]!.path}" only by a trailing /; ` +
          'upstreams serve both with the same handler, so they must be one route',
      );
    }
    seen.set(route.path, i);
    seenFolded.set(route.path.toLowerCase(), i);
    if (route.upstream === undefined && listen !== undefined) {
      problems.push(
        `${lineOf(['routes', i])}: routes[${i}].upstream: is required for the proxy listener ("${route.path}"): ` +
          'give the route an upstream, or remove listen to run the forward-auth listener alone',
      );
    }

    const upstream = upstreamOf(route.upstream, cfg.upstream, ['routes', i, 'upstream'], lineOf, problems);
    const overrides = overridesOf(route.phantom_token, i);
    if (overrides === undefined || upstream === undefined) return;
    const { phantom_token: _pt, upstream: _u, forward_authorization: forwardAuthorization, ...rest } = route;
    const common = { ...rest, ...upstream, forward_authorization: overrides === false && forwardAuthorization === true };
    if (overrides === false) {
      routes.push({ ...common, phantom_token: false });
      return;
    }
    if (forwardAuthorization !== undefined) {
      const where = ['routes', i, 'forward_authorization'];
      problems.push(
        `${lineOf(where)}: ${fmt(where)}: is only for open routes (phantom_token: false): on a protected route the JWT always replaces the client's Authorization`,
      );
      return;
    }
    // A route's choice of secret source replaces the inherited one (there is no way to unset an option).
    const inherited: Overrides = { ...top };
    if (overrides.client_secret_file !== undefined) delete inherited.client_secret;
    if (overrides.client_secret !== undefined) delete inherited.client_secret_file;
    // A route naming another issuer is another authorization server: it must not
    // send its tokens to the endpoint it inherits (set one in the route, or none to discover it).
    if (overrides.issuer !== undefined && top.issuer !== undefined && overrides.issuer !== top.issuer && overrides.introspection_endpoint === undefined && top.introspection_endpoint !== undefined) {
      const where = ['routes', i, 'phantom_token', 'issuer'];
      problems.push(
        `${lineOf(where)}: ${fmt(where)}: names another issuer than the top-level block (another authorization server), whose introspection_endpoint this route would inherit: ` +
          'set introspection_endpoint in the route too (the same one, to only check iss; another server\'s; or remove the top-level one to discover each server\'s from its issuer)',
      );
      return;
    }
    // The dpop mapping is merged member by member: a route that changes how proofs are forwarded keeps the block's algorithms.
    const dpop = { ...DPOP_DEFAULTS, ...inherited.dpop, ...overrides.dpop };
    const merged = phantomTokenComplete.safeParse({ ...PHANTOM_TOKEN_DEFAULTS, ...inherited, ...overrides, dpop }, { reportInput: true });
    if (!merged.success) {
      for (const issue of merged.error.issues) {
        const key = issue.path[0] as string | undefined;
        if (issue.code === 'invalid_type' && issue.input === undefined && key !== undefined) {
          problems.push(
            `${lineOf(['routes', i])}: phantom_token.${key} is required for protected route routes[${i}] ("${route.path}"): ` +
              `set it in the top-level phantom_token block or in the route, or set phantom_token: false to leave the route unprotected`,
          );
        } else {
          report(key !== undefined && key in overrides ? ['routes', i, 'phantom_token'] : ['phantom_token'], [issue]);
        }
      }
      return;
    }
    const pt = merged.data;
    const whereOf = (key: keyof Overrides): Path => (overrides[key] !== undefined ? ['routes', i, 'phantom_token', key] : ['phantom_token', key]);
    let bad = false;
    for (const { key, message, missing } of optionProblems(pt, overrides)) {
      bad = true;
      if (missing) {
        problems.push(
          `${lineOf(['routes', i])}: phantom_token.${key} is required for protected route routes[${i}] ("${route.path}") ${message}: ` +
            'set it in the top-level phantom_token block or in the route, or set phantom_token: false to leave the route unprotected',
        );
      } else {
        const where = whereOf(key);
        problems.push(`${lineOf(where)}: ${fmt(where)}: ${message}`);
      }
    }
    for (const key of FILE_OPTIONS) {
      const file = pt[key];
      if (file === undefined || readableFiles.has(file)) continue;
      try {
        readFileSync(file); // read, not just checked: a directory or an unreadable file fails here, not in a worker
        readableFiles.add(file);
      } catch (err) {
        const where = whereOf(key);
        problems.push(`${lineOf(where)}: ${fmt(where)}: cannot read "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        bad = true;
      }
    }
    // The files are readable; now whether they hold what the method needs.
    if (!bad) {
      for (const { key, message } of clientAuthProblems(pt)) {
        const where = whereOf(key);
        problems.push(`${lineOf(where)}: ${fmt(where)}: ${message}`);
        bad = true;
      }
    }
    if (bad) return;
    routes.push({ ...common, phantom_token: Object.freeze(pt) });
  });
  const minting = cfg.minting;
  // Key files are read and parsed here, so --check reports a P-384 key, a
  // public-only JWK or a short RSA key with its line, not a worker at start.
  const keyProblem = (where: Path, file: string, load: (file: string) => unknown) => {
    try {
      load(file);
    } catch (err) {
      if (!(err instanceof KeyFileError)) throw err;
      problems.push(`${lineOf(where)}: ${fmt(where)}: ${err.message}`);
    }
  };
  minting.published_key_files.forEach((file, k) => keyProblem(['minting', 'published_key_files', k], file, loadPublishedKeyFile));
  if (minting.signing_key_file !== undefined) {
    keyProblem(['minting', 'signing_key_file'], minting.signing_key_file, loadSigningKeyFile);
  } else if (env.NODE_ENV === 'production' && routes.some((r) => r.phantom_token !== false && MINTING_RESPONSES.has(r.phantom_token.introspection_response))) {
    problems.push(
      `${lineOf(['minting'])}: minting.signing_key_file: is required with NODE_ENV=production when a route mints tokens (introspection_response json, token_introspection_jwt or auto): ` +
        'a key made at start differs on every instance and every restart',
    );
  }
  // Certificates and keys are loaded as TLS will load them, so --check reports a mismatched pair with its line.
  if (listen?.tls !== undefined) tlsFileProblems(listen.tls.cert_file, listen.tls.key_file, undefined, ['listen', 'tls'], lineOf, problems, 'cert_file', 'key_file');
  const u = cfg.upstream;
  if (u.client_cert_file !== undefined && u.client_key_file === undefined) problems.push(`${lineOf(['upstream', 'client_cert_file'])}: upstream.client_key_file: is required with upstream.client_cert_file`);
  if (u.client_key_file !== undefined && u.client_cert_file === undefined) problems.push(`${lineOf(['upstream', 'client_key_file'])}: upstream.client_cert_file: is required with upstream.client_key_file`);
  tlsFileProblems(u.client_cert_file, u.client_key_file, u.ca_file, ['upstream'], lineOf, problems, 'client_cert_file', 'client_key_file');
  const tempDir = cfg.server.body_temp_dir;
  if (tempDir !== undefined) {
    // Checked here, not when the first large body arrives.
    try {
      if (!statSync(tempDir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      accessSync(tempDir, constants.W_OK);
    } catch (err) {
      const where = ['server', 'body_temp_dir'];
      problems.push(`${lineOf(where)}: ${fmt(where)}: cannot write in "${tempDir}" (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  // The shared cache's secret file is read here too, for the same reason.
  const redis = cfg.cache.redis;
  if (redis !== undefined) for (const p of redisOptionProblems(redis)) problems.push(`${lineOf(['cache', 'redis', p.key])}: cache.redis.${p.key}: ${p.message}`);
  // The admin token file is read here, so --check reports it with its line (never its content).
  if (cfg.admin !== undefined) for (const p of adminTokenProblems(cfg.admin)) problems.push(`${lineOf(['admin', p.key])}: admin.${p.key}: ${p.message}`);
  if (problems.length > 0 || unset.length > 0) throw failure();

  // `forward_auth` with neither `listen` nor `grpc` means the HTTP decision
  // listener on its default address; with only `grpc`, no HTTP listener.
  const fa = cfg.forward_auth;
  const forwardAuth =
    fa === undefined || fa.listen !== undefined || fa.grpc !== undefined ? fa : { ...fa, listen: { host: FORWARD_AUTH_DEFAULTS.host, port: FORWARD_AUTH_DEFAULTS.port } };
  const { phantom_token: _unused, routes: _routes, listen: _listen, forward_auth: _fa, ...rest } = cfg;
  return deepFreeze({
    ...(listen !== undefined ? { listen } : {}),
    ...(forwardAuth !== undefined ? { forward_auth: forwardAuth } : {}),
    ...rest,
    routes,
    ...(sourceWarnings.length > 0 ? { sourceWarnings: inFileOrderWarnings(sourceWarnings, file) } : {}),
  });
}

type RouteUpstream = string | { url: string; ca_file?: string | undefined; verify_ssl?: boolean | undefined; client_cert_file?: string | undefined; client_key_file?: string | undefined } | undefined;
type OwnUpstream = { ca_file?: string | undefined; verify_ssl?: boolean | undefined; client_cert_file?: string | undefined; client_key_file?: string | undefined };
type UpstreamDefaults = { ca_file?: string | undefined; verify_ssl: boolean; client_cert_file?: string | undefined; client_key_file?: string | undefined };

/**
 * A route's upstream as the gateway runs it: the URL, and the TLS options
 * merged from the route's mapping over the `upstream` defaults (only when
 * some differ from Node's: a CA, no verification, a client certificate).
 * Undefined when the route's own options are wrong (reported).
 */
function upstreamOf(
  raw: RouteUpstream,
  defaults: UpstreamDefaults,
  where: Path,
  lineOf: (p: Path, key?: string) => string,
  problems: string[],
): { upstream?: string; upstream_tls?: UpstreamTls } | undefined {
  if (raw === undefined) return {};
  const own: OwnUpstream = typeof raw === 'string' ? {} : raw;
  const url = typeof raw === 'string' ? raw : raw.url;
  const before = problems.length;
  if (typeof raw !== 'string') {
    if (!url.startsWith('https:') && (own.ca_file !== undefined || own.verify_ssl !== undefined || own.client_cert_file !== undefined || own.client_key_file !== undefined)) {
      problems.push(`${lineOf([...where, 'url'])}: ${fmtPath([...where, 'url'])}: TLS options are set but the upstream is not https://`);
    }
    // A route's client certificate comes with its own key (never half inherited).
    if ((own.client_cert_file === undefined) !== (own.client_key_file === undefined)) {
      const missing = own.client_cert_file === undefined ? 'client_cert_file' : 'client_key_file';
      problems.push(`${lineOf(where)}: ${fmtPath([...where, missing])}: is required with ${missing === 'client_cert_file' ? 'client_key_file' : 'client_cert_file'}`);
    }
    tlsFileProblems(own.client_cert_file, own.client_key_file, own.ca_file, where, lineOf, problems, 'client_cert_file', 'client_key_file');
  }
  if (problems.length > before) return undefined;
  const pair = own.client_cert_file !== undefined ? own : defaults;
  const tls: UpstreamTls = {
    ...((own.ca_file ?? defaults.ca_file) !== undefined ? { ca_file: own.ca_file ?? defaults.ca_file } : {}),
    verify_ssl: own.verify_ssl ?? defaults.verify_ssl,
    ...(pair.client_cert_file !== undefined ? { client_cert_file: pair.client_cert_file, client_key_file: pair.client_key_file } : {}),
  };
  const plain = tls.ca_file === undefined && tls.verify_ssl && tls.client_cert_file === undefined;
  return plain || !url.startsWith('https:') ? { upstream: url } : { upstream: url, upstream_tls: Object.freeze(tls) };
}

/**
 * Certificate, key and CA files as TLS will load them: readable, PEM, and a
 * key that matches its certificate (`tls.createSecureContext` checks).
 */
function tlsFileProblems(
  certFile: string | undefined,
  keyFile: string | undefined,
  caFile: string | undefined,
  where: Path,
  lineOf: (p: Path, key?: string) => string,
  problems: string[],
  certKey: string,
  keyKey: string,
): void {
  const read = (file: string | undefined, key: string): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      problems.push(`${lineOf([...where, key])}: ${fmtPath([...where, key])}: cannot read "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      return undefined;
    }
  };
  const cert = read(certFile, certKey);
  const key = read(keyFile, keyKey);
  const ca = read(caFile, 'ca_file');
  if (ca !== undefined) {
    try {
      createSecureContext({ ca });
    } catch (err) {
      problems.push(`${lineOf([...where, 'ca_file'])}: ${fmtPath([...where, 'ca_file'])}: "${caFile}" holds no usable PEM certificate (${tlsReason(err)})`);
    }
  }
  if (cert === undefined || key === undefined) return;
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    problems.push(`${lineOf([...where, certKey])}: ${fmtPath([...where, certKey])}: "${certFile}" and ${keyKey} "${keyFile}" are not a usable certificate and key pair (${tlsReason(err)})`);
  }
}

/** OpenSSL's reason, without the stack or the key material. */
function tlsReason(err: unknown): string {
  const e = err as { reason?: unknown; code?: unknown; message?: unknown };
  return String(e.reason ?? e.code ?? e.message ?? 'error');
}

/** Route options that name files read at start. */
const FILE_OPTIONS = ['ca_file', 'client_secret_file', 'client_key_file', 'client_cert_file'] as const;

/**
 * Rules across options, checked on a route's merged options (`overrides`:
 * the route's own): which option, and what is wrong (`missing`: it is
 * required and absent).
 */
function optionProblems(pt: PhantomTokenOptions, overrides: Overrides): Array<{ key: keyof Overrides; message: string; missing: boolean }> {
  const out: Array<{ key: keyof Overrides; message: string; missing: boolean }> = [];
  const need = (key: keyof Overrides, message: string) => out.push({ key, message, missing: true });
  if (pt.introspection_endpoint === undefined && pt.issuer === undefined) need('introspection_endpoint', '(or issuer, to find it by discovery)');
  const method = pt.client_auth_method;
  // Files for a method the route does not use, unless a route override of the method left inherited ones behind.
  const unused = (key: 'client_cert_file' | 'client_key_file', used: boolean, why: string) => {
    if (pt[key] !== undefined && !used && (overrides.client_auth_method === undefined || overrides[key] !== undefined)) {
      out.push({ key, message: `is not used with client_auth_method ${method} (${why})`, missing: false });
    }
  };
  unused('client_cert_file', method === 'tls_client_auth', 'only tls_client_auth presents a client certificate');
  unused('client_key_file', method === 'tls_client_auth' || method === 'private_key_jwt', 'only private_key_jwt and tls_client_auth use a client key');
  if (method === 'client_secret_basic' || method === 'client_secret_post') {
    if (pt.client_secret !== undefined && pt.client_secret_file !== undefined) {
      out.push({ key: 'client_secret_file', message: 'client_secret and client_secret_file are both set: keep one', missing: false });
    } else if (pt.client_secret === undefined && pt.client_secret_file === undefined) {
      need('client_secret', `with client_auth_method ${method} (or client_secret_file)`);
    }
  }
  if (method === 'private_key_jwt' && pt.client_key_file === undefined) need('client_key_file', 'with client_auth_method private_key_jwt (the key assertions are signed with)');
  if (method === 'tls_client_auth') {
    if (pt.client_cert_file === undefined) need('client_cert_file', 'with client_auth_method tls_client_auth');
    if (pt.client_key_file === undefined) need('client_key_file', 'with client_auth_method tls_client_auth');
  }
  if (pt.introspection_response === 'token_introspection_jwt' && pt.issuer === undefined) {
    need('issuer', "with introspection_response token_introspection_jwt (the signed answer's iss is checked against it)");
  }
  return out;
}

function describe(issue: z.core.$ZodIssue, path: Path, lineOf: (p: Path, key?: string) => string, fmt: (p: Path) => string = fmtPath): string[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => `${lineOf(path, k)}: ${fmtPath([...path, k])}: unknown option${hintFor(k, path, knownKeys(path))}`);
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    return [`${lineOf(path.slice(0, -1))}: ${fmt(path)}: is required`];
  }
  if (issue.code === 'invalid_union') {
    // One branch the value has the shape of (a mapping, not a string): its own problems, not zod's "Invalid input".
    const fitting = issue.errors.filter((branch) => !branch.some((i) => i.code === 'invalid_type' && i.path.length === 0));
    if (fitting.length === 1) return fitting[0]!.flatMap((i) => describe(i, [...path, ...(i.path as Path)], lineOf, fmt));
    const first = issue.errors[0]?.[0];
    if (first !== undefined && first.code !== 'invalid_type') return describe(first, [...path, ...(first.path as Path)], lineOf, fmt);
  }
  if (issue.code === 'invalid_value') {
    return [`${lineOf(path)}: ${fmt(path)}: must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`];
  }
  return [`${lineOf(path)}: ${fmt(path)}: ${issue.message}`];
}

/**
 * Option names of other gateways' introspection plugins (Kong's
 * oauth2-introspection and openid-connect, APISIX's openid-connect and
 * authz-keycloak, Curity's NGINX module), so that a configuration carried
 * over is told what each became here: `name` is our option for it, `note`
 * what to know (units, or why there is none).
 */
const FOREIGN_OPTIONS: Readonly<Record<string, { name?: string; note?: string }>> = {
  introspection_url: { name: 'introspection_endpoint' },
  phantom_token_introspection_endpoint: { name: 'introspection_endpoint' },
  discovery: { name: 'issuer', note: "the issuer's URL: its discovery document is read from issuer + /.well-known/..." },
  introspection_endpoint_auth_method: { name: 'client_auth_method' },
  token_endpoint_auth_method: { name: 'client_auth_method' },
  client_auth: { name: 'client_auth_method' },
  authorization_value: { name: 'client_secret', note: 'give client_id and client_secret: the gateway builds the Authorization header to the authorization server itself (client_auth_method)' },
  ssl_verify: { name: 'verify_ssl' },
  ttl: { name: 'token_cache_seconds' },
  cache_ttl_seconds: { name: 'token_cache_seconds' },
  introspection_interval: { name: 'token_cache_seconds' },
  timeout: { name: 'timeout_ms', note: 'in milliseconds' },
  required_scopes: { name: 'scope', note: 'space-separated' },
  phantom_token_scopes: { name: 'scope', note: 'space-separated' },
  use_jwks: { name: 'jwks_uri', note: 'signed introspection answers are checked with jwks_uri (discovered from issuer when absent)' },
  public_key: { name: 'jwks_uri', note: 'signed introspection answers are checked with the keys at jwks_uri' },
  token_type_hint: { note: 'not needed: the gateway introspects access tokens only (and refuses answers about other token types, access_tokens_only)' },
  hide_credentials: { note: 'not needed: on a protected route the opaque token never reaches the upstream (a JWT replaces it), and an open route drops the client\'s Authorization unless forward_authorization: true' },
  bearer_only: { note: 'not needed: the gateway only accepts bearer tokens and never redirects to a login page' },
  run_on_preflight: { note: 'not needed: a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) passes without a token' },
  anonymous: { note: 'no anonymous consumer: a route open to requests without a token is phantom_token: false' },
  consumer_by: { note: 'no consumers: the upstream reads the caller from the JWT (sub, client_id), or forward_auth.identity_headers' },
  custom_claims_forward: { name: 'copy_claims', note: 'minting.copy_claims copies introspection members into minted JWTs; forward_auth.identity_headers sends claims as headers' },
  set_access_token_header: { note: 'not needed: the JWT always replaces the opaque token in Authorization' },
  access_token_in_authorization_header: { note: 'not needed: the JWT always replaces the opaque token in Authorization' },
  token_signing_alg_values_expected: { note: "not needed: minted JWTs are signed with minting.signing_key_file's key (its type picks the algorithm); signed introspection answers are checked with jwks_uri" },
  introspection_expiry_claim: { note: 'not needed: the cache lifetime follows the token\'s exp (bounded by token_cache_seconds)' },
  realm: { note: 'not supported: challenges are WWW-Authenticate: Bearer with error and scope, without a realm' },
  phantom_token_realm: { note: 'not supported: challenges are WWW-Authenticate: Bearer with error and scope, without a realm' },
};

/** What to say about unknown option `key` at `path` (valid names there: `known`). */
function hintFor(key: string, path: Path, known: readonly string[]): string {
  const inBlock = path.includes('phantom_token');
  const phantomKeys = Object.keys(phantomTokenShape);
  // Other gateways' names belong in the phantom token block, the top level or a route (not in `server`, `upstream`...).
  const foreign = inBlock || path.length === 0 || (path[0] === 'routes' && path.length === 2) ? FOREIGN_OPTIONS[key.toLowerCase()] : undefined;
  const where = (name: string) => (known.includes(name) || !phantomKeys.includes(name) ? name : `phantom_token.${name}`);
  if (foreign !== undefined) {
    if (foreign.name === undefined) return ` (${foreign.note})`;
    const name = foreign.name === 'copy_claims' && !known.includes('copy_claims') ? 'minting.copy_claims' : where(foreign.name);
    return ` (did you mean "${name}"?${foreign.note !== undefined ? ` ${foreign.note}` : ''})`;
  }
  // A phantom token option outside its block (`client_secret` at the top level or on a route).
  if (!inBlock && phantomKeys.includes(key) && !known.includes(key)) return ` (did you mean "phantom_token.${key}"? the phantom token options go in the phantom_token block, at the top level or on a route)`;
  const near = suggest(key, known);
  return near ? ` (did you mean "${near}"?)` : '';
}

/** Problems sorted by line: zod reports in the schema's key order, route overrides come last. */
function inFileOrder(problems: string[], file: string): string[] {
  const line = (p: string) => (p.startsWith(`${file}:`) ? Number.parseInt(p.slice(file.length + 1), 10) || 0 : 0);
  return [...problems].sort((a, b) => line(a) - line(b));
}

function fmtPath(path: Path): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out || '(top level)';
}

/** Offset in the text of the node at `path` (or of `key` inside it), else of its nearest ancestor. */
function offsetOf(doc: Document, path: Path, key?: string): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as Node | undefined;
    if (node === undefined || node === null) continue;
    if (key !== undefined && n === path.length && 'items' in node) {
      for (const item of (node as { items: unknown[] }).items) {
        if (isPair(item) && isScalar(item.key) && item.key.value === key) return item.key.range?.[0];
      }
    }
    if (node.range) return node.range[0];
  }
  return undefined;
}

/** A `${NAME}` or `${NAME:-default}` reference (a default never spans lines, so line numbers hold). */
const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}\r\n]*))?\}/g;

interface VariableRef {
  readonly source: string;
  readonly name: string;
  readonly fallback: string | undefined;
  /** Offset in the original text. */
  readonly at: number;
  /** Offset and length of its placeholder in `text`. */
  readonly placedAt: number;
  readonly placedLength: number;
}

/**
 * The configuration text with each `${...}` reference replaced by a
 * placeholder: a word (letters and digits) that cannot occur in the file,
 * so it parses as part of a plain scalar in block and flow style alike.
 */
class VariableRefs {
  readonly text: string;
  readonly refs: VariableRef[] = [];
  readonly #placeholder: RegExp;
  readonly #marker: string;

  constructor(original: string) {
    let marker: string;
    do marker = `PGVAR${randomBytes(6).toString('hex')}N`;
    while (original.includes(marker));
    this.#marker = marker;
    let delta = 0;
    this.text = original.replace(VARIABLE, (source: string, name: string, fallback: string | undefined, at: number) => {
      const placeholder = `${marker}${this.refs.length}Z`;
      this.refs.push({ source, name, fallback, at, placedAt: at + delta, placedLength: placeholder.length });
      delta += placeholder.length - source.length;
      return placeholder;
    });
    this.#placeholder = new RegExp(`${marker}(\\d+)Z`, 'g');
  }

  /** Whether `s` holds a placeholder. */
  has(s: string): boolean {
    return this.refs.length > 0 && s.includes(this.#marker);
  }

  /** `s` with each placeholder replaced by `f(ref)`. */
  replace(s: string, f: (ref: VariableRef) => string): string {
    return s.replace(this.#placeholder, (_m, i: string) => f(this.refs[Number(i)]!));
  }

  /** `s` as written in the file. */
  restore(s: string): string {
    return this.has(s) ? this.replace(s, (r) => r.source) : s;
  }

  /** The offset in the original text of an offset in `text`. */
  originalOffset(offset: number): number {
    let delta = 0;
    for (const r of this.refs) {
      if (r.placedAt > offset) break;
      if (offset < r.placedAt + r.placedLength) return r.at;
      delta = r.placedAt + r.placedLength - (r.at + r.source.length);
    }
    return offset - delta;
  }
}

/** A warning about the file itself (an unexpanded `$NAME`...), logged at start and printed by --check. */
export interface SourceWarning {
  readonly message: string;
  readonly fields: Record<string, unknown>;
}

interface SubstituteHooks {
  missing(node: Node, path: Path, name: string): void;
  used(path: Path, names: string[]): void;
  warn(node: Node, path: Path, message: string): void;
}

/** Option names whose value is a secret: a warning never quotes part of it. */
const SECRET_KEY = /secret|password|token$/i;

function substituteEnv(doc: Document, refs: VariableRefs, env: Env, hooks: SubstituteHooks): void {
  visit(doc, {
    Scalar(key, node, ancestors) {
      if (typeof node.value !== 'string') return;
      // Keys are never substituted: they keep what the file says.
      if (key === 'key') {
        node.value = refs.restore(node.value);
        return;
      }
      const raw = node.value;
      let path: Path | undefined;
      const pathNow = () => (path ??= pathOf(ancestors, node));
      // What the file itself says (outside references): a `$NAME` or a `${`
      // left there suggests a reference that will not be replaced.
      const literal = refs.has(raw) ? refs.replace(raw, () => '\0') : raw;
      if (literal.includes('$')) {
        const p = pathNow();
        const secret = SECRET_KEY.test(String(p[p.length - 1] ?? ''));
        const brace = /\$\{/.exec(literal);
        if (brace !== null) {
          const shown = secret ? '' : ` (${JSON.stringify(/^\$\{[^}\s\0]*/.exec(literal.slice(brace.index))![0])})`;
          hooks.warn(node, p, `contains "\${" that is not a variable reference${shown}: only \${NAME} and \${NAME:-default} are replaced, with a closing } and a name of letters, digits and _`);
        } else {
          for (const m of literal.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)/g)) {
            const name = m[1]!;
            if (!(/^[A-Z_][A-Z0-9_]*$/.test(name) && /[A-Z]/.test(name)) && env[name] === undefined) continue;
            hooks.warn(node, p, secret ? 'contains $ followed by a variable-like name, which is not replaced: write ${NAME} to read an environment variable' : `contains $${name}, which is not replaced: write \${${name}} to read the environment variable`);
            break;
          }
        }
      }
      if (!refs.has(raw)) return;
      const names: string[] = [];
      node.value = refs.replace(raw, (r) => {
        names.push(r.name);
        const value = env[r.name];
        if (value !== undefined && value !== '') return value;
        if (r.fallback !== undefined) return r.fallback;
        hooks.missing(node, pathNow(), r.name);
        return '';
      });
      hooks.used(pathNow(), names);
    },
  });
}

function pathKey(path: Path): string {
  return JSON.stringify(path);
}

/** Warnings sorted by line, as problems are. */
function inFileOrderWarnings(warnings: SourceWarning[], file: string): SourceWarning[] {
  const order = inFileOrder(warnings.map((w) => w.message), file);
  return order.map((m) => warnings.find((w) => w.message === m)!);
}

/** Clearer words for the syntax errors people make most; the library's own otherwise. */
const SYNTAX_MESSAGES: Record<string, string> = {
  TAB_AS_INDENT: 'a tab is used for indentation; YAML indents with spaces only',
  BLOCK_AS_IMPLICIT_KEY: 'a mapping cannot start on the line of its key (`a: b: c`); put it on the next line, indented, or quote the value',
  MULTILINE_IMPLICIT_KEY: 'a key must be on one line; is a ": " (colon and space) missing after a key above, or is a line indented too far?',
  UNEXPECTED_TOKEN: 'unexpected text here; is a quote unbalanced, a "- " list item mixed with "key: value" lines, or the indentation off?',
};

/** The first syntax error, in one sentence with its line and column (the rest are often its echoes). */
function syntaxError(e: YAMLError, original: string, refs: VariableRefs, file: string): string {
  const offset = refs.originalOffset(e.pos[0]);
  const before = original.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - (before.lastIndexOf('\n') + 1) + 1;
  let message = SYNTAX_MESSAGES[e.code];
  if (e.code === 'DUPLICATE_KEY') {
    const key = /^[^:\n]*/.exec(original.slice(offset))![0].trim();
    message = `the key ${key} appears twice in the same mapping`;
  }
  message ??= refs.restore(e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''));
  return `${file}:${line}: YAML syntax error at column ${column}: ${message}`;
}

function pathOf(ancestors: readonly unknown[], leaf: unknown): Path {
  const path: (string | number)[] = [];
  for (let i = 0; i < ancestors.length; i++) {
    const a = ancestors[i];
    const next = i + 1 < ancestors.length ? ancestors[i + 1] : leaf;
    if (isPair(a) && isScalar(a.key)) path.push(String(a.key.value));
    else if (isSeq(a)) path.push(a.items.indexOf(next as never));
  }
  return path;
}

/** Option names valid at `path`, for "did you mean" hints. */
function knownKeys(path: Path): string[] {
  let schema: unknown = configSchema;
  for (const seg of path) {
    schema = unwrap(schema);
    const def = (schema as { _zod: { def: Record<string, unknown> } })._zod.def;
    if (typeof seg === 'number') schema = def.element;
    else if (seg === 'phantom_token') schema = phantomTokenPartial;
    else schema = (def.shape as Record<string, unknown> | undefined)?.[seg];
    if (schema === undefined) return [];
  }
  const def = (unwrap(schema) as { _zod: { def: { shape?: Record<string, unknown> } } })._zod.def;
  return Object.keys(def.shape ?? {});
}

function unwrap(schema: unknown): unknown {
  let s = schema as { _zod: { def: { type: string; innerType?: unknown; out?: unknown } } };
  for (;;) {
    const d = s._zod.def;
    if ((d.type === 'default' || d.type === 'optional') && d.innerType) s = d.innerType as typeof s;
    else if (d.type === 'pipe' && d.out) s = d.out as typeof s;
    else return s;
  }
}

function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c);
    if (d < bestDist) {
      best = c;
      bestDist = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
