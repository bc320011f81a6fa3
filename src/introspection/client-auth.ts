import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { KeyFileError } from '../minting/keys.js';
import { formEncode } from './form.js';
import { loadClientKeyFile, privateKeyJwt } from './private-key-jwt.js';

export { formEncode } from './form.js';

/*
 * Client authentication to the introspection endpoint: what one call carries
 * to prove it is the gateway. Each method says, per call, which headers and
 * form fields to add; `tls_client_auth` also gives the connection its client
 * certificate. Built once from validated options, never per request.
 */

/** RFC 8414 / OpenID `*_endpoint_auth_method` names. */
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'tls_client_auth';

/** What one call adds: headers, and form fields already encoded (`&name=value...`, or ''). */
export interface CallCredentials {
  readonly headers: Readonly<Record<string, string>>;
  readonly form: string;
}

export interface ClientAuthentication {
  readonly method: ClientAuthMethod;
  /** The gateway's client_id at the authorization server. */
  readonly clientId: string;
  /** A TLS client certificate and key for every connection (`tls_client_auth`). */
  readonly clientCertificate?: { readonly cert: Buffer | string; readonly key: Buffer | string } | undefined;
  /**
   * Credentials for one call. Synchronous when they never change (secrets);
   * a promise when they are made per call (a signed assertion).
   * `audience` is where the call goes, as the method needs it (the
   * authorization server's issuer or endpoint, for `private_key_jwt`).
   */
  credentials(audience: AssertionAudience): CallCredentials | Promise<CallCredentials>;
  /** Told to the operator when the server refuses the gateway's credentials (401/403). */
  readonly hint: string;
}

/** Where an assertion may be addressed; the method picks (see `private_key_jwt`). */
export interface AssertionAudience {
  /** The authorization server's issuer identifier, when known (configured or discovered). */
  readonly issuer: string | undefined;
  /** The token endpoint from the server's metadata, when known. */
  readonly tokenEndpoint: string | undefined;
  /** The introspection endpoint the call goes to. */
  readonly endpoint: string;
}

/** RFC 6749 §2.3.1: id and secret form-encoded, then Basic. The default. */
export function clientSecretBasic(clientId: string, clientSecret: string): ClientAuthentication {
  const basic = Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`).toString('base64');
  const creds: CallCredentials = Object.freeze({ headers: Object.freeze({ authorization: `Basic ${basic}` }), form: '' });
  return Object.freeze({
    method: 'client_secret_basic' as const,
    clientId,
    credentials: () => creds,
    hint: "authorization server refused the gateway's credentials: check client_id and client_secret (client_secret_basic)",
  });
}

/** RFC 6749 §2.3.1: id and secret as form fields in the body. */
export function clientSecretPost(clientId: string, clientSecret: string): ClientAuthentication {
  const creds: CallCredentials = Object.freeze({
    headers: Object.freeze({}),
    form: `&client_id=${formEncode(clientId)}&client_secret=${formEncode(clientSecret)}`,
  });
  return Object.freeze({
    method: 'client_secret_post' as const,
    clientId,
    credentials: () => creds,
    hint: "authorization server refused the gateway's credentials: check client_id and client_secret (client_secret_post)",
  });
}

/** `tls_client_auth` (RFC 8705 §2.1): the connection's client certificate proves who the gateway is; the body names the client. */
export function tlsClientAuth(clientId: string, cert: Buffer | string, key: Buffer | string): ClientAuthentication {
  const creds: CallCredentials = Object.freeze({ headers: Object.freeze({}), form: `&client_id=${formEncode(clientId)}` });
  return Object.freeze({
    method: 'tls_client_auth' as const,
    clientId,
    clientCertificate: Object.freeze({ cert, key }),
    credentials: () => creds,
    hint: "authorization server refused the gateway's client certificate: check client_cert_file, client_key_file and the certificate's subject registered for client_id (tls_client_auth)",
  });
}

/** The options of one route that decide how the gateway authenticates. */
export interface ClientAuthOptions {
  readonly client_auth_method: ClientAuthMethod;
  readonly client_id: string;
  readonly client_secret?: string | undefined;
  readonly client_secret_file?: string | undefined;
  readonly client_key_file?: string | undefined;
  readonly client_cert_file?: string | undefined;
  readonly client_assertion_audience?: string | undefined;
  /** Checked against the method (a client certificate needs TLS). */
  readonly introspection_endpoint?: string | undefined;
}

/**
 * The client authentication validated options ask for, reading the files they
 * name (mounted secrets: one trailing newline is not part of a secret).
 */
export function clientAuthFor(o: ClientAuthOptions): ClientAuthentication {
  switch (o.client_auth_method) {
    case 'client_secret_basic':
      return clientSecretBasic(o.client_id, secretOf(o));
    case 'client_secret_post':
      return clientSecretPost(o.client_id, secretOf(o));
    case 'tls_client_auth':
      return tlsClientAuth(o.client_id, readFileSync(o.client_cert_file!), readFileSync(o.client_key_file!));
    case 'private_key_jwt':
      return privateKeyJwt(o.client_id, loadClientKeyFile(o.client_key_file!), { audience: o.client_assertion_audience });
  }
}

function secretOf(o: ClientAuthOptions): string {
  return o.client_secret ?? readSecretFile(o.client_secret_file!);
}

/** A mounted secret: `echo secret > file` and editors end it with a newline, which is not part of it. */
function readSecretFile(file: string): string {
  return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
}

/** A problem with the files a route's client authentication names: which option, and what is wrong. */
export interface ClientAuthProblem {
  readonly key: 'client_auth_method' | 'client_secret_file' | 'client_key_file' | 'client_cert_file' | 'client_assertion_audience';
  readonly message: string;
}

/**
 * What would stop `clientAuthFor` from working with these options, checked
 * when the configuration is loaded (so `--check` reports it with the YAML
 * line, and the gateway never starts with a key it cannot use): an empty
 * secret file, a client key that is public, of the wrong type or not a key,
 * a client certificate that is not one or is not the key's, a client
 * certificate for an http:// endpoint. The files are known to be readable.
 */
export function clientAuthProblems(o: ClientAuthOptions): ClientAuthProblem[] {
  const out: ClientAuthProblem[] = [];
  const method = o.client_auth_method;
  if (o.client_assertion_audience !== undefined && method !== 'private_key_jwt') {
    out.push({ key: 'client_assertion_audience', message: `is only used with client_auth_method private_key_jwt (this route uses ${method})` });
  }
  if ((method === 'client_secret_basic' || method === 'client_secret_post') && o.client_secret === undefined && o.client_secret_file !== undefined) {
    if (readSecretFile(o.client_secret_file) === '') out.push({ key: 'client_secret_file', message: `"${o.client_secret_file}" is empty` });
  }
  if (method === 'private_key_jwt' && o.client_key_file !== undefined) {
    try {
      loadClientKeyFile(o.client_key_file);
    } catch (err) {
      if (!(err instanceof KeyFileError)) throw err;
      out.push({ key: 'client_key_file', message: err.message });
    }
  }
  if (method === 'tls_client_auth' && o.introspection_endpoint?.startsWith('http:')) {
    out.push({ key: 'client_auth_method', message: `tls_client_auth needs an https:// introspection_endpoint (a client certificate is sent in the TLS handshake); ${o.introspection_endpoint} is http` });
  }
  if (method === 'tls_client_auth' && o.client_key_file !== undefined && o.client_cert_file !== undefined) {
    let key;
    let cert;
    try {
      key = createPrivateKey(readFileSync(o.client_key_file));
    } catch {
      out.push({ key: 'client_key_file', message: `${o.client_key_file}: not a private key in PEM form (the client certificate's key)` });
    }
    try {
      cert = new X509Certificate(readFileSync(o.client_cert_file));
    } catch {
      out.push({ key: 'client_cert_file', message: `${o.client_cert_file}: not an X.509 certificate in PEM form` });
    }
    if (key !== undefined && cert !== undefined && !cert.checkPrivateKey(key)) {
      out.push({ key: 'client_key_file', message: `${o.client_key_file}: is not the key of the certificate in ${o.client_cert_file}` });
    }
  }
  return out;
}
