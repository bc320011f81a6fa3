import { randomUUID } from 'node:crypto';
import { SignJWT, type JWTPayload } from 'jose';
import type { KeySet } from './key-set.js';

export interface MinterOptions {
  /** `iss` of minted tokens: the gateway's public URL. */
  readonly issuer: string;
  /** Upper bound on a minted token's lifetime; its `exp` is also never later than the introspected `exp`. */
  readonly maxLifetimeSeconds: number;
  /** Introspection members copied into minted tokens besides the RFC 9068 ones. */
  readonly copyClaims: readonly string[];
  readonly keys: KeySet;
  /**
   * `aud` of a minted token whose introspection answer has none (RFC 9068
   * requires one; oidc-provider's answers for client-credentials tokens have
   * none). The answer's own `aud` always wins.
   */
  readonly audience?: string | readonly string[] | undefined;
  /** Told once, the first time a token is minted without any `aud` (no answer `aud`, no `audience`). */
  readonly onNoAudience?: (() => void) | undefined;
}

/** A minted token and the claims it carries. */
export interface Minted {
  readonly jwt: string;
  readonly claims: JWTPayload;
}

/** Claims the gateway sets itself; `copy_claims` cannot override them. */
export const MINTED_CLAIMS: ReadonlySet<string> = new Set(['iss', 'sub', 'aud', 'client_id', 'scope', 'exp', 'iat', 'nbf', 'jti', 'cnf']);

/**
 * Mints RFC 9068 access tokens (`typ: at+jwt`) from what an authorization
 * server said about an opaque token, for servers that answer introspection in
 * JSON. The API verifies them against the gateway's JWKS.
 */
export class Minter {
  readonly #o: MinterOptions;
  readonly #copy: readonly string[];
  readonly #audience: string | string[] | undefined;
  #warnedNoAudience = false;

  constructor(opts: MinterOptions) {
    if (!Number.isInteger(opts.maxLifetimeSeconds) || opts.maxLifetimeSeconds < 1) throw new TypeError('"maxLifetimeSeconds" must be a positive integer');
    const aud = opts.audience;
    if (aud !== undefined && (Array.isArray(aud) ? aud.length === 0 || aud.some((a) => typeof a !== 'string' || a === '') : typeof aud !== 'string' || aud === '')) {
      throw new TypeError('"audience" option must be a non-empty string or a non-empty list of them');
    }
    this.#o = opts;
    this.#copy = opts.copyClaims.filter((c) => !MINTED_CLAIMS.has(c));
    // One value stays a string, as most APIs' verifiers compare it.
    this.#audience = aud === undefined ? undefined : typeof aud === 'string' ? aud : aud.length === 1 ? aud[0]! : [...aud];
  }

  get issuer(): string {
    return this.#o.issuer;
  }

  /**
   * `introspected`: the answer's members, already checked for type. `sub` is
   * the introspected one, or the client's id for a token issued to a client
   * itself (RFC 9068 §2.2). `aud` is the introspected one, else `audience`,
   * else absent (reported once through `onNoAudience`). `exp` is the
   * introspected one or `now + maxLifetimeSeconds`, whichever comes first.
   */
  async mint(introspected: JWTPayload, now: number = Date.now()): Promise<Minted> {
    const iat = Math.floor(now / 1000);
    let exp = iat + this.#o.maxLifetimeSeconds;
    if (typeof introspected.exp === 'number') exp = Math.min(exp, Math.floor(introspected.exp));
    const claims: Record<string, unknown> = {};
    for (const name of this.#copy) if (introspected[name] !== undefined) claims[name] = introspected[name];
    claims.iss = this.#o.issuer;
    const sub = introspected.sub ?? introspected.client_id;
    if (sub !== undefined) claims.sub = sub;
    const aud = introspected.aud ?? this.#audience;
    if (aud !== undefined) claims.aud = aud;
    else if (!this.#warnedNoAudience) {
      this.#warnedNoAudience = true;
      this.#o.onNoAudience?.();
    }
    if (introspected.client_id !== undefined) claims.client_id = introspected.client_id;
    if (introspected.scope !== undefined) claims.scope = introspected.scope;
    claims.exp = exp;
    claims.iat = iat;
    claims.jti = randomUUID();
    if (introspected.cnf !== undefined) claims.cnf = introspected.cnf;
    const key = this.#o.keys.signer;
    const jwt = await new SignJWT(claims).setProtectedHeader({ alg: key.alg, typ: 'at+jwt', kid: key.kid }).sign(key.privateKey);
    this.#o.keys.signed(key, exp);
    return { jwt, claims: claims as JWTPayload };
  }
}
