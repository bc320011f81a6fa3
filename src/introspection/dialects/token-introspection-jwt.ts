import { errors, jwtVerify, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { GatewayError } from '../../core/errors.js';
import { hasDuplicateKeys } from '../parse.js';
import {
  INACTIVE_ACTIVE_FALSE,
  InvalidAnswer,
  introspectionClaims,
  isMediaType,
  isPlainObject,
  type Answer200,
  type Decoded,
  type Dialect,
} from './common.js';

/** RFC 9701 §5: the media type of a signed introspection answer (and, without `application/`, its JWT `typ`). */
export const SIGNED_ANSWER_MEDIA_TYPE = 'application/token-introspection+jwt';

/**
 * Algorithms a signed answer may use: asymmetric only. Never `none`, never
 * HS*: a MAC keyed with the client secret would let anyone who knows the
 * secret (the gateway's own configuration) forge answers, and the gateway
 * verifies against the server's published keys only.
 */
export const SIGNED_ANSWER_ALGORITHMS: readonly string[] = Object.freeze([
  'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA', 'Ed25519',
]);

/** Clock skew allowed between the authorization server and the gateway on a signed answer's `exp`/`nbf`. */
const CLOCK_TOLERANCE_SECONDS = 60;

/** A signed answer older than this (beyond the clock tolerance) is refused. */
const MAX_ANSWER_AGE_SECONDS = 60;

async function verifyWithCandidates(jws: string, candidates: errors.JWKSMultipleMatchingKeys, options: JWTVerifyOptions): Promise<Record<string, unknown>> {
  for await (const key of candidates) {
    try {
      return (await jwtVerify(jws, key, options)).payload;
    } catch (err) {
      if (!(err instanceof errors.JWSSignatureVerificationFailed)) throw err;
    }
  }
  throw new errors.JWSSignatureVerificationFailed();
}

/** Who signed answers must come from and be for, and the keys they are checked with. */
export interface SignedAnswerCheck {
  /** The configured issuer: the answer's `iss`. */
  readonly issuer: string;
  /** The gateway's client_id: the answer's `aud`. */
  readonly clientId: string;
  /** The authorization server's keys (see `ServerKeys`). */
  readonly getKey: JWTVerifyGetKey;
}

/**
 * Verifies an RFC 9701 signed answer and decodes its `token_introspection`
 * member: signature against the server's JWKS with an asymmetric algorithm,
 * header `typ` `token-introspection+jwt`, `iss` the configured issuer, `aud`
 * the gateway's client_id, `iat` present. Anything else is the server's
 * failure (or someone else's answer): `InvalidAnswer`, 502, never a 200 and
 * never a remembered 401.
 */
export async function verifySignedAnswer(jws: string, check: SignedAnswerCheck): Promise<Decoded> {
  const options: JWTVerifyOptions = {
    algorithms: SIGNED_ANSWER_ALGORITHMS as string[],
    typ: 'token-introspection+jwt',
    issuer: check.issuer,
    audience: check.clientId,
    requiredClaims: ['iat'],
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    // An answer is made for the call that asked: an old one (or one dated in
    // the future) is a replay, whatever `exp` it carries, or none.
    maxTokenAge: MAX_ANSWER_AGE_SECONDS,
  };
  let payload: Record<string, unknown>;
  try {
    try {
      ({ payload } = await jwtVerify(jws, check.getKey, options));
    } catch (err) {
      // Several keys of the server match (a rollover, answers without kid): try each.
      if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
      payload = await verifyWithCandidates(jws, err, options);
    }
  } catch (err) {
    // The key could not be had (InvalidAnswer), or the server is not known yet (a 503 GatewayError): as they are.
    if (err instanceof InvalidAnswer || err instanceof GatewayError) throw err;
    throw new InvalidAnswer(`signed introspection answer rejected: ${joseReason(err)}`);
  }
  // jose reads the payload with JSON.parse, which keeps the last of two equal names.
  const text = Buffer.from(jws.slice(jws.indexOf('.') + 1, jws.lastIndexOf('.')), 'base64url').toString('utf8');
  if (hasDuplicateKeys(text)) throw new InvalidAnswer('signed introspection answer has a duplicate member name');
  const answer = payload.token_introspection;
  if (!isPlainObject(answer) || typeof answer.active !== 'boolean') {
    throw new InvalidAnswer('signed introspection answer has no "token_introspection" object with a boolean "active" member');
  }
  if (!answer.active) return INACTIVE_ACTIVE_FALSE;
  const claims = introspectionClaims(answer);
  delete (claims as Record<string, unknown>).jwt;
  return { active: true, claims };
}

/**
 * `token_introspection_jwt`: RFC 9701 signed answers. `Accept:
 * application/token-introspection+jwt`; the answer must be of that type
 * (an unsigned one is refused: the point of the mode is that answers are
 * verified) and pass `verifySignedAnswer`. The gateway mints the JWT it
 * forwards from the verified claims.
 */
export function tokenIntrospectionJwtDialect(check: SignedAnswerCheck): Dialect {
  return Object.freeze({
    name: 'token_introspection_jwt' as const,
    accept: SIGNED_ANSWER_MEDIA_TYPE,
    mints: true,
    decode(answer: Answer200): Promise<Decoded> {
      if (!isMediaType(answer.contentType, SIGNED_ANSWER_MEDIA_TYPE)) {
        return Promise.reject(
          new InvalidAnswer(
            `introspection answer is ${answer.contentType === undefined ? 'without a content type' : `of type ${JSON.stringify(answer.contentType.slice(0, 100))}`}, not a signed ${SIGNED_ANSWER_MEDIA_TYPE} answer: ` +
              "have the authorization server sign introspection answers for the gateway's client (e.g. introspection_signed_response_alg), or choose another introspection_response",
          ),
        );
      }
      return verifySignedAnswer(answer.body.trim(), check);
    },
  });
}

/** What went wrong, in jose's words (they name the check, never a claim's value). */
function joseReason(err: unknown): string {
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad signature';
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed (asymmetric algorithms only)';
  if (err instanceof errors.JOSEError) return `${err.code}: ${err.message}`;
  return 'not a signed JWT';
}
