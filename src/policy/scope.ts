import { insufficientScope, type GatewayError } from '../core/errors.js';
import type { ActiveToken } from '../cache/entry.js';

/**
 * The scopes a route requires. Checked on every request, cache hits included:
 * a decision is never cached, only the token's claims are.
 */
export class ScopePolicy {
  readonly required: readonly string[];
  readonly #refusal: GatewayError | undefined;

  /** @param scope space-separated scopes, all of which a token must carry. */
  constructor(scope: string) {
    this.required = [...new Set(scope.split(' ').filter((s) => s.length > 0))];
    this.#refusal = this.required.length > 0 ? insufficientScope(this.required.join(' ')) : undefined;
  }

  /** Returns the 403 refusal when a required scope is missing, else undefined. */
  check(token: ActiveToken): GatewayError | undefined {
    const required = this.required;
    for (let i = 0; i < required.length; i++) {
      if (!token.scopes.has(required[i]!)) return this.#refusal;
    }
    return undefined;
  }
}

/** Scopes of a JWT: RFC 9068 `scope` (space-separated), or `scp` (string or array). */
export function scopesOf(claims: Readonly<Record<string, unknown>>): Set<string> {
  const out = new Set<string>();
  for (const value of [claims.scope, claims.scp]) {
    if (typeof value === 'string') {
      for (const s of value.split(' ')) if (s) out.add(s);
    } else if (Array.isArray(value)) {
      for (const s of value) if (typeof s === 'string' && s) out.add(s);
    }
  }
  return out;
}
