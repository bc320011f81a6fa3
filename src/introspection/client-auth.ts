import { readFileSync } from 'node:fs';
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

/** application/x-www-form-urlencoded encoding of one value (space as `+`). */
export function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+').replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
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
}

/**
 * The client authentication validated options ask for, reading the files they
 * name (mounted secrets: one trailing newline is not part of a secret).
 */
export function clientAuthFor(o: ClientAuthOptions): ClientAuthentication {
  const secret = () => o.client_secret ?? readFileSync(o.client_secret_file!, 'utf8').replace(/\r?\n$/, '');
  switch (o.client_auth_method) {
    case 'client_secret_basic':
      return clientSecretBasic(o.client_id, secret());
    case 'client_secret_post':
      return clientSecretPost(o.client_id, secret());
    case 'tls_client_auth':
      return tlsClientAuth(o.client_id, readFileSync(o.client_cert_file!), readFileSync(o.client_key_file!));
    case 'private_key_jwt':
      throw new TypeError('client_auth_method private_key_jwt is not available yet');
  }
}
