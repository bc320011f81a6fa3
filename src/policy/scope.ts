import { insufficientScope, TOKEN_WRONG_AUDIENCE, type GatewayError } from '../core/errors.js';
import type { ActiveToken } from '../cache/entry.js';

/**
 * What a route requires of a token: its audience and its scopes. Checked on
 * every request, cache hits included: a decision is never cached, only the
 * token's claims are.
 */
export class ScopePolicy {
  readonly required: readonly string[];
  /** The token's `aud` must contain one of these (RFC 9700 §2.3); empty: not checked. */
  readonly audience: readonly string[];
  readonly #needles: readonly string[];
  readonly #refusal: GatewayError | undefined;

  /**
   * @param scope space-separated scopes, all of which a token must carry.
   * @param audience audiences, one of which the token's `aud` must contain.
   */
  constructor(scope: string, audience: string | readonly string[] = []) {
    this.required = [...new Set(scope.split(' ').filter((s) => s.length > 0))];
    this.audience = Object.freeze(typeof audience === 'string' ? [audience] : [...audience]);
    this.#needles = this.required.map((s) => ` ${s} `);
    this.#refusal = this.required.length > 0 ? insufficientScope(this.required.join(' ')) : undefined;
  }

  /** The 401 refusal for a token meant for another audience, the 403 one when a required scope is missing; else undefined. */
  check(token: ActiveToken): GatewayError | undefined {
    if (this.audience.length > 0 && !hasAudience(token.claims.aud, this.audience)) return TOKEN_WRONG_AUDIENCE;
    const needles = this.#needles;
    for (let i = 0; i < needles.length; i++) {
      if (!token.scope.includes(needles[i]!)) return this.#refusal;
    }
    return undefined;
  }
}

function hasAudience(aud: unknown, wanted: readonly string[]): boolean {
  if (typeof aud === 'string') return wanted.includes(aud);
  return Array.isArray(aud) && aud.some((a) => typeof a === 'string' && wanted.includes(a));
}

/**
 * Scopes of a JWT, from RFC 9068 `scope` (space-separated) and `scp` (string
 * or array), as one string with a space before, between and after each, the
 * form `ActiveToken.scope` holds.
 */
export function scopeString(claims: Readonly<Record<string, unknown>>): string {
  const out = new Set<string>();
  for (const value of [claims.scope, claims.scp]) {
    if (typeof value === 'string') {
      for (const s of value.split(' ')) if (s) out.add(s);
    } else if (Array.isArray(value)) {
      for (const s of value) if (typeof s === 'string' && s && !s.includes(' ')) out.add(s);
    }
  }
  return out.size === 0 ? ' ' : intern(` ${[...out].join(' ')} `);
}

/**
 * Most tokens of one deployment carry one of a few scope sets, so each cached
 * token shares its scope string instead of holding a copy (about 100 bytes a
 * token). Bounded: past the bound, strings are simply not shared.
 */
const SHARED_SCOPES_MAX = 1024;
const sharedScopes = new Map<string, string>();
function intern(s: string): string {
  const shared = sharedScopes.get(s);
  if (shared !== undefined) return shared;
  if (sharedScopes.size < SHARED_SCOPES_MAX) sharedScopes.set(s, s);
  return s;
}
