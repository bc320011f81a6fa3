import { createPrivateKey, createPublicKey, hash, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { JWK } from 'jose';

/** Algorithms the gateway signs minted tokens with. */
export type SigningAlg = 'ES256' | 'EdDSA' | 'RS256';

/** A key minted tokens may be verified with: what the JWKS publishes of it. */
export interface PublishedKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  /** The public half as published in the JWKS (`kid`, `alg`, `use: sig`). */
  readonly publicJwk: Readonly<JWK>;
}

/** One key the gateway signs with, or did. */
export interface SigningKey extends PublishedKey {
  readonly privateKey: KeyObject;
}

/** A key file the gateway cannot use; the message names the file and the reason. */
export class KeyFileError extends Error {
  override readonly name = 'KeyFileError';
}

/** A key file's text; a `KeyFileError` naming the file when it cannot be read. */
export function readKeyFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new KeyFileError(`${file}: cannot read the key file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/**
 * A private key from a PEM (PKCS#8, SEC1 or PKCS#1) or JWK file: an EC P-256
 * key signs ES256, Ed25519 EdDSA, RSA (2048 bits or more) RS256. The `kid` is
 * the JWK's own, or its RFC 7638 thumbprint, so every instance given the same
 * file publishes the same `kid`.
 */
export function loadSigningKeyFile(file: string): SigningKey {
  return signingKeyFromText(readKeyFile(file), file);
}

/**
 * A key to publish (`published_key_files`): the same files as
 * `loadSigningKeyFile`, or only their public half (SPKI PEM, a public JWK),
 * with the same `kid` either way.
 */
export function loadPublishedKeyFile(file: string): PublishedKey {
  const parsed = parseKey(readKeyFile(file), file, true);
  const key = describe(parsed.key.type === 'private' ? createPublicKey(parsed.key) : parsed.key, parsed.kid, file);
  checkAlg(key, parsed.declaredAlg, file);
  return key;
}

/** As `loadSigningKeyFile`, from the file's text; `where` names it in errors. */
export function signingKeyFromText(text: string, where: string): SigningKey {
  const { key: privateKey, kid, declaredAlg } = parseKey(text, where, false);
  const key = signingKey(privateKey, kid, where);
  checkAlg(key, declaredAlg, where);
  return key;
}

// A JWK that names another algorithm (PS256, ES384...) was made for something else.
function checkAlg(key: PublishedKey, declaredAlg: string | undefined, where: string): void {
  if (declaredAlg !== undefined && declaredAlg !== key.alg) throw new KeyFileError(`${where}: the JWK says alg ${declaredAlg}, but this key signs ${key.alg}`);
}

function parseKey(text: string, where: string, publicAllowed: boolean): { key: KeyObject; kid: string | undefined; declaredAlg: string | undefined } {
  const trimmed = text.trim();
  const what = publicAllowed ? 'a key' : 'a private key';
  try {
    if (trimmed.startsWith('{')) {
      const jwk = JSON.parse(trimmed) as JWK & { keys?: unknown };
      if (Array.isArray(jwk.keys)) throw new KeyFileError(`${where}: is a JWK set; give one key (a single JWK) per file`);
      const isPrivate = typeof jwk.d === 'string';
      if (!isPrivate && !publicAllowed) throw new KeyFileError(`${where}: the JWK is a public key; the gateway needs the private key to sign`);
      const kid = typeof jwk.kid === 'string' && jwk.kid !== '' ? jwk.kid : undefined;
      const input = { key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' as const };
      return { key: isPrivate ? createPrivateKey(input) : createPublicKey(input), kid, declaredAlg: jwk.alg };
    }
    if (/^-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(trimmed) || /Proc-Type: 4,ENCRYPTED/.test(trimmed)) {
      throw new KeyFileError(`${where}: the private key is encrypted; give it unencrypted (protect the file instead)`);
    }
    const isPrivate = /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(trimmed);
    if (!isPrivate && !publicAllowed) throw new Error('not private');
    return { key: isPrivate ? createPrivateKey({ key: trimmed, format: 'pem' }) : createPublicKey({ key: trimmed, format: 'pem' }), kid: undefined, declaredAlg: undefined };
  } catch (err) {
    if (err instanceof KeyFileError) throw err;
    throw new KeyFileError(`${where}: not ${what} in PEM or JWK form`);
  }
}

/** A signing key from a private KeyObject (see `loadSigningKeyFile` for the algorithms). */
export function signingKey(privateKey: KeyObject, kid: string | undefined, where = 'key'): SigningKey {
  const publicKey = createPublicKey(privateKey);
  const described = describe(publicKey, kid, where);
  // A JWK's private part may not belong to its public part: every mint would
  // then fail (or sign tokens nobody can verify). One probe at load says so.
  const probe = Buffer.from('phantom-gateway key probe');
  const digest = described.alg === 'EdDSA' ? null : 'sha256';
  let ok = false;
  try {
    ok = verify(digest, probe, createPublicKey({ key: described.publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' }), sign(digest, probe, privateKey));
  } catch {
    ok = false;
  }
  if (!ok) throw new KeyFileError(`${where}: the private key does not match its public part; nothing it signs would verify`);
  return Object.freeze({ ...described, privateKey });
}

function describe(publicKey: KeyObject, kid: string | undefined, where: string): PublishedKey {
  const alg = algorithmOf(publicKey, where);
  const pub = publicKey.export({ format: 'jwk' }) as JWK;
  const id = kid ?? thumbprint(pub);
  return Object.freeze({ kid: id, alg, publicJwk: Object.freeze({ ...pub, kid: id, alg, use: 'sig' }) });
}

function algorithmOf(key: KeyObject, where: string): SigningAlg {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails;
  if (type === 'ec') {
    if (details?.namedCurve !== 'prime256v1') throw new KeyFileError(`${where}: EC keys must be on P-256 (ES256); this one is on ${details?.namedCurve ?? 'an unknown curve'}`);
    return 'ES256';
  }
  if (type === 'ed25519') return 'EdDSA';
  if (type === 'rsa') {
    if ((details?.modulusLength ?? 0) < 2048) throw new KeyFileError(`${where}: RSA keys must have at least 2048 bits`);
    return 'RS256';
  }
  throw new KeyFileError(`${where}: a ${type ?? 'symmetric'} key cannot sign minted tokens; use an EC P-256 (ES256), Ed25519 (EdDSA) or RSA (RS256) key`);
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key: its required members, in order, no spaces. */
export function thumbprint(jwk: JWK): string {
  const members =
    jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : jwk.kty === 'OKP' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return hash('sha256', JSON.stringify(members), 'base64url');
}
