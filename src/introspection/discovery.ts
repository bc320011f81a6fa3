import type { Dispatcher } from 'undici';
import { GatewayError } from '../core/errors.js';
import { DocumentError, DocumentFetcher } from './documents.js';
import type { MetadataSource, ServerMetadata } from './metadata.js';
import type { IntrospectionWarn } from './transport.js';

/*
 * Discovery: the authorization server's endpoints from its metadata (RFC 8414,
 * or OpenID Connect Discovery 1.0), when only `issuer` is configured (or the
 * JWKS of signed answers is not). Fetched from construction on, so the first
 * request does not pay for it; refreshed now and then; kept when a refresh
 * fails. Until it has been fetched once the server is not known: requests
 * that need it are refused with 503 and Retry-After, never let through.
 */

/** How often known metadata is fetched again. */
export const DISCOVERY_REFRESH_MS = 15 * 60_000;
/** First retry after a failed fetch; it doubles up to `DISCOVERY_RETRY_MAX_MS`. */
export const DISCOVERY_RETRY_MIN_MS = 500;
export const DISCOVERY_RETRY_MAX_MS = 30_000;

export interface DiscoveryOptions {
  /** The configured issuer: where the metadata is looked up, and what its `issuer` must be, exactly. */
  readonly issuer: string;
  /**
   * Metadata already discovered (by the configuration a reload replaces):
   * known from the start, refreshed on the usual schedule, so a reload never
   * makes a working gateway wait for discovery again.
   */
  readonly initial?: ServerMetadata | undefined;
  /** Configured endpoints win over discovered ones (discovery then only fills in the rest). */
  readonly introspectionEndpoint?: string | undefined;
  readonly jwksUri?: string | undefined;
  /** The metadata must name a `jwks_uri` (a signed dialect needs it and none is configured). */
  readonly requireJwksUri?: boolean | undefined;
  /** Bound on one metadata GET, and on how long a request waits for a fetch under way. */
  readonly timeoutMs: number;
  readonly verifySsl: boolean;
  readonly caFile?: string | undefined;
  readonly dispatcher?: Dispatcher | undefined;
  readonly refreshMs?: number | undefined;
  readonly retryMinMs?: number | undefined;
  readonly retryMaxMs?: number | undefined;
  /** Told once per change of state (failing, and why; the metadata kept after a failed refresh). */
  readonly warn?: IntrospectionWarn | undefined;
  /** Told when the metadata becomes known, or its endpoints change. */
  readonly info?: ((detail: string) => void) | undefined;
}

/**
 * Where the metadata of `issuer` may be, in the order tried: RFC 8414 §3.1
 * (`/.well-known/oauth-authorization-server` inserted between the host and
 * the issuer's path), then OpenID Connect Discovery (`/.well-known/openid-configuration`
 * appended to the issuer, which is where Keycloak and most OpenID providers
 * with a path in their issuer serve it).
 */
export function wellKnownUrls(issuer: string): string[] {
  const u = new URL(issuer);
  const path = u.pathname.replace(/\/+$/, '');
  const base = `${u.protocol}//${u.host}`;
  return [`${base}/.well-known/oauth-authorization-server${path}${u.search}`, `${base}${path}/.well-known/openid-configuration${u.search}`];
}

/**
 * A `MetadataSource` fed by discovery.
 *
 * @example
 * const metadata = new Discovery({ issuer: 'https://as.example.com', timeoutMs: 5000, verifySsl: true, warn });
 * const { introspectionEndpoint } = await metadata.get(); // 503 GatewayError while not known
 */
export class Discovery implements MetadataSource {
  readonly #opts: DiscoveryOptions;
  readonly #fetcher: DocumentFetcher;
  #current: ServerMetadata | undefined;
  /** The fetch under way; it never rejects. */
  #inFlight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When the next attempt is due (for Retry-After). */
  #nextAttempt = 0;
  #failures = 0;
  /** The last state warned about, so a state is reported once, not once per retry. */
  #reported = '';
  #closed = false;

  constructor(opts: DiscoveryOptions) {
    this.#opts = opts;
    this.#fetcher = new DocumentFetcher({ timeoutMs: opts.timeoutMs, verifySsl: opts.verifySsl, caFile: opts.caFile, dispatcher: opts.dispatcher });
    if (opts.initial !== undefined) {
      this.#current = opts.initial;
      this.#schedule(opts.refreshMs ?? DISCOVERY_REFRESH_MS);
    } else {
      this.#attempt();
    }
  }

  get current(): ServerMetadata | undefined {
    return this.#current;
  }

  get ready(): boolean {
    return this.#current !== undefined;
  }

  get(): Promise<ServerMetadata> {
    if (this.#current !== undefined) return Promise.resolve(this.#current);
    const inFlight = this.#inFlight;
    if (inFlight === undefined || this.#closed) return Promise.reject(this.#notReady());
    // A fetch is under way: wait for it, a bounded time.
    return new Promise<ServerMetadata>((resolve, reject) => {
      const timer = setTimeout(() => reject(this.#notReady()), this.#opts.timeoutMs);
      void inFlight.then(() => {
        clearTimeout(timer);
        if (this.#current !== undefined) resolve(this.#current);
        else reject(this.#notReady());
      });
    });
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#fetcher.close();
  }

  #notReady(): GatewayError {
    const seconds = Math.max(1, Math.ceil((this.#nextAttempt - Date.now()) / 1000));
    return new GatewayError('ERR_INTROSPECTION_NOT_READY', {
      retryAfter: String(this.#closed ? 1 : seconds),
      detail: `the discovery metadata of ${this.#opts.issuer} is not known yet`,
    });
  }

  /** Starts a fetch (one at a time); it schedules the next one, whatever its outcome. */
  #attempt(): void {
    if (this.#closed || this.#inFlight !== undefined) return;
    clearTimeout(this.#timer);
    this.#inFlight = this.#fetch()
      .catch(() => {
        // #fetch reports its own failures; only a throwing log callback lands here, and must not stop the retries.
        if (this.#timer === undefined || this.#nextAttempt < Date.now()) this.#schedule(this.#opts.retryMaxMs ?? DISCOVERY_RETRY_MAX_MS);
      })
      .finally(() => {
        this.#inFlight = undefined;
      });
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    this.#nextAttempt = Date.now() + ms;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#attempt(), ms);
    this.#timer.unref();
  }

  async #fetch(): Promise<void> {
    const o = this.#opts;
    const problems: string[] = [];
    let found: ServerMetadata | undefined;
    // The most telling failure names the state: a wrong document over a missing one over silence.
    let kind = 0;
    for (const url of wellKnownUrls(o.issuer)) {
      try {
        found = usableMetadata(await this.#fetcher.getJson(url), url, o);
        break;
      } catch (err) {
        kind = Math.max(kind, err instanceof MismatchError ? 3 : err instanceof DocumentError ? FAILURE_RANK[err.kind] : 0);
        problems.push(err instanceof Error ? err.message : 'error');
        // Nothing answered at the issuer's origin: the other document is on the same origin.
        if (err instanceof DocumentError && err.kind === 'network') break;
      }
    }
    if (this.#closed) return;
    if (found !== undefined) {
      const before = this.#current;
      this.#current = found;
      this.#failures = 0;
      this.#schedule(o.refreshMs ?? DISCOVERY_REFRESH_MS);
      if (before === undefined || before.introspectionEndpoint.href !== found.introspectionEndpoint.href || before.jwksUri !== found.jwksUri) {
        o.info?.(`discovery metadata of ${o.issuer}: introspection endpoint ${found.introspectionEndpoint.href}${found.jwksUri ? `, JWKS ${found.jwksUri}` : ''}`);
      }
      this.#reported = 'ok';
      return;
    }
    const retryMin = o.retryMinMs ?? DISCOVERY_RETRY_MIN_MS;
    const retryMax = o.retryMaxMs ?? DISCOVERY_RETRY_MAX_MS;
    const delay = Math.min(retryMax, retryMin * 2 ** Math.min(this.#failures, 20));
    this.#failures++;
    // Up to a fifth more, so that instances started together do not retry in step.
    this.#schedule(Math.round(delay * (1 + Math.random() * 0.2)));
    const state = `${this.#current === undefined ? 'unknown' : 'kept'}:${kind}`;
    if (state === this.#reported) return;
    this.#reported = state;
    const detail = problems.join('; ');
    o.warn?.(
      this.#current === undefined
        ? {
            code: 'ERR_INTROSPECTION_NOT_READY',
            detail: `discovery of ${o.issuer} failed: ${detail}. Requests that need this authorization server are refused with 503 until it succeeds; retrying`,
          }
        : {
            code: 'WARN_DISCOVERY_REFRESH_FAILED',
            detail: `refreshing the discovery metadata of ${o.issuer} failed: ${detail}. The metadata fetched before is kept; retrying`,
          },
    );
  }
}

class MismatchError extends Error {}

const FAILURE_RANK = { network: 0, status: 1, invalid: 2 } as const;

/**
 * The parts of a metadata document the gateway uses, checked: `issuer`
 * exactly the configured one (RFC 8414 §3.3, OpenID Discovery §4.3: a
 * document naming another issuer may be an impostor's), and endpoints that
 * are http(s) URLs, https whenever the issuer is (the gateway sends its
 * credentials there).
 */
function usableMetadata(doc: Record<string, unknown>, url: string, o: DiscoveryOptions): ServerMetadata {
  if (doc.issuer !== o.issuer) {
    const named = typeof doc.issuer === 'string' ? JSON.stringify(doc.issuer.slice(0, 200)) : 'no issuer';
    throw new MismatchError(`${url} names ${named}, not the configured issuer ${JSON.stringify(o.issuer)} (RFC 8414 §3.3: it must be the same, exactly)`);
  }
  const secure = o.issuer.startsWith('https:');
  const endpoint = (name: string, required: boolean): string | undefined => {
    const v = doc[name];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'string') throw new DocumentError('invalid', `${url} has no ${name}`);
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      throw new DocumentError('invalid', `${url} has a ${name} that is not a URL`);
    }
    const protocolOk = secure ? u.protocol === 'https:' : u.protocol === 'http:' || u.protocol === 'https:';
    if (!protocolOk || u.username !== '' || u.password !== '' || u.hash !== '') {
      throw new DocumentError('invalid', `${url} has a ${name} that is not an ${secure ? 'https' : 'http(s)'} URL without credentials or fragment`);
    }
    return u.href;
  };
  const introspection = o.introspectionEndpoint ?? endpoint('introspection_endpoint', true)!;
  const jwksUri = o.jwksUri ?? endpoint('jwks_uri', o.requireJwksUri === true);
  let tokenEndpoint: string | undefined;
  try {
    tokenEndpoint = endpoint('token_endpoint', false);
  } catch {
    tokenEndpoint = undefined; // only an audience private_key_jwt may use; not a reason to refuse the document
  }
  return Object.freeze({ issuer: o.issuer, introspectionEndpoint: new URL(introspection), jwksUri, tokenEndpoint, document: Object.freeze(doc) });
}
