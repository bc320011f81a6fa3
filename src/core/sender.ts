import type { JWTPayload } from 'jose';
import type { ActiveToken, Binding } from '../cache/entry.js';
import type { GatewayConfig, PhantomTokenOptions, Scheme } from '../config/schema.js';
import { DpopProofError, DpopVerifier, type DpopFailure, type NonceSource, type ReplayStore, type VerifiedProof } from '../dpop/proof.js';
import type { ScopePolicy } from '../policy/scope.js';
import { parseBearer } from './bearer.js';
import { GatewayError, TOKEN_MISSING, type ErrorCode } from './errors.js';
import type { Requester, Seen, TokenExchange, Verdict } from './exchange.js';

/*
 * Sender-constrained tokens at the gateway: the `scheme` a route accepts
 * (Curity's option: Bearer, DPoP, or any), DPoP proofs (RFC 9449) checked
 * against the opaque token the gateway alone sees, and the token's binding
 * (`cnf.jkt`, `cnf["x5t#S256"]`) checked on every request, cache hits
 * included. Every front door goes through `RouteGuard.authorize`.
 */

/** What a front door knows of a request, for the scheme, the proof and the binding. Read only when needed. */
export interface Presentation {
  /** The request's method, as sent (htm). */
  readonly method: string;
  /** The request's `DPoP` header: its value, every value when sent more than once, or undefined. */
  readonly dpop: string | readonly string[] | undefined;
  /** The request path as the client sent it, without the query (with `dpop.public_base_url`, htu is that URL and this path). */
  readonly path: string;
  /** The URL the client addressed (scheme, host, path; the query is ignored), for htu; undefined when unknown. */
  readonly url: string | undefined;
  /** The SHA-256 thumbprint (base64url) of the client's TLS certificate; undefined when none was presented. */
  readonly certThumbprint: string | undefined;
}

/** What the route guards share: where proofs are remembered, the server nonces, and how a refused proof is logged. */
export interface SenderDeps {
  replay: ReplayStore;
  /** How long every proof is remembered (ms from its iat): the configuration's longest window, at least the route's own. */
  rememberMs?: number | undefined;
  /** Server nonces, for routes with `dpop.nonce: true`. */
  nonces?: NonceSource | undefined;
  now?: () => number;
  /** Told which proof check failed (debug log); the client is never told. */
  onProofRefused?: ((failure: DpopFailure, detail: string) => void) | undefined;
}

const DPOP_CREDENTIALS = /^[Dd][Pp][Oo][Pp] +([A-Za-z0-9\-._~+/]+=*)$/;
const DPOP_SCHEME = /^[Dd][Pp][Oo][Pp](?: |$)/;

const FAILURE_CODES: Readonly<Record<DpopFailure, ErrorCode>> = {
  missing: 'ERR_DPOP_PROOF_MISSING',
  multiple: 'ERR_DPOP_PROOF_INVALID',
  malformed: 'ERR_DPOP_PROOF_INVALID',
  typ: 'ERR_DPOP_PROOF_INVALID',
  alg: 'ERR_DPOP_PROOF_INVALID',
  jwk: 'ERR_DPOP_PROOF_INVALID',
  signature: 'ERR_DPOP_PROOF_INVALID',
  jti: 'ERR_DPOP_PROOF_INVALID',
  htm: 'ERR_DPOP_PROOF_MISMATCH',
  htu: 'ERR_DPOP_PROOF_MISMATCH',
  ath: 'ERR_DPOP_PROOF_MISMATCH',
  iat: 'ERR_DPOP_PROOF_STALE',
  replay: 'ERR_DPOP_PROOF_REPLAYED',
  nonce: 'ERR_DPOP_NONCE',
  full: 'ERR_DPOP_REPLAY_FULL',
};

/** Nobody waits for the verdict any more (a withdrawn DPoP request): never sent. */
const WITHDRAWN = Object.freeze(new GatewayError('ERR_CLIENT_CLOSED'));

/**
 * What protects one route: its exchange (authorization server, client,
 * cache bounds), its scope and audience policy, and its sender constraints.
 *
 * @example
 * const v = guard.authorize(req.headers.authorization, presentation, requester);
 * // ActiveToken: forward with v.authorization (and v.dpop's headers); GatewayError: refuse
 */
export class RouteGuard {
  readonly scheme: Scheme;
  /** Made on the first DPoP request (a Bearer route never needs one, nor its cache of keys). */
  #dpopVerifier: DpopVerifier | undefined;
  readonly #maxTokenLength: number;
  readonly #forwardProof: boolean;
  readonly #publicBase: string | undefined;
  readonly #deps: SenderDeps;
  /** The route's DPoP challenges, built once: `algs` is the route's list. */
  readonly #algs: string;
  readonly #proofRefusals = new Map<ErrorCode, GatewayError>();
  readonly #dpopBound: GatewayError;
  readonly #notDpopBound: GatewayError;
  readonly #certificateMismatch: GatewayError;
  readonly #certificateMismatchDpop: GatewayError;
  readonly #missing: GatewayError;
  readonly #malformedDpop: GatewayError;
  /** Refusals given again with a DPoP challenge, made once each. */
  readonly #asDpop = new WeakMap<GatewayError, GatewayError>();
  /** The use_dpop_nonce refusal of the current nonce. */
  #nonceRefusal: GatewayError | undefined;
  /** Pending verdicts of DPoP requests: what `withdraw` must take back. */
  readonly #pending = new WeakMap<Promise<Verdict>, { inner: Promise<Verdict> | undefined; withdrawn: boolean }>();

  constructor(
    readonly exchange: TokenExchange,
    readonly policy: ScopePolicy,
    /** The route's merged phantom token options. */
    readonly options: Readonly<PhantomTokenOptions>,
    deps: SenderDeps,
  ) {
    this.scheme = options.scheme;
    this.#deps = deps;
    this.#maxTokenLength = options.max_token_length;
    const d = options.dpop;
    this.#forwardProof = d.forward === 'dpop';
    this.#publicBase = d.public_base_url === undefined ? undefined : d.public_base_url.replace(/\/+$/, '');
    const algs = (this.#algs = `algs="${d.algorithms.join(' ')}"`);
    this.#dpopBound = Object.freeze(new GatewayError('ERR_TOKEN_DPOP_BOUND', { challenge: `DPoP error="invalid_token", ${algs}` }));
    this.#notDpopBound = Object.freeze(new GatewayError('ERR_TOKEN_NOT_DPOP_BOUND', { challenge: `DPoP error="invalid_token", ${algs}` }));
    this.#certificateMismatch = Object.freeze(new GatewayError('ERR_TOKEN_CERTIFICATE_MISMATCH', { challenge: 'Bearer error="invalid_token"' }));
    this.#certificateMismatchDpop = Object.freeze(new GatewayError('ERR_TOKEN_CERTIFICATE_MISMATCH', { challenge: `DPoP error="invalid_token", ${algs}` }));
    this.#missing =
      this.scheme === 'Bearer'
        ? TOKEN_MISSING
        : Object.freeze(new GatewayError('ERR_TOKEN_MISSING', { challenge: this.scheme === 'any' ? `Bearer, DPoP ${algs}` : `DPoP ${algs}` }));
    this.#malformedDpop = Object.freeze(new GatewayError('ERR_TOKEN_MALFORMED', { challenge: `DPoP error="invalid_request", ${algs}` }));
  }

  /**
   * The verdict on `authorization` for this route. A bearer token found in
   * the cache is decided at once; a DPoP request always takes a promise (its
   * proof's signature is checked asynchronously), as does a token that
   * needs an introspection.
   */
  authorize(authorization: string | undefined, facts: Presentation, requester?: Requester, seen?: Seen): Verdict | Promise<Verdict> {
    const scheme = this.scheme;
    if (scheme === 'Bearer' || (scheme === 'any' && (authorization === undefined || !DPOP_SCHEME.test(authorization)))) {
      const token = parseBearer(authorization, this.#maxTokenLength);
      if (typeof token !== 'string') return token === TOKEN_MISSING ? this.#missing : token;
      const found = this.exchange.resolve(token, requester, seen);
      if (!(found instanceof Promise)) return this.#bearer(found, facts);
      return this.exchange.chain(found, (v) => this.#bearer(v, facts));
    }
    // scheme DPoP, or any with the DPoP scheme.
    if (authorization === undefined || authorization.length === 0) return this.#missing;
    const m = authorization.length > this.#maxTokenLength + 64 ? null : DPOP_CREDENTIALS.exec(authorization);
    if (m === null || m[1]!.length > this.#maxTokenLength) {
      // Another scheme (Bearer on a DPoP route) is no credential at all, as DPoP is on a Bearer route.
      return DPOP_SCHEME.test(authorization) ? this.#malformedDpop : this.#missing;
    }
    const handle: { inner: Promise<Verdict> | undefined; withdrawn: boolean } = { inner: undefined, withdrawn: false };
    const pending = this.#dpop(m[1]!, facts, requester, seen, handle);
    this.#pending.set(pending, handle);
    return pending;
  }

  /**
   * The requester that got `pending` from `authorize` went away: an
   * introspection nobody else waits for is not sent.
   */
  withdraw(pending: Verdict | Promise<Verdict>): void {
    if (!(pending instanceof Promise)) return;
    const handle = this.#pending.get(pending);
    if (handle === undefined) return this.exchange.withdraw(pending);
    handle.withdrawn = true;
    if (handle.inner !== undefined) this.exchange.withdraw(handle.inner);
  }

  get #verifier(): DpopVerifier {
    const d = this.options.dpop;
    const deps = this.#deps;
    return (this.#dpopVerifier ??= new DpopVerifier({
      algorithms: d.algorithms,
      maxAgeSeconds: d.max_age_seconds,
      clockSkewSeconds: d.clock_skew_seconds,
      replay: deps.replay,
      rememberMs: deps.rememberMs,
      nonces: d.nonce ? deps.nonces : undefined,
      ...(deps.now ? { now: deps.now } : {}),
    }));
  }

  /** A bearer token's verdict: refused when it is bound to a DPoP key, or to a certificate the request did not present. */
  #bearer(v: Verdict, facts: Presentation): Verdict {
    if (v instanceof GatewayError) return v;
    const b = v.binding;
    if (b !== undefined) {
      // RFC 9449 §7.2: a DPoP-bound token presented as a bearer token.
      if (b.jkt !== undefined) return this.#dpopBound;
      if (b.x5t !== undefined && b.x5t !== facts.certThumbprint) return this.#certificateMismatch;
    }
    return this.policy.check(v) ?? v;
  }

  async #dpop(token: string, facts: Presentation, requester: Requester | undefined, seen: Seen | undefined, handle: { inner: Promise<Verdict> | undefined; withdrawn: boolean }): Promise<Verdict> {
    let proof: VerifiedProof;
    try {
      proof = await this.#verifier.check(facts.dpop, { method: facts.method, url: this.#publicBase === undefined ? facts.url : this.#publicBase + facts.path, accessToken: token });
    } catch (err) {
      return this.#refused(err);
    }
    const jkt = proof.jkt;
    if (handle.withdrawn) return WITHDRAWN;
    let v = this.exchange.resolve(token, requester, seen);
    if (v instanceof Promise) {
      handle.inner = v;
      v = await v;
    }
    if (v instanceof GatewayError) return this.#asDpopChallenge(v);
    const b: Binding | undefined = v.binding;
    // RFC 9449 §7.1: the DPoP scheme is for DPoP-bound tokens, and the proof's key must be the one the token is bound to.
    if (b?.jkt === undefined) return this.#notDpopBound;
    if (b.jkt !== jkt) return this.#proofRefusal('key');
    if (b.x5t !== undefined && b.x5t !== facts.certThumbprint) return this.#certificateMismatchDpop;
    // Remembered only now, its key being the token's: whoever holds no bound token cannot fill the memory.
    try {
      await this.#verifier.remember(proof);
    } catch (err) {
      return this.#refused(err);
    }
    const refused = this.policy.check(v);
    if (refused !== undefined) return this.#asDpopChallenge(refused);
    const jwt = v.authorization.slice(v.authorization.indexOf(' ') + 1);
    if (!this.#forwardProof) return new ProvenToken(v, `Bearer ${jwt}`, undefined);
    const header = typeof facts.dpop === 'string' ? facts.dpop : facts.dpop![0]!;
    return new ProvenToken(v, `DPoP ${jwt}`, { proof: header.trim(), jkt });
  }

  /** The refusal for what `check` or `remember` threw. */
  #refused(err: unknown): GatewayError {
    if (!(err instanceof DpopProofError)) throw err;
    this.#deps.onProofRefused?.(err.failure, err.message);
    return this.#proofRefusal(err.failure);
  }

  /** The refusal of a proof: one challenge for every check (the code, logged, says which). */
  #proofRefusal(failure: DpopFailure | 'key'): GatewayError {
    const code: ErrorCode = failure === 'key' ? 'ERR_DPOP_KEY_MISMATCH' : FAILURE_CODES[failure];
    if (code === 'ERR_DPOP_NONCE') {
      const nonce = this.#verifier.nonce!;
      if (this.#nonceRefusal?.dpopNonce !== nonce) {
        this.#nonceRefusal = Object.freeze(new GatewayError('ERR_DPOP_NONCE', { challenge: `DPoP error="use_dpop_nonce", ${this.#algs}`, dpopNonce: nonce }));
      }
      return this.#nonceRefusal;
    }
    let r = this.#proofRefusals.get(code);
    if (r === undefined) {
      r = Object.freeze(
        code === 'ERR_DPOP_REPLAY_FULL' ? new GatewayError(code, { retryAfter: '1' }) : new GatewayError(code, { challenge: `DPoP error="invalid_dpop_proof", ${this.#algs}` }),
      );
      this.#proofRefusals.set(code, r);
    }
    return r;
  }

  /** `err` with its RFC 6750 challenge given for the DPoP scheme (RFC 9449 §7.1), when it has one. */
  #asDpopChallenge(err: GatewayError): GatewayError {
    const c = err.challenge;
    if (c === undefined || !c.startsWith('Bearer')) return err;
    let d = this.#asDpop.get(err);
    if (d === undefined) {
      const params = c.slice('Bearer'.length).trim();
      d = Object.freeze(
        new GatewayError(err.code, {
          challenge: params === '' ? `DPoP ${this.#algs}` : `DPoP ${params}, ${this.#algs}`,
          ...(err.retryAfter !== undefined ? { retryAfter: err.retryAfter } : {}),
          detail: err.message,
        }),
      );
      this.#asDpop.set(err, d);
    }
    return d;
  }
}

/** A cached token as one request with a verified DPoP proof forwards it. */
class ProvenToken implements ActiveToken {
  readonly active = true as const;

  constructor(
    readonly token: ActiveToken,
    readonly authorization: string,
    readonly dpop: { readonly proof: string; readonly jkt: string } | undefined,
  ) {}

  get scope(): string {
    return this.token.scope;
  }

  get expiresAt(): number {
    return this.token.expiresAt;
  }

  get claims(): Readonly<JWTPayload> {
    return this.token.claims;
  }

  get clientId(): string | undefined {
    return this.token.clientId;
  }

  get sub(): string | undefined {
    return this.token.sub;
  }

  get binding(): Binding | undefined {
    return this.token.binding;
  }
}

/** Header the gateway sets on a request whose DPoP proof it verified: the proof key's RFC 7638 thumbprint. */
export const DPOP_VERIFIED = 'x-dpop-verified';

/** The longest a DPoP proof may be accepted for under `config`: (max_age_seconds + 1) s of its longest DPoP route; 0 with none. */
export function dpopWindowMs(config: GatewayConfig): number {
  let w = 0;
  for (const r of config.routes) if (r.phantom_token !== false && r.phantom_token.scheme !== 'Bearer') w = Math.max(w, (r.phantom_token.dpop.max_age_seconds + 1) * 1000);
  return w;
}
