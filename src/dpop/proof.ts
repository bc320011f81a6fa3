import { hash } from 'node:crypto';
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { errors, jwtVerify } from 'jose';
import { LRUCache } from 'lru-cache';
import { DPOP_ALGORITHMS } from '../config/schema.js';

/*
 * DPoP proof verification (RFC 9449 §4.3), for the gateway: the only party
 * in the phantom token pattern that sees the opaque token, and so the only
 * one that can check a proof's `ath`. The route guards (src/core/sender.ts)
 * use it for every front door.
 *
 * Each failed check has its own code, for the log; a client is only ever
 * told `invalid_dpop_proof` (which check failed is none of its business).
 */

/** Why a proof was refused (logged, never sent). */
export type DpopFailure =
  | 'missing'
  | 'multiple'
  | 'malformed'
  | 'typ'
  | 'alg'
  | 'jwk'
  | 'signature'
  | 'jti'
  | 'htm'
  | 'htu'
  | 'iat'
  | 'ath'
  | 'nonce'
  | 'replay'
  | 'full';

/** A refused proof; `failure` says which check (for the log). */
export class DpopProofError extends Error {
  constructor(readonly failure: DpopFailure, detail: string) {
    super(detail);
    this.name = 'DpopProofError';
  }
}

export { DPOP_ALGORITHMS };

/**
 * Where proofs are remembered against replay. `firstUse` says whether `key`
 * is new (`true`), seen (`false`), or cannot be remembered because the
 * memory is full of proofs still inside their window (`'full'`: refusing is
 * the only safe answer, as forgetting a live proof would let it be
 * replayed); it remembers `key` until `untilMs` (epoch ms). A proof signed
 * at `iatMs` is refused when it may have been forgotten already (see
 * `MemoryReplayStore.forgetBefore`). The gateway's own is in memory; with
 * `cache.redis`, Redis too (every instance sees every proof), and with
 * `workers`, the primary's (every worker does).
 */
export interface ReplayStore {
  firstUse(key: string, untilMs: number, iatMs: number): FirstUse | Promise<FirstUse>;
}

export type FirstUse = boolean | 'full';

/**
 * Proofs remembered in this process, each until the end of its window,
 * never longer and never less: past `max` live proofs, new ones are refused
 * (`'full'`), never an old one forgotten early. Entries leave in the order
 * they came, which is the order their windows end give or take one window.
 */
export class MemoryReplayStore implements ReplayStore {
  readonly #seen = new Map<string, number>();
  readonly #now: () => number;
  /** How many proofs may be remembered at once. */
  max: number;
  /** Proofs signed before this (epoch ms) may have been forgotten: refused as replays. */
  #floor = 0;
  /** When a full scan for expired entries last ran (one a second at most). */
  #scannedAt = 0;

  constructor(max: number, now: () => number = Date.now) {
    this.max = max;
    this.#now = now;
  }

  get size(): number {
    return this.#seen.size;
  }

  firstUse(key: string, untilMs: number, iatMs: number): FirstUse {
    const now = this.#now();
    if (iatMs < this.#floor) return false;
    const until = this.#seen.get(key);
    if (until !== undefined && until > now) return false;
    this.#prune(now);
    if (this.#seen.size >= this.max) return 'full';
    this.#seen.delete(key);
    this.#seen.set(key, untilMs);
    return true;
  }

  /**
   * From now on, proofs signed before `iatMs` are refused: a reload that
   * lengthens the window would otherwise accept proofs already forgotten
   * under the shorter one.
   */
  forgetBefore(iatMs: number): void {
    this.#floor = Math.max(this.#floor, iatMs);
  }

  /** Every proof remembered `ms` longer (a reload lengthened the window: those still remembered must outlive it too). */
  extend(ms: number): void {
    for (const [k, u] of this.#seen) this.#seen.set(k, u + ms);
  }

  /** Drops expired entries from the oldest end; past the bound, every expired one (a scan, at most once a second). */
  #prune(now: number): void {
    for (const [k, u] of this.#seen) {
      if (u > now) break;
      this.#seen.delete(k);
    }
    if (this.#seen.size < this.max || now - this.#scannedAt < 1000) return;
    this.#scannedAt = now;
    for (const [k, u] of this.#seen) if (u <= now) this.#seen.delete(k);
  }
}

/** A second memory of proofs shared with other processes (Redis, a cluster's primary); undefined when it could not say. */
export interface SharedFirstUse {
  firstUse(key: string, untilMs: number, iatMs: number): Promise<FirstUse | undefined>;
}

/**
 * This process's memory first (a replay here is refused without a round
 * trip), then the shared one: a proof first used elsewhere is refused here
 * too. When the shared memory cannot answer, the local one decides alone (a
 * Redis outage never refuses a request).
 */
export class LayeredReplayStore implements ReplayStore {
  constructor(
    readonly local: ReplayStore,
    readonly shared: SharedFirstUse,
  ) {}

  firstUse(key: string, untilMs: number, iatMs: number): FirstUse | Promise<FirstUse> {
    const here = this.local.firstUse(key, untilMs, iatMs);
    if (here instanceof Promise) return here.then((first) => (first === true ? this.#shared(key, untilMs, iatMs) : first));
    return here === true ? this.#shared(key, untilMs, iatMs) : here;
  }

  async #shared(key: string, untilMs: number, iatMs: number): Promise<FirstUse> {
    return (await this.shared.firstUse(key, untilMs, iatMs)) ?? true;
  }
}

/** Server nonces (RFC 9449 §9): what a proof's `nonce` must be, and the one to give a client. */
export interface NonceSource {
  /** The nonce to hand out now (`DPoP-Nonce`). */
  current(): string;
  /** Whether a proof's `nonce` is one still accepted. */
  accepts(nonce: unknown): boolean;
}

export interface DpopVerifierOptions {
  /** Algorithms accepted, a subset of `DPOP_ALGORITHMS` (default ES256, EdDSA, Ed25519, PS256, RS256). */
  algorithms?: readonly string[];
  /** How old a proof's `iat` may be, in seconds (default 60). */
  maxAgeSeconds?: number;
  /** How far ahead of this clock a proof's `iat` may be, in seconds (default 5). */
  clockSkewSeconds?: number;
  /** Proofs remembered against replay (default 100,000; the oldest go first). Ignored when `replay` is given. */
  maxReplayEntries?: number;
  /** Where proofs are remembered (default: in memory, `maxReplayEntries`). */
  replay?: ReplayStore;
  /** How long a proof is remembered, in ms from its iat: at least (maxAgeSeconds + 1) s, the default. */
  rememberMs?: number | undefined;
  /** Server nonces a proof must carry; undefined: none asked for. */
  nonces?: NonceSource | undefined;
  now?: () => number;
}

/** The request a proof must be bound to. */
export interface ProofTarget {
  /** The request's method, as sent. */
  readonly method: string;
  /** The request's URL as the client addressed it (the public URL behind proxies); query and fragment are ignored. Undefined: unknown (every proof refused). */
  readonly url: string | undefined;
  /** The access token the proof comes with (its SHA-256 must be `ath`). */
  readonly accessToken: string;
}

/** A proof that passed every check. */
export interface VerifiedProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's key: compare with the token's `cnf.jkt`. */
  readonly jkt: string;
  readonly jti: string;
  /** Its `iat` (seconds). */
  readonly iat: number;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Proofs are small; anything larger is not one (and is not parsed). */
const MAX_PROOF_LENGTH = 8192;

/**
 * Verifies DPoP proofs and remembers their `jti` for the age window, so a
 * proof is accepted once.
 *
 * @example
 * const dpop = new DpopVerifier({ algorithms: ['ES256'] });
 * const { jkt } = await dpop.verify(req.headers.dpop, { method: 'GET', url: 'https://api.example.com/items', accessToken });
 * if (jkt !== token.claims.cnf?.jkt) refuse();
 */
export class DpopVerifier {
  readonly algorithms: readonly string[];
  readonly #maxAge: number;
  readonly #skew: number;
  readonly #now: () => number;
  readonly #replay: ReplayStore;
  readonly #rememberMs: number;
  readonly #nonces: NonceSource | undefined;
  /** Proof keys already imported, by thumbprint. */
  readonly #keys = new LRUCache<string, ProofKey>({ max: 10_000 });

  constructor(opts: DpopVerifierOptions = {}) {
    const algorithms = opts.algorithms ?? ['ES256', 'EdDSA', 'Ed25519', 'PS256', 'RS256'];
    for (const a of algorithms) if (!(DPOP_ALGORITHMS as readonly string[]).includes(a)) throw new TypeError(`"${a}" is not an asymmetric JWS algorithm a DPoP proof may use`);
    if (algorithms.length === 0) throw new TypeError('at least one DPoP algorithm is required');
    this.algorithms = Object.freeze([...algorithms]);
    this.#maxAge = opts.maxAgeSeconds ?? 60;
    this.#skew = opts.clockSkewSeconds ?? 5;
    this.#now = opts.now ?? Date.now;
    this.#replay = opts.replay ?? new MemoryReplayStore(opts.maxReplayEntries ?? 100_000, this.#now);
    this.#rememberMs = Math.max((this.#maxAge + 1) * 1000, opts.rememberMs ?? 0);
    this.#nonces = opts.nonces;
  }

  /**
   * The public key of a proof's `jwk` header, from the cache of keys seen
   * (bounded), else checked and imported: a public EC (P-256, P-384,
   * P-521), OKP (Ed25519) or RSA (2048 to 4096 bits) key, without private
   * members. Its RFC 7638 thumbprint names it in the cache.
   */
  #keyOf(jwk: unknown): ProofKey {
    if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) throw new DpopProofError('jwk', 'the proof has no jwk header');
    const k = jwk as Record<string, unknown>;
    for (const m of PRIVATE_MEMBERS) if (m in k) throw new DpopProofError('jwk', 'the proof carries a private or symmetric key');
    const jkt = thumbprint(k);
    let found = this.#keys.get(jkt);
    if (found === undefined) {
      let key: KeyObject;
      try {
        key = createPublicKey({ key: k as JsonWebKey, format: 'jwk' });
      } catch {
        throw new DpopProofError('jwk', 'the proof has no usable public jwk');
      }
      found = { key, jkt };
      this.#keys.set(jkt, found);
    }
    return found;
  }

  /** The server nonce to hand a client, when nonces are asked for. */
  get nonce(): string | undefined {
    return this.#nonces?.current();
  }

  /**
   * Checks `header` (the `DPoP` header's value, or its values when sent more
   * than once) against `target`; the proof's key thumbprint, or a
   * `DpopProofError`.
   */
  async check(header: string | readonly string[] | undefined, target: ProofTarget): Promise<VerifiedProof> {
    if (header === undefined) throw new DpopProofError('missing', 'no DPoP header');
    if (typeof header !== 'string') {
      if (header.length !== 1) throw new DpopProofError('multiple', 'more than one DPoP header');
      header = header[0]!;
    }
    if (header.includes(',')) throw new DpopProofError('multiple', 'more than one DPoP proof');
    const proof = header.trim();
    if (proof.length > MAX_PROOF_LENGTH || !COMPACT_JWS.test(proof)) throw new DpopProofError('malformed', 'the DPoP header is not a compact JWS');

    let payload: Record<string, unknown>;
    // The proof's key, imported once per key (a client signs every proof with the same one) and named by its RFC 7638 thumbprint.
    let key: ProofKey | undefined;
    try {
      ({ payload } = await jwtVerify(proof, (header) => (key = this.#keyOf(header.jwk)).key, { typ: 'dpop+jwt', algorithms: [...this.algorithms] }));
    } catch (err) {
      throw err instanceof DpopProofError ? err : mapJoseError(err);
    }
    const jkt = key!.jkt;

    const { jti, htm, htu, iat, ath } = payload;
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw new DpopProofError('jti', 'jti missing or not a string of at most 256 characters');
    if (htm !== target.method) throw new DpopProofError('htm', 'htm is not the request method');
    const wanted = target.url === undefined ? undefined : normalizeHtu(target.url);
    if (typeof htu !== 'string' || wanted === undefined || normalizeHtu(htu) !== wanted) throw new DpopProofError('htu', 'htu is not the request URL');
    const now = Math.floor(this.#now() / 1000);
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new DpopProofError('iat', 'iat missing');
    if (iat > now + this.#skew) throw new DpopProofError('iat', 'iat is in the future');
    if (iat < now - this.#maxAge) throw new DpopProofError('iat', 'the proof is too old');
    if (ath !== hash('sha256', target.accessToken, 'base64url')) throw new DpopProofError('ath', 'ath is not the hash of the access token');

    if (this.#nonces !== undefined && !this.#nonces.accepts(payload.nonce)) throw new DpopProofError('nonce', payload.nonce === undefined ? 'the proof carries no nonce' : 'the nonce is not one the gateway accepts now');

    return { jkt, jti, iat };
  }

  /**
   * Remembers a checked proof, once its key is known to be the token's (so
   * only holders of a token's key can fill the memory): `replay` when it was
   * used before, `full` when it cannot be remembered.
   */
  async remember(proof: VerifiedProof): Promise<void> {
    // Once per key and jti within the window (remembered as a hash: a jti is the client's choice of text).
    // Accepted while floor(now / 1000) - iat <= max_age_seconds: until (iat + max_age_seconds + 1) s.
    const seenKey = hash('sha256', `${proof.jkt}\n${proof.jti}`, 'base64url');
    const first = await this.#replay.firstUse(seenKey, proof.iat * 1000 + this.#rememberMs, proof.iat * 1000);
    if (first === 'full') throw new DpopProofError('full', 'the replay memory is full of live proofs (cache.max_dpop_proofs)');
    if (!first) throw new DpopProofError('replay', 'this proof was already used');
  }

  /** `check`, then `remember`: a proof that passes is accepted once. */
  async verify(header: string | readonly string[] | undefined, target: ProofTarget): Promise<VerifiedProof> {
    const proof = await this.check(header, target);
    await this.remember(proof);
    return proof;
  }
}

/** A proof's key, imported, and its RFC 7638 SHA-256 thumbprint. */
interface ProofKey {
  readonly key: KeyObject;
  readonly jkt: string;
}

const B64URL = /^[A-Za-z0-9_-]+$/;
/** base64url lengths: a P-521 coordinate is 66 bytes (88 characters); a 4096-bit RSA modulus 512 bytes (683 characters). */
const MAX_COORDINATE = 88;
const MIN_MODULUS = 342; // 2048 bits
const MAX_MODULUS = 683; // 4096 bits

/**
 * The RFC 7638 SHA-256 thumbprint of a public JWK (base64url): the hash of
 * its required members, in lexicographic order, as JSON without spaces. The
 * key is also held to what a proof key may be: EC on P-256/384/521, OKP
 * Ed25519, RSA of 2048 to 4096 bits (a larger modulus only costs the
 * gateway time), every member a base64url string of sane length.
 */
export function thumbprint(jwk: Readonly<Record<string, unknown>>): string {
  const str = (name: string, max: number, min = 1): string => {
    const v = jwk[name];
    if (typeof v !== 'string' || v.length < min || v.length > max || !B64URL.test(v)) throw new DpopProofError('jwk', `the proof's jwk has no usable ${name}`);
    return v;
  };
  let canonical: string;
  switch (jwk.kty) {
    case 'EC': {
      const crv = jwk.crv;
      if (crv !== 'P-256' && crv !== 'P-384' && crv !== 'P-521') throw new DpopProofError('jwk', 'the proof key is on a curve not allowed');
      canonical = `{"crv":"${crv}","kty":"EC","x":"${str('x', MAX_COORDINATE)}","y":"${str('y', MAX_COORDINATE)}"}`;
      break;
    }
    case 'OKP':
      if (jwk.crv !== 'Ed25519') throw new DpopProofError('jwk', 'the proof key is on a curve not allowed');
      canonical = `{"crv":"Ed25519","kty":"OKP","x":"${str('x', MAX_COORDINATE)}"}`;
      break;
    case 'RSA':
      canonical = `{"e":"${str('e', 8)}","kty":"RSA","n":"${str('n', MAX_MODULUS, MIN_MODULUS)}"}`;
      break;
    default:
      throw new DpopProofError('jwk', 'the proof key is not an EC, OKP or RSA public key');
  }
  return hash('sha256', canonical, 'base64url');
}

/**
 * `htu` and the request URL compared as RFC 9449 §4.3 asks: without query
 * and fragment, after RFC 3986 §6.2.2/6.2.3 normalization (scheme and host
 * in lower case, default port dropped, empty path as `/`, dot segments
 * removed, percent-encodings in upper case and those of unreserved
 * characters decoded). Undefined when not an http(s) URL.
 */
export function normalizeHtu(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return undefined;
  // RFC 3986 §6.2.2.1-2: percent-encodings in upper case, and those of unreserved characters decoded (%7E is ~).
  const path = u.pathname.includes('%') ? u.pathname.replace(PERCENT_ENCODED, normalizeEscape) : u.pathname;
  return `${u.protocol}//${u.host}${path}`;
}

const PERCENT_ENCODED = /%[0-9A-Fa-f]{2}/g;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

function normalizeEscape(escape: string): string {
  const c = String.fromCharCode(Number.parseInt(escape.slice(1), 16));
  return UNRESERVED.test(c) ? c : escape.toUpperCase();
}

function mapJoseError(err: unknown): DpopProofError {
  if (err instanceof errors.JOSEAlgNotAllowed) return new DpopProofError('alg', 'the proof uses an algorithm not allowed');
  if (err instanceof errors.JWSSignatureVerificationFailed) return new DpopProofError('signature', 'the proof signature does not verify');
  if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'typ') return new DpopProofError('typ', 'typ is not dpop+jwt');
  if (err instanceof errors.JWSInvalid || err instanceof errors.JOSENotSupported || err instanceof errors.JWKInvalid) {
    return /jwk|key/i.test((err as Error).message) ? new DpopProofError('jwk', 'the proof has no usable public jwk') : new DpopProofError('malformed', 'the proof is not a valid JWS');
  }
  return new DpopProofError('malformed', 'the proof is not a valid JWT');
}
