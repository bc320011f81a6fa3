import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { activeToken, type TokenEntry } from '../entry.js';

/*
 * What makes a Redis dump useless: keys are keyed hashes, values are sealed
 * under a key only the holder of the opaque token can derive.
 *
 * - Entry key: HMAC-SHA256(key secret, namespace + token). Without the key
 *   secret nobody can tell which token a key belongs to; with it, only by
 *   already holding the token.
 * - Entry value: AES-256-GCM under HKDF-SHA256 of namespace + token (salted
 *   with a key derived from the key secret), with the Redis key as
 *   additional data (a value moved under another key does not open).
 *   Without the opaque token it reads as random bytes. Writing an entry
 *   that opens takes both the token and the key secret: someone who can
 *   write to Redis and holds a token of their own still cannot bind it to
 *   another answer.
 * - Index keys (purge by sub or client_id): HMAC of the value under the key
 *   secret. The members are entry keys.
 * - Purge messages on the events channel: sealed under a key derived from
 *   the key secret, so subscribers see no token hash, sub or client_id, and
 *   a message published by someone without the secret is ignored.
 */

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ENTRY_INFO = 'phantom-gateway cache entry v1';

/** An entry as sealed in Redis (short names: every byte is stored once per token). */
interface Sealed {
  /** 1 active, 2 active and sender-constrained, 0 inactive. */
  a: 0 | 1 | 2;
  /** Expiry, epoch ms. */
  e: number;
  /** `Bearer <jwt>`. */
  j?: string;
  /** The scopes, as ActiveToken.scope holds them. */
  s?: string;
  /** client_id and sub (for the access log and purges). */
  c?: string;
  u?: string;
  /** The binding: cnf.jkt and cnf["x5t#S256"]. */
  k?: string;
  x?: string;
}

export class CacheCrypto {
  readonly #macKey: Buffer;
  readonly #messageKey: Buffer;
  readonly #entrySalt: Buffer;

  constructor(keySecret: string) {
    // Separate keys for separate uses, both from the one configured secret.
    this.#macKey = Buffer.from(hkdfSync('sha256', keySecret, '', 'phantom-gateway redis keys v1', 32));
    this.#messageKey = Buffer.from(hkdfSync('sha256', keySecret, '', 'phantom-gateway redis messages v1', 32));
    this.#entrySalt = Buffer.from(hkdfSync('sha256', keySecret, '', 'phantom-gateway entry salt v1', 32));
  }

  /** The keyed hash naming one token's entry (base64url, 43 characters). `material` is namespace + token. */
  entryId(material: string): string {
    return createHmac('sha256', this.#macKey).update(material, 'utf8').digest('base64url');
  }

  /** The keyed hash naming the index of one subject (`s`) or client (`c`), or a DPoP proof seen (`d`). */
  indexId(kind: 's' | 'c' | 'd', value: string): string {
    return createHmac('sha256', this.#macKey).update(`${kind}\n${value}`, 'utf8').digest('base64url');
  }

  /** Seals `entry` for the Redis key `redisKey`; only `material` (namespace + token) opens it again. */
  seal(material: string, redisKey: string, entry: TokenEntry): string {
    const body: Sealed = entry.active
      ? {
          // A bound token is `a: 2`: an instance of an earlier version, which knows no binding, finds no entry it can use (and introspects).
          a: entry.binding === undefined ? 1 : 2,
          e: entry.expiresAt,
          j: entry.authorization,
          s: entry.scope,
          ...(entry.clientId !== undefined ? { c: entry.clientId } : {}),
          ...(entry.sub !== undefined ? { u: entry.sub } : {}),
          ...(entry.binding?.jkt !== undefined ? { k: entry.binding.jkt } : {}),
          ...(entry.binding?.x5t !== undefined ? { x: entry.binding.x5t } : {}),
        }
      : { a: 0, e: entry.expiresAt };
    return encrypt(this.#entryKey(material), redisKey, JSON.stringify(body));
  }

  /** The entry `value` holds, or undefined when it does not open (another token, tampered, another format). */
  open(material: string, redisKey: string, value: string): TokenEntry | undefined {
    const text = decrypt(this.#entryKey(material), redisKey, value);
    if (text === undefined) return undefined;
    let b: Partial<Sealed>;
    try {
      b = JSON.parse(text) as Partial<Sealed>;
    } catch {
      return undefined;
    }
    if (typeof b.e !== 'number') return undefined;
    if (b.a === 0) return { active: false, expiresAt: b.e };
    if ((b.a !== 1 && b.a !== 2) || typeof b.j !== 'string' || typeof b.s !== 'string') return undefined;
    const binding = b.a === 2 ? { jkt: typeof b.k === 'string' ? b.k : undefined, x5t: typeof b.x === 'string' ? b.x : undefined } : undefined;
    // A bound entry that names no binding is not one this version wrote: no entry (fail closed).
    if (binding !== undefined && binding.jkt === undefined && binding.x5t === undefined) return undefined;
    return activeToken(b.j, b.s, b.e, undefined, { clientId: typeof b.c === 'string' ? b.c : undefined, sub: typeof b.u === 'string' ? b.u : undefined }, binding);
  }

  /** The key one token's entry is sealed under: from the token (with its namespace), salted under the key secret. */
  #entryKey(material: string): Buffer {
    return Buffer.from(hkdfSync('sha256', material, this.#entrySalt, ENTRY_INFO, 32));
  }

  /** A message for the events channel that only holders of the key secret can read. */
  sealMessage(message: unknown): string {
    return encrypt(this.#messageKey, 'message', JSON.stringify(message));
  }

  /** The message, or undefined when it was not sealed under this key secret. */
  openMessage(sealed: string): unknown {
    const text = decrypt(this.#messageKey, 'message', sealed);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return undefined;
    }
  }
}


/** version (1 byte) | IV (12) | ciphertext | tag (16), base64. */
function encrypt(key: Buffer, aad: string, plaintext: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.of(VERSION), iv, body, cipher.getAuthTag()]).toString('base64');
}

function decrypt(key: Buffer, aad: string, sealed: string): string | undefined {
  const raw = Buffer.from(sealed, 'base64');
  if (raw.length < 1 + IV_BYTES + TAG_BYTES || raw[0] !== VERSION) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(1, 1 + IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    return Buffer.concat([decipher.update(raw.subarray(1 + IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}
