import { generateKeyPairSync } from 'node:crypto';
import type { GatewayConfig } from '../config/schema.js';
import { MINTING_RESPONSES } from '../config/schema.js';
import { KeySet } from './key-set.js';
import { loadPublishedKeyFile, loadSigningKeyFile, signingKey, signingKeyFromText, type SigningKey } from './keys.js';
import { Minter } from './minter.js';

export { KeySet, type Jwks } from './key-set.js';
export { Minter, type Minted, type MinterOptions } from './minter.js';
export { JWKS_PATH, JWKS_CONTENT_TYPE, JWKS_CACHE_CONTROL, JWKS_MAX_AGE_SECONDS, JWKS_METHODS, jwksBody, jwksHeaders } from './publish.js';
export { loadSigningKeyFile, loadPublishedKeyFile, signingKey, signingKeyFromText, thumbprint, KeyFileError, type SigningKey, type PublishedKey, type SigningAlg } from './keys.js';

/** What the gateway mints with: the minter and the keys it publishes. */
export interface Minting {
  readonly minter: Minter;
  readonly keys: KeySet;
  /** The key was made at start (no `signing_key_file`): development only. */
  readonly generated: boolean;
  /** `iss` was derived from the listener (no `minting.issuer`). */
  readonly derivedIssuer: boolean;
  /** What a minted token carries and how long it lives: issuer, claims rules, audience, lifetime bound (JSON). */
  readonly settings: string;
  /**
   * What makes two gateways' minted tokens interchangeable: `settings` and
   * the signer's `kid` at start (part of the cache namespace of minting routes).
   */
  readonly identity: string;
}

export interface MintingDeps {
  /** A key to sign with when the configuration names none (a cluster's primary makes one for all its workers). */
  readonly signingKey?: SigningKey | undefined;
  readonly now?: () => number;
  /** Told once, when a token is first minted without `aud` (the answer has none and `minting.audience` is not set). */
  readonly onNoAudience?: () => void;
}

/** Whether any route of `config` has its tokens minted. */
export function mints(config: GatewayConfig): boolean {
  return config.routes.some((r) => r.phantom_token !== false && MINTING_RESPONSES.has(r.phantom_token.introspection_response));
}

/** The minting set-up of a validated configuration; undefined when no route mints. */
export function mintingFor(config: GatewayConfig, deps: MintingDeps = {}): Minting | undefined {
  if (!mints(config)) return undefined;
  const m = config.minting;
  let signer: SigningKey;
  let generated = false;
  if (m.signing_key_file !== undefined) signer = loadSigningKeyFile(m.signing_key_file);
  else if (deps.signingKey !== undefined) {
    signer = deps.signingKey;
    generated = true;
  } else {
    signer = generateSigningKey();
    generated = true;
  }
  const published = m.published_key_files.map((f) => loadPublishedKeyFile(f));
  const keys = new KeySet(signer, published, deps.now);
  const issuer = m.issuer ?? defaultIssuer(config);
  const minter = new Minter({ issuer, maxLifetimeSeconds: m.max_lifetime_seconds, copyClaims: m.copy_claims, keys, audience: m.audience, onNoAudience: deps.onNoAudience });
  const settings = JSON.stringify([issuer, m.copy_claims, m.max_lifetime_seconds, m.audience ?? null]);
  return { minter, keys, generated, derivedIssuer: m.issuer === undefined, settings, identity: JSON.stringify([settings, signer.kid]) };
}

/** A new ES256 key, for development when no `signing_key_file` is configured. */
export function generateSigningKey(): SigningKey {
  return signingKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, undefined, 'generated key');
}

/**
 * A signing key as text (its private JWK with its `kid`), to hand to another
 * process of the same gateway (a cluster's workers); never logged or written.
 */
export function exportSigningKey(key: SigningKey): string {
  return JSON.stringify({ ...(key.privateKey.export({ format: 'jwk' }) as object), kid: key.kid });
}

/** The key `exportSigningKey` gave. */
export function importSigningKey(text: string): SigningKey {
  return signingKeyFromText(text, "the cluster primary's signing key");
}

/** The gateway's URL as its listener gives it (wildcard addresses read as localhost). */
function defaultIssuer(config: GatewayConfig): string {
  const l = config.listen ?? config.forward_auth?.listen ?? { host: 'localhost', port: 8080 };
  const host = l.host === '0.0.0.0' || l.host === '::' || l.host === '' ? 'localhost' : l.host.includes(':') ? `[${l.host}]` : l.host;
  return `http://${host}:${l.port}`;
}


