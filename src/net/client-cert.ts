import { hash } from 'node:crypto';

/*
 * A client's TLS certificate as a trusted peer passes it on, and its RFC 8705
 * §3.1 thumbprint: what a certificate-bound token's `cnf["x5t#S256"]` names.
 * The binding needs only the thumbprint (the TLS handshake proved the client
 * holds the key); nothing here checks the certificate against a CA.
 */

/** The largest header value read (a certificate with a long chain of names stays far below). */
export const MAX_CLIENT_CERT_HEADER = 16 * 1024;

const SF_BINARY = /^:([A-Za-z0-9+/]+={0,2}):(?:;.*)?$/s;
const PEM = /^-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE-----\r?\n?$/;
const BASE64_LINE = /[\r\n]/g;

/**
 * RFC 8705 §3.1 thumbprint of a certificate: SHA-256 of its DER, base64url
 * without padding (the form of `cnf["x5t#S256"]`).
 *
 * @example
 * certThumbprint(new X509Certificate(pem).raw) // 'A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0'
 */
export function certThumbprint(der: Buffer): string {
  return hash('sha256', der, 'base64url');
}

/**
 * The DER of the certificate in one header value, or undefined for anything
 * else (empty, over `MAX_CLIENT_CERT_HEADER`, not one of the forms below, not
 * a DER SEQUENCE):
 *
 * - RFC 9440 `Client-Cert`: an sf-binary, `:<base64 DER>:` (parameters after
 *   it ignored);
 * - NGINX's `$ssl_client_escaped_cert` and Envoy's
 *   `attributes.source.certificate`: the PEM, URL-encoded.
 *
 * @example
 * const der = clientCertFromHeader(req.headers['client-cert']);
 * if (der !== undefined) thumbprint = certThumbprint(der);
 */
export function clientCertFromHeader(value: string | undefined): Buffer | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v.length === 0 || v.length > MAX_CLIENT_CERT_HEADER) return undefined;
  let b64: string;
  if (v.charCodeAt(0) === 58 /* : */) {
    const m = SF_BINARY.exec(v);
    if (m === null) return undefined;
    b64 = m[1]!;
  } else if (v.charCodeAt(0) === 45 /* - */ || v.charCodeAt(0) === 37 /* % */) {
    let pem: string;
    try {
      pem = decodeURIComponent(v);
    } catch {
      return undefined;
    }
    const m = PEM.exec(pem);
    if (m === null) return undefined;
    b64 = m[1]!.replace(BASE64_LINE, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  } else {
    return undefined;
  }
  if (b64.length % 4 !== 0) return undefined;
  const der = Buffer.from(b64, 'base64');
  return isDerSequence(der) ? der : undefined;
}

/** A DER SEQUENCE whose length is exactly the rest of the bytes (what an X.509 certificate is). */
function isDerSequence(der: Buffer): boolean {
  if (der.length < 2 || der[0] !== 0x30) return false;
  const first = der[1]!;
  if (first < 0x80) return first + 2 === der.length;
  const n = first & 0x7f;
  // A certificate under 16 KiB needs at most two length bytes; the long form never for a length under 128.
  if (n === 0 || n > 2 || der.length < 2 + n) return false;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + der[2 + i]!;
  if (len < 128 || (n === 2 && len < 256)) return false;
  return 2 + n + len === der.length;
}
