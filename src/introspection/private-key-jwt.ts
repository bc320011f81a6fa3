import { randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { KeyFileError, readKeyFile, signingKeyFromText, type SigningAlg } from '../minting/keys.js';
import type { AssertionAudience, CallCredentials, ClientAuthentication } from './client-auth.js';
import { formEncode } from './form.js';

/*
 * `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): each call
 * carries a JWT the gateway signs with its own key, which the authorization
 * server checks against the key registered for the client.
 *
 * One assertion per call, never reused: the assertion's `jti` exists to stop
 * replay, and servers enforce it (oidc-provider keeps every `jti` until the
 * assertion expires and refuses it a second time; so do Keycloak and Ory's
 * fosite). Reusing one until shortly before its `exp` would fail the second
 * call against those. Signing is only on cache misses (the introspection),
 * never on a cache hit; an ES256 assertion costs tens of microseconds.
 */

/** RFC 7523 §2.2 `client_assertion_type`. */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** Seconds an assertion is valid: long enough for clock skew, short enough that a leaked one is soon useless. */
export const ASSERTION_LIFETIME_SECONDS = 60;

/** The key the gateway signs its client assertions with. */
export interface ClientKey {
  readonly alg: SigningAlg;
  readonly privateKey: KeyObject;
  /**
   * The `kid` sent in the assertion's header: the JWK file's own `kid`, or
   * none (a PEM names no key id, and a guessed one the server does not know
   * would make it refuse the assertion; with no `kid`, servers try the
   * client's registered keys of the assertion's `alg`).
   */
  readonly kid: string | undefined;
}

/**
 * The client key in `file`, a private key in PEM (PKCS#8, SEC1, PKCS#1) or
 * JWK form: EC P-256 (ES256), Ed25519 (EdDSA) or RSA of 2048 bits or more
 * (RS256). Throws a `KeyFileError` naming the file and the reason.
 */
export function loadClientKeyFile(file: string): ClientKey {
  return clientKeyFromText(readKeyFile(file), file);
}

/** As `loadClientKeyFile`, from the file's text; `where` names it in errors. */
export function clientKeyFromText(text: string, where: string): ClientKey {
  const trimmed = text.trim();
  let jwk: { kid?: unknown; kty?: unknown } | undefined;
  if (trimmed.startsWith('{')) {
    try {
      jwk = JSON.parse(trimmed) as { kid?: unknown; kty?: unknown };
    } catch {
      throw new KeyFileError(`${where}: not a private key in PEM or JWK form`);
    }
    // A shared secret as a JWK would be client_secret_jwt, which the gateway does not do.
    if (jwk?.kty === 'oct') throw new KeyFileError(`${where}: a symmetric (oct) key cannot sign client assertions; use an EC P-256 (ES256), Ed25519 (EdDSA) or RSA (RS256) private key`);
  }
  let key;
  try {
    key = signingKeyFromText(text, where);
  } catch (err) {
    // The loader is the minting one; its words are about minted tokens.
    if (err instanceof KeyFileError) throw new KeyFileError(err.message.replace('cannot sign minted tokens', 'cannot sign client assertions'));
    throw err;
  }
  const own = jwk?.kid;
  const kid = typeof own === 'string' && own !== '' ? own : undefined;
  return Object.freeze({ alg: key.alg, privateKey: key.privateKey, kid });
}

export interface PrivateKeyJwtOptions {
  /**
   * The assertion's `aud`, when the server wants a fixed value
   * (`client_assertion_audience`). Default: the server's issuer identifier
   * when known (configured or discovered: what RFC 7523bis and FAPI 2
   * require), else the introspection endpoint the call goes to.
   */
  readonly audience?: string | undefined;
  /** Clock (epoch ms; tests). */
  readonly now?: (() => number) | undefined;
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * `private_key_jwt` client authentication: per call, a fresh assertion
 * (`iss` = `sub` = client_id, `aud`, a random `jti`, `iat`, `exp` 60 s
 * later) in the form with `client_assertion_type` and `client_id`.
 *
 * @example
 * const auth = privateKeyJwt('gateway', loadClientKeyFile('/run/secrets/gateway.jwk'));
 * const { form } = await auth.credentials({ issuer: 'https://as.example.com', tokenEndpoint: undefined, endpoint: 'https://as.example.com/introspect' });
 */
export function privateKeyJwt(clientId: string, key: ClientKey, opts: PrivateKeyJwtOptions = {}): ClientAuthentication {
  const header = key.kid !== undefined ? { alg: key.alg, kid: key.kid } : { alg: key.alg };
  const fixedAudience = opts.audience;
  const now = opts.now ?? Date.now;
  const prefix = `&client_id=${formEncode(clientId)}&client_assertion_type=${formEncode(JWT_BEARER_ASSERTION)}&client_assertion=`;
  return Object.freeze({
    method: 'private_key_jwt' as const,
    clientId,
    async credentials(to: AssertionAudience): Promise<CallCredentials> {
      const iat = Math.floor(now() / 1000);
      const assertion = await new SignJWT({})
        .setProtectedHeader(header)
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(fixedAudience ?? to.issuer ?? to.endpoint)
        .setJti(randomUUID())
        .setIssuedAt(iat)
        .setExpirationTime(iat + ASSERTION_LIFETIME_SECONDS)
        .sign(key.privateKey);
      // A JWT is base64url and dots: nothing in it needs form encoding.
      return { headers: NO_HEADERS, form: prefix + assertion };
    },
    hint:
      "authorization server refused the gateway's client assertion: check client_id, that the public key of client_key_file (its alg, and its kid if the file has one) is registered for it, " +
      'and the audience the server expects (issuer, or client_assertion_audience) (private_key_jwt)',
  });
}
