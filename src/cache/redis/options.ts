import { readFileSync } from 'node:fs';
import { REDIS_KEY_SECRET, REDIS_KEY_SECRET_RULE, type RedisCacheConfig } from '../../config/schema.js';
import { readSecretFile } from '../../config/secret-file.js';

/*
 * What the loader checks of `cache.redis` beyond its shape (with YAML lines),
 * and the key secret as the shared cache uses it. Never the secret itself in
 * a message.
 */

type SecretOptions = Pick<RedisCacheConfig, 'key_secret' | 'key_secret_file'>;

/** What is wrong with `cache.redis` beyond its shape; `key` names the option. */
export function redisOptionProblems(redis: RedisCacheConfig): Array<{ key: keyof RedisCacheConfig; message: string }> {
  const out: Array<{ key: keyof RedisCacheConfig; message: string }> = [];
  if (redis.key_secret !== undefined && redis.key_secret_file !== undefined) out.push({ key: 'key_secret_file', message: 'key_secret and key_secret_file are both set: keep one' });
  else if (redis.key_secret === undefined && redis.key_secret_file === undefined)
    out.push({ key: 'url', message: 'key_secret or key_secret_file is required: the secret Redis keys are HMACs under, the same on every instance (e.g. openssl rand -hex 32)' });
  else if (redis.key_secret_file !== undefined) {
    try {
      readKeySecretFile(redis.key_secret_file);
    } catch (err) {
      out.push({ key: 'key_secret_file', message: (err as Error).message });
    }
  }
  const tls = redis.url.startsWith('rediss:');
  if (!tls && redis.ca_file !== undefined) out.push({ key: 'ca_file', message: 'only applies to a rediss:// url (TLS)' });
  if (!tls && !redis.verify_ssl) out.push({ key: 'verify_ssl', message: 'only applies to a rediss:// url (TLS)' });
  if (tls && redis.ca_file !== undefined) {
    try {
      readFileSync(redis.ca_file);
    } catch (err) {
      out.push({ key: 'ca_file', message: `cannot read "${redis.ca_file}" (${(err as NodeJS.ErrnoException).code ?? 'error'})` });
    }
  }
  return out;
}

/** The secret in `file` (one trailing newline allowed, as `echo` and editors leave it). */
export function readKeySecretFile(file: string): string {
  return readSecretFile(file, REDIS_KEY_SECRET, REDIS_KEY_SECRET_RULE, 'secret');
}

/** The configured key secret (read from `key_secret_file` when that is how it is given). */
export function keySecret(redis: SecretOptions): string {
  if (redis.key_secret !== undefined) return redis.key_secret;
  if (redis.key_secret_file !== undefined) return readKeySecretFile(redis.key_secret_file);
  throw new Error('cache.redis: key_secret or key_secret_file is required');
}

/** The URL as it may be logged: scheme, host, port and database; never the user name or password. */
export function loggableRedisUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
}
