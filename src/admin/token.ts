import { createHash, timingSafeEqual } from 'node:crypto';
import { ADMIN_TOKEN, ADMIN_TOKEN_RULE, type AdminConfig } from '../config/schema.js';
import { readSecretFile } from '../config/secret-file.js';

/*
 * The admin token: required by every admin endpoint that changes state
 * (POST /reload, POST /cache/purge). Compared in constant time and
 * never logged.
 */

/** What is wrong with the token options (for the loader, with YAML lines); never the token itself. */
export function adminTokenProblems(admin: Pick<AdminConfig, 'token' | 'token_file'>): Array<{ key: 'token' | 'token_file'; message: string }> {
  if (admin.token !== undefined && admin.token_file !== undefined) return [{ key: 'token_file', message: 'token and token_file are both set: keep one' }];
  if (admin.token_file === undefined) return [];
  try {
    readAdminTokenFile(admin.token_file);
    return [];
  } catch (err) {
    return [{ key: 'token_file', message: (err as Error).message }];
  }
}

/** The token in `file` (one trailing newline allowed, as `echo` and editors leave it). */
export function readAdminTokenFile(file: string): string {
  return readSecretFile(file, ADMIN_TOKEN, ADMIN_TOKEN_RULE, 'token');
}

/** The configured token (read from `token_file` when that is how it is given); undefined when none. */
export function adminToken(admin: Pick<AdminConfig, 'token' | 'token_file'>): string | undefined {
  return admin.token ?? (admin.token_file === undefined ? undefined : readAdminTokenFile(admin.token_file));
}

/**
 * Checks `Authorization: Bearer <token>` against an expected token, in
 * constant time: both sides are hashed (SHA-256) first and the digests
 * compared with `timingSafeEqual`, so neither the content nor the length of
 * the expected token leaks through timing. Every state-changing admin
 * endpoint uses one of these.
 *
 * @example
 * const check = new BearerCheck(token);
 * if (!check.accepts(req.headers.authorization)) return unauthorized(res);
 */
export class BearerCheck {
  readonly #digest: Buffer;

  constructor(token: string) {
    this.#digest = sha256(token);
  }

  /** Whether `authorization` (the header's value, or the values of repeated headers) carries exactly the token. */
  accepts(authorization: string | readonly string[] | undefined): boolean {
    if (typeof authorization !== 'string') return false; // absent, or sent twice
    const m = /^Bearer +(\S+) *$/i.exec(authorization);
    // Hashed and compared even when malformed, so a malformed header costs the same.
    const given = sha256(m?.[1] ?? '');
    return timingSafeEqual(given, this.#digest) && m !== null;
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
