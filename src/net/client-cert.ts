import { hash } from 'node:crypto';

/** RFC 8705 §3.1 `x5t#S256`: the SHA-256 of the certificate's DER, base64url. */
export function certThumbprint(der: Buffer): string {
  return hash('sha256', der, 'base64url');
}

/** Certificates are a few KiB; anything larger is not one. */
const MAX_HEADER = 16 * 1024;
const SF_BINARY = /^:([A-Za-z0-9+/]+={0,2}):$/;

/**
 * The DER of the certificate in a `Client-Cert` header (RFC 9440: a
 * structured-field byte sequence, `:<base64 DER>:`), or in NGINX's
 * `$ssl_client_escaped_cert` (URL-encoded PEM); undefined for anything else.
 */
export function clientCertFromHeader(value: string): Buffer | undefined {
  const v = value.trim();
  if (v.length === 0 || v.length > MAX_HEADER) return undefined;
  const sf = SF_BINARY.exec(v);
  if (sf !== null) {
    const der = Buffer.from(sf[1]!, 'base64');
    return der.length > 0 && der[0] === 0x30 ? der : undefined;
  }
  let pem: string;
  try {
    pem = decodeURIComponent(v);
  } catch {
    return undefined;
  }
  const m = /^-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----\s*$/.exec(pem);
  if (m === null) return undefined;
  const der = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  return der.length > 0 && der[0] === 0x30 ? der : undefined;
}
