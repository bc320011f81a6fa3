/*
 * Helpers for the tests of signed answers (RFC 9701), `auto` and discovery:
 * tokens from the development authorization server, a scripted JWKS and
 * signer (for answers the real server would never send), and checks of the
 * JWT an upstream received.
 */
import { createServer } from 'node:http';
import assert from 'node:assert/strict';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT, type CryptoKey, type JSONWebKeySet, type JWK, type JWTPayload } from 'jose';
import { request } from 'undici';
import { DEV_CLIENTS, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { listen, type Started } from './servers.js';

/** A client-credentials access token from the development authorization server (opaque). */
export async function devToken(as: DevAuthorizationServer, scope = 'read'): Promise<string> {
  const res = await request(as.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret, scope }).toString(),
  });
  const body = (await res.body.json()) as { access_token?: string };
  assert.equal(res.statusCode, 200, JSON.stringify(body));
  return body.access_token!;
}

/** What the development authorization server itself says of `token` in RFC 7662 JSON (the reference for claims and exp). */
export async function devIntrospect(as: DevAuthorizationServer, token: string): Promise<Record<string, unknown>> {
  const basic = Buffer.from(`${DEV_CLIENTS.introspection.id}:${DEV_CLIENTS.introspection.secret}`).toString('base64');
  const res = await request(as.introspectionEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: `Basic ${basic}` },
    body: `token=${encodeURIComponent(token)}`,
  });
  return (await res.body.json()) as Record<string, unknown>;
}

/** The bearer JWT in an Authorization header the upstream received, verified against `jwks`; its header and claims. */
export async function verifyForwarded(authorization: string | string[] | undefined, jwks: { readonly keys: readonly JWK[] } | undefined) {
  assert.ok(jwks !== undefined, 'a JWKS to verify with');
  assert.equal(typeof authorization, 'string');
  const m = /^Bearer (\S+)$/.exec(authorization as string);
  assert.ok(m, `a bearer JWT, got ${String(authorization)}`);
  const { payload, protectedHeader } = await jwtVerify(m[1]!, createLocalJWKSet(jwks as JSONWebKeySet));
  return { jwt: m[1]!, payload, header: protectedHeader };
}

export interface ScriptedKeys extends Started {
  /** The keys the JWKS currently publishes (public parts). */
  published: JWK[];
  /** GETs of the JWKS so far. */
  fetches: number;
  /** Answer 500 from now on. */
  failing: boolean;
  jwksUri: string;
}

/** A scripted JWKS endpoint (`/jwks`). */
export async function startScriptedJwks(): Promise<ScriptedKeys> {
  const self = { published: [] as JWK[], fetches: 0, failing: false } as ScriptedKeys;
  const server = createServer((req, res) => {
    if (req.url !== '/jwks') {
      res.writeHead(404).end();
      return;
    }
    self.fetches++;
    if (self.failing) {
      res.writeHead(500).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: self.published }));
  });
  Object.assign(self, await listen(server));
  self.jwksUri = `${self.url}/jwks`;
  return self;
}

export interface SignerKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function newSignerKey(kid: string): Promise<SignerKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

/** An RFC 9701 answer signed with `key`; `opts` breaks what a test wants broken. */
export async function signAnswer(
  answer: Record<string, unknown>,
  key: SignerKey,
  opts: { iss?: string; aud?: string; typ?: string; iat?: boolean; extra?: JWTPayload } = {},
): Promise<string> {
  let jwt = new SignJWT({ token_introspection: answer, ...opts.extra }).setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: opts.typ ?? 'token-introspection+jwt' });
  if (opts.iss !== '') jwt = jwt.setIssuer(opts.iss ?? SCRIPTED_ISSUER);
  if (opts.aud !== '') jwt = jwt.setAudience(opts.aud ?? SCRIPTED_CLIENT);
  if (opts.iat !== false) jwt = jwt.setIssuedAt();
  return jwt.sign(key.privateKey);
}

/** The issuer and client the scripted signed answers are for. */
export const SCRIPTED_ISSUER = 'https://as.scripted.test';
export const SCRIPTED_CLIENT = 'gateway-client';

/** An active RFC 7662 answer for a token that expires in `seconds`. */
export function activeAnswer(sub: string, seconds = 600, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { active: true, sub, client_id: 'test-client', scope: 'read', iss: SCRIPTED_ISSUER, exp: now + seconds, iat: now, token_type: 'Bearer', ...extra };
}
