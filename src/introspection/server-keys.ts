import { createLocalJWKSet, errors, type CryptoKey, type FlattenedJWSInput, type JWSHeaderParameters, type JSONWebKeySet } from 'jose';
import { InvalidAnswer } from './dialects/common.js';
import { DocumentError, type DocumentFetcher } from './documents.js';

/*
 * The authorization server's public keys (its JWKS), for RFC 9701 signed
 * introspection answers. Modelled on jose's remote key set, but fetched with
 * the route's TLS trust and a size bound: one fetch at a time shared by every
 * caller, a maximum age, and a cooldown so that a flood of answers with an
 * unknown `kid` (or a JWKS that is down) costs the server one fetch per
 * cooldown, not one per request. An unknown `kid` after the cooldown makes
 * one refetch: that is how a key rollover at the server is picked up.
 */

export interface ServerKeysOptions {
  readonly fetcher: DocumentFetcher;
  /** Where the JWKS is (a configured `jwks_uri`, or discovery's); undefined when none is known. */
  readonly jwksUri: () => Promise<string | undefined>;
  /** Least time between two fetches caused by an unknown `kid` (default 30 s, as jose). */
  readonly cooldownMs?: number | undefined;
  /** Least time between two attempts after a failed fetch (default 1 s). */
  readonly failureCooldownMs?: number | undefined;
  /** Keys older than this are refetched before use (default 10 min, as jose); kept when that fetch fails. */
  readonly maxAgeMs?: number | undefined;
  readonly now?: (() => number) | undefined;
}

interface Fetched {
  readonly uri: string;
  readonly keys: ReturnType<typeof createLocalJWKSet>;
  readonly at: number;
}

export class ServerKeys {
  readonly #opts: ServerKeysOptions;
  readonly #now: () => number;
  #fetched: Fetched | undefined;
  #inFlight: Promise<void> | undefined;
  /** When the last fetch ended in failure, and why (reported again during the failure cooldown). */
  #failedAt = Number.NEGATIVE_INFINITY;
  #failure = '';
  /** Fetches made (tests, diagnostics). */
  fetches = 0;

  constructor(opts: ServerKeysOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * A jose key resolver: the key for a JWS header. Throws `InvalidAnswer`
   * when no key can be had (no JWKS known, JWKS unreachable or broken, no key
   * for the `kid` even after a refetch).
   */
  readonly getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> => {
    const uri = await this.#opts.jwksUri();
    if (uri === undefined) {
      throw new InvalidAnswer('introspection answer is signed but no JWKS of the authorization server is known: set jwks_uri (or, without introspection_endpoint, issuer, so that it is discovered)');
    }
    let fetched = this.#fetched;
    if (fetched === undefined || fetched.uri !== uri) {
      await this.#refresh(uri, false);
      fetched = this.#fetched;
      if (fetched === undefined || fetched.uri !== uri) throw new InvalidAnswer(this.#failure || `the authorization server's JWKS at ${uri} could not be fetched`);
    } else if (this.#now() - fetched.at >= (this.#opts.maxAgeMs ?? 600_000)) {
      // Old keys serve while new ones are fetched: a slow or dead JWKS host must not stall answers the keys at hand verify.
      this.#refresh(uri, true).catch(() => {});
    }
    try {
      return await fetched.keys(header, token);
    } catch (err) {
      // Several candidates: the verifier tries each (a rollover, answers without kid).
      if (err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw keyError(err, uri);
      if (this.#now() - fetched.at < (this.#opts.cooldownMs ?? 30_000)) throw keyError(err, uri);
    }
    // An unknown kid, and the keys are older than the cooldown: the server may have rolled its key.
    await this.#refresh(uri, true);
    const again = this.#fetched;
    if (again === undefined || again === fetched) throw new InvalidAnswer(this.#failure || `no key of the authorization server's JWKS at ${uri} matches the answer's signature`);
    try {
      return await again.keys(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      throw keyError(err, uri);
    }
  };

  /** Resolves once no fetch is under way (a background refetch included); tests and diagnostics. */
  async idle(): Promise<void> {
    await this.#inFlight?.catch(() => {});
  }

  /** Fetches the JWKS (one fetch at a time); `keepOld`: a failure keeps the keys fetched before. */
  async #refresh(uri: string, keepOld: boolean): Promise<void> {
    if (this.#inFlight === undefined) {
      if (this.#now() - this.#failedAt < (this.#opts.failureCooldownMs ?? 1000)) {
        if (keepOld) return;
        throw new InvalidAnswer(this.#failure);
      }
      this.#inFlight = this.#fetch(uri).finally(() => {
        this.#inFlight = undefined;
      });
    }
    try {
      await this.#inFlight;
    } catch (err) {
      if (keepOld && this.#fetched?.uri === uri) return;
      throw err;
    }
  }

  async #fetch(uri: string): Promise<void> {
    this.fetches++;
    try {
      const doc = await this.#opts.fetcher.getJson(uri);
      let keys: Fetched['keys'];
      try {
        keys = createLocalJWKSet(doc as unknown as JSONWebKeySet);
      } catch {
        throw new DocumentError('invalid', `GET ${uri} answered JSON that is not a JWKS`);
      }
      this.#fetched = { uri, keys, at: this.#now() };
      this.#failedAt = Number.NEGATIVE_INFINITY;
      this.#failure = '';
    } catch (err) {
      this.#failedAt = this.#now();
      this.#failure = `the authorization server's JWKS could not be fetched: ${err instanceof DocumentError ? err.message : 'error'}`;
      throw new InvalidAnswer(this.#failure);
    }
  }
}

function keyError(err: unknown, uri: string): InvalidAnswer {
  if (err instanceof InvalidAnswer) return err;
  if (err instanceof errors.JWKSNoMatchingKey) return new InvalidAnswer(`no key of the authorization server's JWKS at ${uri} matches the answer's signature (kid and alg)`);
  if (err instanceof errors.JWKSMultipleMatchingKeys) return new InvalidAnswer(`several keys of the authorization server's JWKS at ${uri} match the answer's kid and alg`);
  const code = (err as { code?: string }).code;
  return new InvalidAnswer(`no usable key for the signed introspection answer in the JWKS at ${uri}${code ? ` (${code})` : ''}`);
}
