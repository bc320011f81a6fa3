import type { ActiveToken } from '../cache/entry.js';
import type { TraceHeaders } from '../observability/trace-context.js';
import { checkTarget } from '../routing/request-target.js';
import { checkCredentials, PREFLIGHT } from './credentials.js';
import { GatewayError, TOKEN_INACTIVE, refusal } from './errors.js';
import type { Requester, Seen, Verdict } from './exchange.js';
import { REFUSED, type Guard, type GuardedRoute, type Guards } from './guards.js';
import type { Presentation } from './sender.js';

/**
 * What a front door that does not carry the request itself (a forward-auth
 * listener, Envoy's check, middleware) knows of the request to decide on.
 */
export interface DecisionRequest {
  /** The original request's method. */
  readonly method: string;
  /** The original request target, origin-form: path and query. */
  readonly target: string;
  /** Every `Authorization` value the original request carried (none, one, or several). */
  readonly authorization: readonly string[];
  /** `Origin` and `Access-Control-Request-Method` are both present (a CORS preflight, with `OPTIONS`). */
  readonly preflight: boolean;
  /** The original request announces a body; a preflight with a body is checked like any request. Default false. */
  readonly hasBody?: boolean;
  /** A method-override header (`X-HTTP-Method-Override`...) was sent: refused, as by the proxy. */
  readonly methodOverride?: boolean;
  /** The client's address: introspections wait, and are bounded, per address. Read on a cache miss only. */
  readonly clientAddress: string;
  /** The original request's checked W3C trace context, passed on to the introspection. Read on a cache miss only. */
  readonly traceHeaders?: TraceHeaders | undefined;
  /** Every `DPoP` header value of the original request (none, one, several). */
  readonly dpop?: readonly string[] | undefined;
  /**
   * The URL the client addressed (`scheme://host[:port]/path`; a query is
   * ignored), for a DPoP proof's `htu`. Undefined when unknown: DPoP proofs
   * are then refused, unless the route has `dpop.public_base_url`.
   */
  readonly url?: string | undefined;
  /** The SHA-256 thumbprint (base64url) of the client's certificate, when a trusted peer passed one on. */
  readonly certThumbprint?: string | undefined;
}

/** Whether the token was found in the cache (`hit`), needed an introspection (`miss`), or was never looked up (`-`). */
export type CacheOutcome = 'hit' | 'miss' | '-';

export interface Allow {
  readonly allow: true;
  readonly route: GuardedRoute;
  /** The token to forward; undefined on an open route and for a CORS preflight (nothing to swap). */
  readonly token: ActiveToken | undefined;
  readonly cache: CacheOutcome;
  /**
   * Whole seconds an outside cache (NGINX `proxy_cache`) may keep this
   * decision: what is left of the token's own cache entry, never more. 0:
   * not at all.
   */
  readonly ttl: number;
}

export interface Deny {
  readonly allow: false;
  readonly error: GatewayError;
  readonly route: GuardedRoute | undefined;
  readonly cache: CacheOutcome;
  /**
   * Seconds an outside cache may keep this refusal: the route's
   * `negative_cache_seconds` for a token found inactive or lacking a scope;
   * 0 for everything else (a failure of the authorization server is never
   * cached anywhere, nor a refusal of the request's shape).
   */
  readonly ttl: number;
}

export type Decision = Allow | Deny;

const BAD_TARGET = refusal('ERR_BAD_REQUEST_TARGET');
const NO_ROUTE = refusal('ERR_NO_ROUTE');
const METHOD_NOT_ALLOWED = refusal('ERR_METHOD_NOT_ALLOWED');
const MALFORMED = refusal('ERR_MALFORMED_REQUEST');
const DUPLICATE_CREDENTIALS = refusal('ERR_DUPLICATE_HEADER');
const METHOD = /^[A-Z][A-Z_-]{0,31}$/;

/** Promises `decide` returned, to find what to withdraw. */
const pendingVerdicts = new WeakMap<Promise<Decision>, { guard: Guard; verdict: Promise<Verdict> }>();

/**
 * The whole decision on a request another gateway carries: the same target
 * checks as the proxy (a path the proxy would refuse is refused), the same
 * route rules and per-route settings, the credential rules, then the token.
 * Synchronous when the answer is known (a cache hit, a refusal before any
 * token), a promise when an introspection is needed.
 *
 * @example
 * const d = await decide(guards, { method: 'GET', target: '/api/x', authorization: ['Bearer abc'], preflight: false, clientAddress: '10.0.0.1' });
 * if (d.allow && d.token) upstreamHeaders.authorization = d.token.authorization;
 */
export function decide(guards: Guards, req: DecisionRequest): Decision | Promise<Decision> {
  const now = guards.now;
  // In the proxy's order, so that every front door refuses a request the same way.
  // An upstream that answers TRACE echoes the request, JWT included (RFC 9110 §9.3.8).
  if (req.method === 'TRACE') return deny(METHOD_NOT_ALLOWED, undefined, '-', 0);
  // A method as HTTP parsers accept it: an upper-case token (a lower-case
  // `trace` must not slip past the rule above to an upstream that folds case).
  if (!METHOD.test(req.method)) return deny(MALFORMED, undefined, '-', 0);
  const target = checkTarget(req.target);
  if (target === undefined) return deny(BAD_TARGET, undefined, '-', 0);
  const route = guards.forRoute(target.path);
  if (route === REFUSED) return deny(BAD_TARGET, undefined, '-', 0);
  if (route === undefined) return deny(NO_ROUTE, undefined, '-', 0);
  if (req.methodOverride === true) return deny(METHOD_NOT_ALLOWED, route, '-', 0);
  const guard = route.guard;
  if (guard === undefined) {
    // An open route: two credentials would both reach the upstream.
    return req.authorization.length > 1 ? deny(DUPLICATE_CREDENTIALS, route, '-', 0) : { allow: true, route, token: undefined, cache: '-', ttl: 0 };
  }
  const rule = checkCredentials(req.method, target.query, req.authorization.length, req.preflight, req.hasBody === true);
  if (rule === PREFLIGHT) return { allow: true, route, token: undefined, cache: '-', ttl: 0 };
  if (rule !== undefined) return deny(rule, route, '-', 0);
  const seen: Seen = { expiresAt: 0 };
  const verdict = guard.authorize(req.authorization[0], new DecisionPresentation(req, target.path), req satisfies Requester, seen);
  if (!(verdict instanceof Promise)) return settle(verdict, route, 'hit', seen, now);
  const pending = verdict.then((v) => settle(v, route, seen.hit === true ? 'hit' : 'miss', seen, now));
  pendingVerdicts.set(pending, { guard, verdict });
  return pending;
}

/**
 * The requester that got `pending` from `decide` went away: when nobody else
 * waits for its token, an introspection not yet sent is never sent.
 */
export function withdraw(pending: Decision | Promise<Decision>): void {
  if (!(pending instanceof Promise)) return;
  const p = pendingVerdicts.get(pending);
  if (p !== undefined) p.guard.withdraw(p.verdict);
}

function settle(v: Verdict, route: GuardedRoute, cache: CacheOutcome, seen: Seen, now: () => number): Decision {
  // A sender-constrained token's allow is never kept outside: the next request's proof or certificate must be checked again.
  if (!(v instanceof GatewayError)) return { allow: true, route, token: v, cache, ttl: v.binding === undefined ? secondsLeft(v.expiresAt, now) : 0 };
  // A verdict about the token itself (not its absence, not an outage), kept
  // outside no longer than the entry it rests on, nor than negative_cache_seconds.
  // A wrong audience is one, like a missing scope: the route's requirements
  // are part of any outside cache's key.
  const known = v === TOKEN_INACTIVE || v.code === 'ERR_INSUFFICIENT_SCOPE' || v.code === 'ERR_TOKEN_AUDIENCE';
  const ttl = known ? Math.min(route.guard!.options.negative_cache_seconds, secondsLeft(seen.expiresAt, now)) : 0;
  return deny(v, route, v.code === 'ERR_TOKEN_MISSING' || v.code === 'ERR_TOKEN_MALFORMED' ? '-' : cache, ttl);
}

/** Whole seconds left until `expiresAt` (epoch ms), rounded down; 0 for none. */
function secondsLeft(expiresAt: number, now: () => number): number {
  return expiresAt === 0 ? 0 : Math.max(0, Math.floor((expiresAt - now()) / 1000));
}

function deny(error: GatewayError, route: GuardedRoute | undefined, cache: CacheOutcome, ttl: number): Deny {
  return { allow: false, error, route, cache, ttl };
}

/**
 * A decision request as the route guard reads it: its DPoP facts read only
 * when the route's scheme or the token's binding needs them (a door may
 * compute them: a certificate's thumbprint). A class, not an object literal
 * with getters: V8 builds such a literal slowly on every call (2 µs here).
 */
class DecisionPresentation implements Presentation {
  constructor(
    readonly req: DecisionRequest,
    readonly path: string,
  ) {}

  get method(): string {
    return this.req.method;
  }

  get dpop(): readonly string[] | undefined {
    return this.req.dpop;
  }

  get url(): string | undefined {
    return this.req.url;
  }

  get certThumbprint(): string | undefined {
    return this.req.certThumbprint;
  }
}
