import type { Dispatcher } from 'undici';
import { Discovery } from './discovery.js';
import type { IntrospectionWarn } from './transport.js';

/*
 * Where the authorization server's endpoints come from: the configuration
 * (`introspection_endpoint`, `jwks_uri`), or its discovery metadata (RFC 8414
 * / OpenID Connect Discovery) when only `issuer` is configured.
 */

/** What the gateway needs to know about an authorization server. */
export interface ServerMetadata {
  /** Its issuer identifier, when configured or discovered. */
  readonly issuer?: string | undefined;
  readonly introspectionEndpoint: URL;
  /** Its JWKS (for RFC 9701 signed answers). */
  readonly jwksUri?: string | undefined;
  /** Its token endpoint (an audience `private_key_jwt` assertions may need). */
  readonly tokenEndpoint?: string | undefined;
  /** The whole discovery metadata document, when the metadata was discovered (for members not read above). */
  readonly document?: Readonly<Record<string, unknown>> | undefined;
  /** `introspection_endpoint_auth_signing_alg_values_supported` and the like may follow. */
}

export interface MetadataSource {
  /** The metadata once known: synchronous, so a call costs no promise once it is. */
  readonly current: ServerMetadata | undefined;
  /**
   * The metadata, waiting (a bounded time) for it when it is not known yet.
   * Throws a `GatewayError` when it cannot be had: the gateway is not ready,
   * and a request is refused (503), never let through.
   */
  get(): Promise<ServerMetadata>;
  /** Whether the metadata is known (for readiness). */
  readonly ready: boolean;
  /** Stops fetching (discovery's retries). */
  close(): void;
}

/** Metadata given in the configuration: always known. */
export class StaticMetadata implements MetadataSource {
  readonly current: ServerMetadata;
  readonly ready = true;
  readonly #promise: Promise<ServerMetadata>;

  constructor(metadata: ServerMetadata) {
    this.current = Object.freeze({ ...metadata });
    this.#promise = Promise.resolve(this.current);
  }

  get(): Promise<ServerMetadata> {
    return this.#promise;
  }

  close(): void {}
}

/** The options of one route that say where the authorization server's endpoints are. */
export interface MetadataOptions {
  readonly introspection_endpoint?: string | undefined;
  readonly issuer?: string | undefined;
  readonly jwks_uri?: string | undefined;
  /** A signed dialect needs the server's JWKS: discovered from `issuer` when `jwks_uri` is not set. */
  readonly introspection_response?: string | undefined;
  /** Discovery's bounds and TLS trust, as for the introspection endpoint. */
  readonly timeout_ms?: number | undefined;
  readonly verify_ssl?: boolean | undefined;
  readonly ca_file?: string | undefined;
}

/** Where discovery reports (the gateway logs these) and, in tests, what it fetches with. */
export interface MetadataDeps {
  /** Metadata a previous configuration discovered for the same options (a reload): known at once. */
  readonly initial?: ServerMetadata | undefined;
  readonly warn?: IntrospectionWarn | undefined;
  readonly info?: ((detail: string) => void) | undefined;
  readonly dispatcher?: Dispatcher | undefined;
}

/**
 * The metadata source validated options ask for: the configuration alone
 * when it names the introspection endpoint (and the JWKS, when a signed
 * dialect needs one); otherwise discovery from `issuer`, which starts
 * fetching at once. `auto` with a configured endpoint does not discover:
 * a signed answer then needs `jwks_uri` (a server without discovery must
 * not make a route that reads JSON answers unready).
 */
export function metadataFor(o: MetadataOptions, deps: MetadataDeps = {}): MetadataSource {
  const needsJwks = o.introspection_response === 'token_introspection_jwt' && o.jwks_uri === undefined;
  if (o.introspection_endpoint !== undefined && (!needsJwks || o.issuer === undefined)) {
    return new StaticMetadata({ introspectionEndpoint: new URL(o.introspection_endpoint), issuer: o.issuer, jwksUri: o.jwks_uri });
  }
  if (o.issuer === undefined) throw new TypeError('"introspection_endpoint" or "issuer" option is required');
  return new Discovery({
    issuer: o.issuer,
    introspectionEndpoint: o.introspection_endpoint,
    jwksUri: o.jwks_uri,
    requireJwksUri: needsJwks,
    timeoutMs: o.timeout_ms ?? 5000,
    verifySsl: o.verify_ssl ?? true,
    caFile: o.ca_file,
    dispatcher: deps.dispatcher,
    initial: deps.initial,
    warn: deps.warn,
    info: deps.info,
  });
}
