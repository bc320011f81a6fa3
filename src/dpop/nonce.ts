import { createHmac, timingSafeEqual } from 'node:crypto';
import type { NonceSource } from './proof.js';

/**
 * Server nonces for DPoP proofs (RFC 9449 §9) without server state: a nonce
 * is the number of a time window and an HMAC of it under a secret, so any
 * process holding the secret (every worker, every instance sharing the Redis
 * key secret) accepts the nonces of any other. The nonce of the current
 * window and of the one before are accepted: a client is asked for a new one
 * at most once per window, and a nonce lives between one and two windows.
 *
 * @example
 * const nonces = new WindowNonces(secret, 60);
 * res.setHeader('dpop-nonce', nonces.current());
 * nonces.accepts(proof.nonce); // true within 60 to 120 s
 */
export class WindowNonces implements NonceSource {
  readonly #secret: Buffer;
  readonly #windowMs: number;
  readonly #now: () => number;
  #window = -1;
  #current = '';

  constructor(secret: Buffer, windowSeconds: number, now: () => number = Date.now) {
    if (secret.length < 32) throw new TypeError('a nonce secret of at least 32 bytes is required');
    this.#secret = secret;
    this.#windowMs = windowSeconds * 1000;
    this.#now = now;
  }

  current(): string {
    const w = Math.floor(this.#now() / this.#windowMs);
    if (w !== this.#window) {
      this.#window = w;
      this.#current = this.#make(w);
    }
    return this.#current;
  }

  accepts(nonce: unknown): boolean {
    // 8 bytes of window and 16 of MAC: 32 base64url characters.
    if (typeof nonce !== 'string' || nonce.length !== 32) return false;
    const raw = Buffer.from(nonce, 'base64url');
    if (raw.length !== 24 || raw.toString('base64url') !== nonce) return false;
    const w = Number(raw.readBigUInt64BE(0));
    const now = Math.floor(this.#now() / this.#windowMs);
    if (w !== now && w !== now - 1) return false;
    return timingSafeEqual(raw.subarray(8), this.#mac(w));
  }

  #make(window: number): string {
    const raw = Buffer.alloc(24);
    raw.writeBigUInt64BE(BigInt(window), 0);
    this.#mac(window).copy(raw, 8);
    return raw.toString('base64url');
  }

  #mac(window: number): Buffer {
    return createHmac('sha256', this.#secret).update(`dpop-nonce\n${window}`).digest().subarray(0, 16);
  }
}
