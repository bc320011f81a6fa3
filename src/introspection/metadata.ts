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
}

/** The metadata source validated options ask for. */
export function metadataFor(o: MetadataOptions): MetadataSource {
  if (o.introspection_endpoint !== undefined) {
    return new StaticMetadata({ introspectionEndpoint: new URL(o.introspection_endpoint), issuer: o.issuer, jwksUri: o.jwks_uri });
  }
  throw new TypeError('discovery (issuer without introspection_endpoint) is not available yet');
}
