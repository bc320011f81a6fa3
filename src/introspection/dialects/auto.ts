import {
  forwardedJwtClaims,
  INACTIVE_ACTIVE_FALSE,
  InvalidAnswer,
  introspectionClaims,
  isMediaType,
  JSON_MEDIA_TYPE,
  jwsHeader,
  parseIntrospectionJson,
  type Answer200,
  type Decoded,
  type Dialect,
} from './common.js';
import { jwtDialect } from './jwt.js';
import { SIGNED_ANSWER_MEDIA_TYPE, verifySignedAnswer, type SignedAnswerCheck } from './token-introspection-jwt.js';

/**
 * What `auto` asks for. The phantom token answer first (the server's own
 * JWT is forwarded as it is: nothing to mint), then a signed answer when
 * the gateway can verify one (an issuer is configured), then plain JSON.
 * Without an issuer a signed answer cannot be checked, so it comes last:
 * a server that negotiates (oidc-provider, by q-value) then answers JSON.
 */
export const AUTO_ACCEPT = 'application/jwt, application/token-introspection+jwt;q=0.9, application/json;q=0.8';
export const AUTO_ACCEPT_UNSIGNED = 'application/jwt, application/json;q=0.9, application/token-introspection+jwt;q=0.1';

/**
 * `auto`: one `Accept` header listing the three forms, and the answer read
 * by the content type that comes back:
 * - `application/jwt`: as `jwt` (Curity): the JWT is forwarded; a JWT whose
 *   header `typ` is `token-introspection+jwt` is a signed answer under the
 *   media type of RFC 9701's drafts, and is verified as one;
 * - `application/token-introspection+jwt`: as `token_introspection_jwt`
 *   when `signed` is given (an issuer is configured), else refused (502)
 *   with a message saying what to configure;
 * - JSON: a `jwt` member is forwarded as `jwt_claim` does (Keycloak 25+);
 *   without one, the gateway mints from the members as `json` does.
 * Anything else, a missing content type included, is refused (502): auto
 * acts on what the server says it sent, never on a guess.
 */
export function autoDialect(signed: SignedAnswerCheck | undefined): Dialect {
  return Object.freeze({
    name: 'auto' as const,
    accept: signed === undefined ? AUTO_ACCEPT_UNSIGNED : AUTO_ACCEPT,
    mints: true,
    decode(answer: Answer200): Decoded | Promise<Decoded> {
      const type = answer.contentType;
      const body = answer.body.trim();
      if (body === '') throw new InvalidAnswer('introspection answer 200 with an empty body');
      if (isMediaType(type, SIGNED_ANSWER_MEDIA_TYPE)) return signedAnswer(body, signed);
      if (isMediaType(type, 'application/jwt')) {
        const typ = jwsHeader(body)?.typ;
        if (typeof typ === 'string' && /^(?:application\/)?token-introspection\+jwt$/i.test(typ)) return signedAnswer(body, signed);
        // An introspection answer in JWT form, whatever its header says (RFC 9701's drafts
        // used application/jwt): verified as one, never forwarded as an access token.
        const decoded = jwtDialect.decode(answer) as Decoded;
        if (decoded.active && (decoded.claims.token_introspection !== undefined || decoded.claims.active !== undefined)) return signedAnswer(body, signed);
        return decoded;
      }
      if (type !== undefined && JSON_MEDIA_TYPE.test(type)) {
        const parsed = parseIntrospectionJson(body);
        if (!parsed.active) return INACTIVE_ACTIVE_FALSE;
        const embedded = parsed.jwt;
        if (typeof embedded === 'string') return { active: true, claims: forwardedJwtClaims(embedded), jwt: embedded };
        if (embedded !== undefined) throw new InvalidAnswer('introspection answer has a "jwt" member that is not a string');
        return { active: true, claims: introspectionClaims(parsed) };
      }
      throw new InvalidAnswer(
        `introspection answer is ${type === undefined ? 'without a content type' : `of type ${JSON.stringify(type.slice(0, 100))}`}: ` +
          'introspection_response auto reads application/jwt, application/token-introspection+jwt and JSON; choose the dialect that fits the server',
      );
    },
  });
}

function signedAnswer(body: string, signed: SignedAnswerCheck | undefined): Promise<Decoded> {
  if (signed === undefined) {
    return Promise.reject(
      new InvalidAnswer('introspection answer is signed (RFC 9701) but cannot be verified: set issuer (and jwks_uri, unless the issuer\'s discovery metadata names it) for introspection_response auto'),
    );
  }
  return verifySignedAnswer(body, signed);
}
