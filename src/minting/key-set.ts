import type { JWK } from 'jose';
import type { PublishedKey, SigningKey } from './keys.js';

/** A JSON Web Key Set as published. */
export interface Jwks {
  readonly keys: readonly Readonly<JWK>[];
}

/**
 * The key the gateway signs with and the keys it publishes. A key that stops
 * being the signer (`rotate`) stays published until every token signed with
 * it has expired; `published` keys (the previous signer of another process, the
 * next one announced ahead of use) are published for as long as they are
 * configured.
 */
export class KeySet {
  #signer: SigningKey;
  readonly #published: readonly PublishedKey[];
  /** Keys retired in this process: the latest `exp` signed with each. */
  readonly #retired = new Map<string, { key: SigningKey; until: number }>();
  /** Latest `exp` (epoch seconds) signed with the current signer. */
  #signerUntil = 0;
  readonly #now: () => number;
  #jwks: Jwks | undefined;

  constructor(signer: SigningKey, published: readonly PublishedKey[] = [], now: () => number = Date.now) {
    this.#signer = signer;
    this.#published = published.filter((k) => k.kid !== signer.kid);
    this.#now = now;
  }

  get signer(): SigningKey {
    return this.#signer;
  }

  /**
   * `key` made a token that expires at `exp` (epoch seconds). Called after
   * signing, before the token is handed out: a key that `rotate` replaced
   * while it was signing (the signature is asynchronous) is kept published
   * for that token too, even if it had signed nothing before.
   */
  signed(key: SigningKey, exp: number): void {
    if (key === this.#signer) {
      if (exp > this.#signerUntil) this.#signerUntil = exp;
      return;
    }
    const retired = this.#retired.get(key.kid);
    if (retired !== undefined) {
      if (exp > retired.until) retired.until = exp;
    } else if (exp * 1000 > this.#now()) {
      this.#retired.set(key.kid, { key, until: exp });
      this.#jwks = undefined;
    }
  }

  /** Signs with `next` from now on; the old signer stays published while tokens it signed live. */
  rotate(next: SigningKey): void {
    if (next.kid === this.#signer.kid) return;
    if (this.#signerUntil * 1000 > this.#now()) this.#retired.set(this.#signer.kid, { key: this.#signer, until: this.#signerUntil });
    this.#retired.delete(next.kid);
    this.#signer = next;
    this.#signerUntil = 0;
    this.#jwks = undefined;
  }

  /** The public keys to publish: the signer, retired keys whose tokens still live, and configured ones. */
  jwks(): Jwks {
    const now = this.#now();
    let changed = false;
    for (const [kid, r] of this.#retired) {
      if (r.until * 1000 <= now) {
        this.#retired.delete(kid);
        changed = true;
      }
    }
    if (this.#jwks === undefined || changed) {
      const keys = [this.#signer, ...[...this.#retired.values()].map((r) => r.key), ...this.#published];
      const seen = new Set<string>();
      this.#jwks = Object.freeze({ keys: Object.freeze(keys.filter((k) => !seen.has(k.kid) && seen.add(k.kid)).map((k) => k.publicJwk)) });
    }
    return this.#jwks;
  }
}
