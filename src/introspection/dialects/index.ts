import type { DialectName, Dialect } from './common.js';
import { jsonDialect } from './json.js';
import { jwtClaimDialect, jwtDialect } from './jwt.js';
import type { MetadataSource } from '../metadata.js';

export type { Dialect, DialectName, Decoded, InactiveReason } from './common.js';

/** What a dialect may need beyond the answer: who the gateway is, and the server's keys. */
export interface DialectContext {
  /** The gateway's client_id: the audience of RFC 9701 signed answers. */
  readonly clientId: string;
  /** The authorization server's issuer (configured): checked as the `iss` of signed answers. */
  readonly issuer: string | undefined;
  /** Where the server's JWKS is found (configured `jwks_uri`, or discovery). */
  readonly metadata: MetadataSource;
  /** Bound on fetching the server's JWKS. */
  readonly timeoutMs: number;
}

/** The dialect named by `introspection_response`. */
export function dialectFor(name: DialectName, _ctx: DialectContext): Dialect {
  switch (name) {
    case 'jwt':
      return jwtDialect;
    case 'jwt_claim':
      return jwtClaimDialect;
    case 'json':
      return jsonDialect;
    case 'token_introspection_jwt':
    case 'auto':
      throw new TypeError(`introspection_response ${name} is not available yet`);
  }
}
