import { readFileSync } from 'node:fs';
import type { SecureContextOptions } from 'node:tls';

/** `listen.tls`: the listener's certificate chain and key (PEM files). */
export interface ListenerTls {
  readonly cert_file: string;
  readonly key_file: string;
  /** Ask clients for a certificate (RFC 8705 certificate-bound tokens); not verified against a CA. */
  readonly request_client_certificates?: boolean | undefined;
}

/** TLS to an upstream: the merged `upstream` defaults and a route's own options. */
export interface UpstreamTls {
  /** PEM CA certificates trusted instead of Node's bundled roots. */
  readonly ca_file?: string | undefined;
  readonly verify_ssl: boolean;
  /** A client certificate (PEM) presented to upstreams that ask for one, with its key. */
  readonly client_cert_file?: string | undefined;
  readonly client_key_file?: string | undefined;
}

/** The oldest protocol a listener accepts. */
export const MIN_TLS_VERSION = 'TLSv1.2';

/**
 * A listener's TLS options, read from its files now (at start, and again on
 * each reload: `server.setSecureContext`). Throws when a file cannot be read;
 * a mismatched pair throws when Node builds the context.
 */
export function listenerTlsOptions(tls: ListenerTls): SecureContextOptions {
  return { cert: readFileSync(tls.cert_file), key: readFileSync(tls.key_file), minVersion: MIN_TLS_VERSION };
}

/** undici connector options (passed on to `tls.connect`) for an upstream's TLS options. */
export function upstreamTlsOptions(tls: UpstreamTls): { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean } {
  return {
    ...(tls.ca_file !== undefined ? { ca: readFileSync(tls.ca_file) } : {}),
    ...(tls.client_cert_file !== undefined ? { cert: readFileSync(tls.client_cert_file) } : {}),
    ...(tls.client_key_file !== undefined ? { key: readFileSync(tls.client_key_file) } : {}),
    rejectUnauthorized: tls.verify_ssl,
  };
}
