import type { Dispatcher } from 'undici';
import type { DialectName, Dialect } from './common.js';
import { autoDialect } from './auto.js';
import { jsonDialect } from './json.js';
import { jwtClaimDialect, jwtDialect } from './jwt.js';
import { tokenIntrospectionJwtDialect, type SignedAnswerCheck } from './token-introspection-jwt.js';
import { DocumentFetcher } from '../documents.js';
import type { MetadataSource } from '../metadata.js';
import { ServerKeys } from '../server-keys.js';

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
  /** TLS trust for fetching the JWKS, as for the introspection endpoint (default: verified against the system's CAs). */
  readonly verifySsl?: boolean | undefined;
  readonly caFile?: string | undefined;
  /** Dispatcher for the JWKS fetch instead of own connections (tests). */
  readonly dispatcher?: Dispatcher | undefined;
  /** Least time between two JWKS fetches caused by an unknown `kid` (default 30 s). */
  readonly jwksCooldownMs?: number | undefined;
}

/** The dialect named by `introspection_response`. */
export function dialectFor(name: DialectName, ctx: DialectContext): Dialect {
  switch (name) {
    case 'jwt':
      return jwtDialect;
    case 'jwt_claim':
      return jwtClaimDialect;
    case 'json':
      return jsonDialect;
    case 'token_introspection_jwt': {
      const check = signedAnswerCheck(ctx);
      if (check === undefined) throw new TypeError('"issuer" option is required for introspection_response token_introspection_jwt');
      return tokenIntrospectionJwtDialect(check);
    }
    case 'auto':
      return autoDialect(signedAnswerCheck(ctx));
  }
}

/** How signed answers are checked: needs the issuer (their `iss`); the JWKS comes from the metadata when an answer needs it. */
function signedAnswerCheck(ctx: DialectContext): SignedAnswerCheck | undefined {
  if (ctx.issuer === undefined) return undefined;
  const keys = new ServerKeys({
    fetcher: new DocumentFetcher({ timeoutMs: ctx.timeoutMs, verifySsl: ctx.verifySsl ?? true, caFile: ctx.caFile, dispatcher: ctx.dispatcher }),
    jwksUri: async () => (ctx.metadata.current ?? (await ctx.metadata.get())).jwksUri,
    cooldownMs: ctx.jwksCooldownMs,
  });
  return { issuer: ctx.issuer, clientId: ctx.clientId, getKey: keys.getKey };
}
