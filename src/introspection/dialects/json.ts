import { INACTIVE_ACTIVE_FALSE, InvalidAnswer, introspectionClaims, parseIntrospectionJson, type Answer200, type Decoded, type Dialect } from './common.js';

/**
 * `json`: plain RFC 7662 (Ory Hydra, Okta, Authentik, Zitadel, Keycloak,
 * oidc-provider). The answer's members are the token's claims; the gateway
 * mints the JWT it forwards. A `jwt` member, if any, is not used: what is
 * forwarded is always the gateway's own token in this dialect.
 */
export const jsonDialect: Dialect = Object.freeze({
  name: 'json' as const,
  accept: 'application/json',
  mints: true,
  decode(answer: Answer200): Decoded {
    if (answer.body.trim() === '') throw new InvalidAnswer('introspection answer 200 with an empty body');
    const parsed = parseIntrospectionJson(answer.body);
    if (!parsed.active) return INACTIVE_ACTIVE_FALSE;
    const claims = introspectionClaims(parsed);
    delete (claims as Record<string, unknown>).jwt;
    return { active: true, claims };
  },
});
