import { unmapped } from '../net/addresses.js';
import { scanCredentials, type CredentialFacts } from '../core/credentials.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JWTPayload } from 'jose';
import type { ActiveToken } from '../cache/entry.js';
import { loadConfigFile } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { decide, withdraw, type Decision, type DecisionRequest } from '../core/decide.js';
import { refusal } from '../core/errors.js';
import { createGuards, Guards, REFUSED } from '../core/guards.js';
import { checkTarget } from '../routing/request-target.js';
import { renderRefusal, type RenderedRefusal } from '../core/render.js';
import { createLogger, type Logger } from '../observability/logger.js';
import type { TLSSocket } from 'node:tls';
import { certThumbprint } from '../net/client-cert.js';
import { DPOP_VERIFIED } from '../core/sender.js';
import { requestUrl } from '../routing/request-target.js';

/*
 * What the Express and Fastify adapters share: options, the facts a decision
 * needs read from the raw request, and the one path from a decision to "go
 * on" or "refuse". The adapters only say how their framework continues a
 * request and sends a response.
 */

/** Options of the Express middleware and the Fastify plugin. */
export interface MiddlewareOptions {
  /**
   * The engine to use, shared with other front doors (the proxy, the
   * forward-auth listener, another middleware): one cache and one
   * single-flight for all of them. Its owner closes it. Give this or `config`.
   */
  guards?: Guards;
  /**
   * A configuration file path (YAML, `${VAR}` substituted from the
   * environment, validated; routes need no `upstream` unless the file has a
   * `listen`), or a configuration from `loadConfigFile()` / `parseConfig()`
   * (with `{ proxy: false }` for routes without `upstream`). The middleware
   * then builds the guards itself and closes them on `close()` (Fastify: when
   * the app closes). Give this or `guards`.
   */
  config?: string | GatewayConfig;
  /**
   * A path no route covers: `'refuse'` (default) answers 404 from the error
   * table, as the proxy does; `'pass'` hands the request to the app
   * untouched (its own pages, with no token checked and no claims).
   */
  unmatched?: 'refuse' | 'pass';
  /** Where internal errors go (never tokens). Default: JSON lines on stdout at the configuration's `log.level` (`info` with `guards`). */
  logger?: Logger;
}

/** What a handler receives about the token of an allowed request. */
export interface PhantomToken {
  /** The JWT now in `Authorization: Bearer <jwt>` (or `DPoP <jwt>` on a DPoP route with `dpop.forward: dpop`; its signature is the API's to verify, as behind the proxy). */
  readonly jwt: string;
  /** The JWT's claims, as checked when the authorization server's answer arrived (frozen). */
  readonly claims: Readonly<JWTPayload>;
  /** The token's scopes, space-separated (from `scope`, or `scp` as an array). */
  readonly scope: string;
}

/** The engine an adapter runs on, with what it owns. */
export interface Engine {
  readonly guards: Guards;
  readonly logger: Logger;
  readonly passUnmatched: boolean;
  /** Closes the guards when they were built from `config`; a no-op on shared guards. */
  close(): Promise<void>;
}

/** Checks the options once (a `TypeError` names the option) and builds or takes the guards. */
export function createEngine(options: MiddlewareOptions | undefined, who: string): Engine {
  if (options === null || typeof options !== 'object') throw new TypeError(`${who}: options must be an object with "guards" or "config"`);
  const { guards, config, unmatched = 'refuse', logger } = options;
  if ((guards === undefined) === (config === undefined)) throw new TypeError(`${who}: give exactly one of the "guards" and "config" options`);
  if (unmatched !== 'refuse' && unmatched !== 'pass') throw new TypeError(`${who}: "unmatched" option must be 'refuse' or 'pass'`);
  if (logger !== undefined && (typeof logger !== 'object' || typeof logger.error !== 'function')) throw new TypeError(`${who}: "logger" option must be a pino logger`);
  const passUnmatched = unmatched === 'pass';
  if (guards !== undefined) {
    if (!(guards instanceof Guards)) throw new TypeError(`${who}: "guards" option must come from createGuards()`);
    return { guards, logger: logger ?? createLogger('info'), passUnmatched, close: async () => {} };
  }
  let validated: GatewayConfig;
  if (typeof config === 'string') validated = loadConfigFile(config, process.env, { proxy: false });
  // parseConfig() and loadConfigFile() freeze what they validated: anything
  // else has never been checked, nor given its defaults.
  else if (typeof config === 'object' && config !== null && Object.isFrozen(config)) validated = config;
  else throw new TypeError(`${who}: "config" option must be a file path or a configuration from loadConfigFile() or parseConfig()`);
  const log = logger ?? createLogger(validated.log.level);
  const own = createGuards(validated, { logger: log });
  return { guards: own, logger: log, passUnmatched, close: () => own.close() };
}

/** What an adapter does with the outcome. */
export interface Outcome {
  /** The request goes on to the app; `token` is undefined on an open route, a CORS preflight, or an unmatched path passed through. */
  proceed(token: PhantomToken | undefined): void;
  /** Sends the refusal; `close` when the request announced a body nobody will read. */
  refuse(refusal: RenderedRefusal, close: boolean): void;
  /** An error thrown by the app's own handlers once the request went on after an introspection. */
  appError(err: unknown): void;
}

const INTERNAL = refusal('ERR_INTERNAL');
const BAD_TARGET = refusal('ERR_BAD_REQUEST_TARGET');

/**
 * Whether `other`, another path the request is known by (Express's
 * `req.originalUrl` beside the `baseUrl + url` it routes on), could be judged
 * by a different route than `target`: it fails the target checks, or a route
 * covers it that is not `target`'s. A path no route covers cannot be judged
 * differently (a rewrite from a legacy prefix).
 */
function spellingsDisagree(guards: Guards, target: string, other: string): boolean {
  if (other === target) return false;
  const o = checkTarget(other);
  if (o === undefined) return true;
  const routeOfOther = guards.forRoute(o.path);
  if (routeOfOther === undefined) return false;
  if (routeOfOther === REFUSED) return true;
  const t = checkTarget(target);
  return t === undefined || routeOfOther !== guards.forRoute(t.path);
}

/**
 * Decides on a request and tells `outcome`: synchronously on a cache hit or a
 * refusal before any token, after the introspection otherwise. The client's
 * `Authorization` is replaced by the JWT before the request goes on. An
 * internal failure is logged and refused with 500 from the error table: it
 * never reaches the framework's error handler (which would send its message)
 * and never becomes an unhandled rejection.
 *
 * @param target the request's path and query as the app routes it.
 * @param other another path and query the request is known by (Express's `req.originalUrl`): when a route other than `target`'s covers it, or it fails the target checks, the request is refused with 400 rather than one of the two picked.
 */
export function guardRequest(engine: Engine, req: IncomingMessage, res: ServerResponse, target: string, clientAddress: string, addressed: () => string | undefined, outcome: Outcome, other?: string): void {
  let facts: CredentialFacts;
  let decision: Decision | Promise<Decision>;
  try {
    facts = scanCredentials(req.rawHeaders);
    if (other !== undefined && spellingsDisagree(engine.guards, target, other)) return outcome.refuse(renderRefusal(BAD_TARGET), facts.hasBody);
    decision = decide(engine.guards, new MiddlewareRequest(req, target, facts, clientAddress, addressed));
  } catch (err) {
    return failed(engine, res, outcome, err);
  }
  // A cache hit: whatever the app's handlers throw from here on goes to
  // whoever called the middleware (the framework), as it would without it.
  if (!(decision instanceof Promise)) return conclude(engine, req, res, decision, facts, outcome);

  const pending = decision;
  let gone = false;
  // The client left while its token waited: an introspection nobody waits
  // for any more is never sent, and the request never reaches the app.
  const onClose = () => {
    gone = true;
    withdraw(pending);
  };
  // Gone already (between the request's arrival and this turn): nobody to wait for.
  if (req.socket.destroyed) return onClose();
  res.once('close', onClose);
  pending
    .then(
      (d) => {
        res.off('close', onClose);
        if (gone) return;
        try {
          conclude(engine, req, res, d, facts, outcome);
        } catch (err) {
          // Thrown by the app's handlers, not by the middleware (conclude keeps its own failures).
          outcome.appError(err);
        }
      },
      (err: unknown) => {
        res.off('close', onClose);
        if (gone) engine.logger.error({ err }, 'internal error in the phantom token middleware');
        else failed(engine, res, outcome, err);
      },
    )
    .catch((err: unknown) => engine.logger.error({ err }, 'internal error in the phantom token middleware'));
}

/** Applies a decision: refuse, or swap the credential and go on. Only `outcome.proceed` may throw out of it. */
function conclude(engine: Engine, req: IncomingMessage, res: ServerResponse, d: Decision, facts: CredentialFacts, outcome: Outcome): void {
  let token: PhantomToken | undefined;
  try {
    if (!d.allow) {
      const passed = engine.passUnmatched && d.error.code === 'ERR_NO_ROUTE';
      if (!passed) return outcome.refuse(renderRefusal(d.error), facts.hasBody);
      // Passed on as it came, but for X-DPoP-Verified, which only the gateway sets.
      setProof(req, undefined, true);
    } else if (d.token !== undefined) {
      replaceAuthorization(req, d.token.authorization);
      setProof(req, d.token?.dpop, false);
      token = new GrantedToken(d.token);
    } else {
      // An open route, a CORS preflight: a client's DPoP goes with its
      // Authorization where that passes (open routes); X-DPoP-Verified is
      // never a client's to set.
      setProof(req, undefined, d.route.guard === undefined);
    }
  } catch (err) {
    return failed(engine, res, outcome, err);
  }
  outcome.proceed(token);
}

/** A failure of the middleware itself: logged, answered 500 from the table; should even that fail, the connection is cut. Never thrown on. */
function failed(engine: Engine, res: ServerResponse, outcome: Outcome, err: unknown): void {
  engine.logger.error({ err }, 'internal error in the phantom token middleware');
  try {
    outcome.refuse(renderRefusal(INTERNAL), true);
  } catch (again) {
    engine.logger.error({ err: again }, 'internal error in the phantom token middleware');
    res.destroy();
  }
}

/** The token an allowed request carries, read lazily from the cached entry (most handlers read one field, or none). */
class GrantedToken implements PhantomToken {
  readonly #token: ActiveToken;
  constructor(token: ActiveToken) {
    this.#token = token;
  }
  get jwt(): string {
    const a = this.#token.authorization;
    return a.slice(a.indexOf(' ') + 1);
  }
  get claims(): Readonly<JWTPayload> {
    return this.#token.claims;
  }
  get scope(): string {
    return this.#token.scope.trim();
  }
  toJSON(): PhantomToken {
    return { jwt: this.jwt, claims: this.claims, scope: this.scope };
  }
}

/**
 * The client's credential replaced by the JWT, in `req.headers` (what
 * frameworks and proxy libraries read), in `req.rawHeaders` (what a handler
 * that copies raw headers on would send), and in `req.headersDistinct`
 * (dropped, so that Node builds it again from the raw headers should anything
 * read it; an earlier middleware may have built it with the opaque token).
 * There is exactly one `Authorization` field: two are refused before any
 * token is looked at.
 */
function replaceAuthorization(req: IncomingMessage, authorization: string): void {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 13 && raw[i]!.toLowerCase() === 'authorization') raw[i + 1] = authorization;
  }
  req.headers.authorization = authorization;
  (req as { headersDistinct: unknown }).headersDistinct = undefined;
}

/** Every value of the header `name` (lower case) in raw headers. */
/**
 * A request as the middleware asks `decide` about it. Its DPoP facts are
 * worked out when `decide` reads them, never before; a class, since an
 * object literal with getters is built slowly on every request.
 */
class MiddlewareRequest implements DecisionRequest {
  readonly method: string;
  readonly authorization: readonly string[];
  readonly preflight: boolean;
  readonly hasBody: boolean;
  readonly methodOverride: boolean;

  constructor(
    readonly req: IncomingMessage,
    readonly target: string,
    facts: CredentialFacts,
    readonly clientAddress: string,
    readonly addressed: () => string | undefined,
  ) {
    this.method = req.method ?? '';
    this.authorization = facts.authorization;
    this.preflight = facts.preflight;
    this.hasBody = facts.hasBody;
    this.methodOverride = facts.methodOverride;
  }

  get dpop(): string[] {
    return headerLines(this.req.rawHeaders, 'dpop');
  }

  get url(): string | undefined {
    return this.addressed();
  }

  get certThumbprint(): string | undefined {
    return peerCertThumbprint(this.req);
  }
}

function headerLines(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  }
  return out;
}

/** The thumbprint of the certificate the client presented on this TLS connection (the server must request one), or undefined. */
function peerCertThumbprint(req: IncomingMessage): string | undefined {
  const socket = req.socket as Partial<TLSSocket>;
  // getPeerX509Certificate: a quarter of getPeerCertificate()'s cost (13 against 56 µs), which parses every field.
  if (socket.encrypted !== true || typeof socket.getPeerX509Certificate !== 'function') return undefined;
  const cert = socket.getPeerX509Certificate();
  return cert === undefined ? undefined : certThumbprint(cert.raw);
}

/**
 * `DPoP` and `X-DPoP-Verified` as the app is to see them: with a verified
 * proof (`dpop.forward: dpop`), the proof and its key's thumbprint; else no
 * `X-DPoP-Verified` and, unless `keepProof`, no `DPoP`. In `req.headers`,
 * `req.rawHeaders` and `req.headersDistinct`, as `replaceAuthorization`.
 */
function setProof(req: IncomingMessage, proof: { proof: string; jkt: string } | undefined, keepProof: boolean): void {
  const raw = req.rawHeaders;
  let touched = false;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    const n = raw[i]!;
    if ((n.length === 4 && !keepProof && n.toLowerCase() === 'dpop') || (n.length === 15 && n.toLowerCase() === DPOP_VERIFIED)) {
      raw.splice(i, 2);
      touched = true;
    } else if (n.length === 4 && proof !== undefined && n.toLowerCase() === 'dpop') {
      // The one proof the gateway verified (two are refused before): in place.
      raw[i + 1] = proof.proof;
    }
  }
  if (proof !== undefined) {
    raw.push('X-DPoP-Verified', proof.jkt);
    req.headers.dpop = proof.proof;
    req.headers[DPOP_VERIFIED] = proof.jkt;
    touched = true;
  } else {
    if (!keepProof) delete req.headers.dpop;
    delete req.headers[DPOP_VERIFIED];
  }
  if (touched) (req as { headersDistinct: unknown }).headersDistinct = undefined;
}

/**
 * The URL a client addressed, for a DPoP proof's `htu`, from a framework's
 * view of the request: its scheme and host (following the framework's own
 * proxy trust for `X-Forwarded-Proto`/`-Host`) and the path as the client
 * sent it (before any rewrite).
 */
export function addressedUrl(scheme: string | undefined, host: string | undefined, originalTarget: string): string | undefined {
  return requestUrl(scheme, host, originalTarget);
}

/** An address as the proxy keys introspection queues: IPv4-mapped IPv6 as plain IPv4. */
export function plainAddress(address: string | undefined): string {
  return unmapped(address ?? '');
}
