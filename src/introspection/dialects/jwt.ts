import {
  forwardedJwtClaims,
  INACTIVE_ACTIVE_FALSE,
  INACTIVE_NO_JWT,
  InvalidAnswer,
  JSON_MEDIA_TYPE,
  parseIntrospectionJson,
  type Answer200,
  type Decoded,
  type Dialect,
} from './common.js';

/**
 * `jwt`: Curity's phantom token answer, and the default. `Accept:
 * application/jwt`; the body is the JWT, 204 means inactive. A JSON answer is
 * read too, as Curity's plugins have always done: `{"active": false}` is
 * inactive, and `{"active": true, "jwt": ...}` (Keycloak 25+) carries the JWT.
 * An active JSON answer without one means the server was not set up for
 * phantom tokens: there is nothing to forward, so the request is refused
 * (401, not remembered) and the operator is told to choose `json`.
 */
export const jwtDialect: Dialect = Object.freeze({
  name: 'jwt' as const,
  accept: 'application/jwt',
  mints: false,
  decode(answer: Answer200): Decoded {
    const body = answer.body.trim();
    if (body === '') throw new InvalidAnswer('introspection answer 200 with an empty body');
    if ((answer.contentType !== undefined && JSON_MEDIA_TYPE.test(answer.contentType)) || body.startsWith('{')) return jsonWithJwt(body, true);
    const claims = forwardedJwtClaims(body);
    // A signed introspection answer (RFC 9701) is no access token: forwarding it would hand the API the answer itself.
    if (claims.token_introspection !== undefined || claims.active !== undefined) {
      throw new InvalidAnswer('introspection answer is a JWT carrying an introspection answer (RFC 9701), not an access token: choose introspection_response token_introspection_jwt');
    }
    return { active: true, claims, jwt: body };
  },
});

/**
 * `jwt_claim`: Keycloak 25+ (`Accept: application/jwt` and the client's
 * "Support JWT claim in Introspection Response"): RFC 7662 JSON whose active
 * answers carry the JWT in a `jwt` member. Nothing else is read as an answer.
 */
export const jwtClaimDialect: Dialect = Object.freeze({
  name: 'jwt_claim' as const,
  accept: 'application/jwt',
  mints: false,
  decode(answer: Answer200): Decoded {
    const body = answer.body.trim();
    if (body === '') throw new InvalidAnswer('introspection answer 200 with an empty body');
    return jsonWithJwt(body, false);
  },
});

function jsonWithJwt(body: string, lenient: boolean): Decoded {
  const parsed = parseIntrospectionJson(body);
  if (!parsed.active) return INACTIVE_ACTIVE_FALSE;
  const embedded = parsed.jwt;
  if (typeof embedded === 'string') return { active: true, claims: forwardedJwtClaims(embedded), jwt: embedded };
  if (embedded !== undefined) throw new InvalidAnswer('introspection answer has a "jwt" member that is not a string');
  if (lenient) return INACTIVE_NO_JWT;
  throw new InvalidAnswer('introspection answer is active JSON without a "jwt" member: enable the JWT claim in introspection answers for the gateway\'s client, or choose introspection_response: json');
}
