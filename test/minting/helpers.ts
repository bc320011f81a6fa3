/*
 * What the minting tests share: the real development authorization server
 * (oidc-provider answering RFC 7662 JSON), client-credentials tokens from it,
 * key files in a scratch directory, and verifying a minted JWT with jose
 * against the JWKS a gateway serves.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import { request } from 'undici';
import { DEV_CLIENTS, startDevAuthorizationServer, type DevAuthorizationServer } from '../../src/dev/authorization-server.js';

export { DEV_CLIENTS };

export async function startDevAs(opts: { accessTokenTtl?: number } = {}): Promise<DevAuthorizationServer> {
  return startDevAuthorizationServer({ port: 0, ...opts });
}

/** An opaque client-credentials access token from the dev authorization server. */
export async function clientCredentials(as: DevAuthorizationServer, scope = 'read'): Promise<string> {
  const res = await request(as.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret, scope }).toString(),
  });
  assert.equal(res.statusCode, 200);
  const body = (await res.body.json()) as { access_token: string };
  assert.equal(body.access_token.split('.').length, 1, 'the dev authorization server hands out opaque tokens');
  return body.access_token;
}

/** What the authorization server itself says about a token (RFC 7662 JSON). */
export async function introspect(as: DevAuthorizationServer, token: string): Promise<Record<string, unknown>> {
  const basic = `Basic ${Buffer.from(`${DEV_CLIENTS.introspection.id}:${DEV_CLIENTS.introspection.secret}`).toString('base64')}`;
  const res = await request(as.introspectionEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
    body: `token=${encodeURIComponent(token)}`,
  });
  return (await res.body.json()) as Record<string, unknown>;
}

/** `phantom_token` block for the dev AS in the `json` dialect. */
export function jsonPhantomToken(as: DevAuthorizationServer, indent = '  '): string {
  return [
    `introspection_endpoint: ${as.introspectionEndpoint.replace('localhost', '127.0.0.1')}`,
    `client_id: ${DEV_CLIENTS.introspection.id}`,
    `client_secret: ${DEV_CLIENTS.introspection.secret}`,
    'introspection_response: json',
  ]
    .map((l) => `${indent}${l}`)
    .join('\n');
}

/** The JWKS a listener serves at `/.well-known/jwks.json`. */
export async function fetchJwks(baseUrl: string): Promise<JSONWebKeySet> {
  const res = await request(`${baseUrl}/.well-known/jwks.json`);
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], 'application/jwk-set+json');
  return (await res.body.json()) as JSONWebKeySet;
}

/** Verifies a minted JWT with jose against `jwks` (RFC 9068 `typ`), at `now` (ms). */
export async function verifyMinted(
  jwt: string,
  jwks: JSONWebKeySet,
  opts: { issuer?: string; audience?: string; now?: number } = {},
): Promise<{ payload: JWTPayload; header: ProtectedHeaderParameters }> {
  const { payload, protectedHeader } = await jwtVerify(jwt, createLocalJWKSet(jwks), {
    typ: 'at+jwt',
    algorithms: ['ES256', 'EdDSA', 'RS256'],
    ...(opts.issuer ? { issuer: opts.issuer } : {}),
    ...(opts.audience ? { audience: opts.audience } : {}),
    ...(opts.now !== undefined ? { currentDate: new Date(opts.now) } : {}),
  });
  return { payload, header: protectedHeader };
}

export function bearerOf(authorization: string | string[] | undefined): string {
  assert.equal(typeof authorization, 'string');
  const m = /^Bearer (\S+)$/.exec(authorization as string);
  assert.ok(m, `not a Bearer header: ${String(authorization)}`);
  return m[1]!;
}

export function kidOf(jwt: string): string | undefined {
  return decodeProtectedHeader(jwt).kid;
}

/** Key files of every kind, in a scratch directory removed by `cleanup()`. */
export function keyDir(): {
  dir: string;
  write(name: string, text: string): string;
  /** A private key as PEM (PKCS#8) and as a JWK file; returns both paths. */
  key(name: string, kind: 'ec' | 'ed25519' | 'rsa', opts?: { namedCurve?: string; modulusLength?: number }): { pem: string; jwk: string; privateKey: KeyObject };
  cleanup(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), 'phantom-gateway-keys-'));
  const write = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  };
  return {
    dir,
    write,
    key(name, kind, opts = {}) {
      const { privateKey } =
        kind === 'ec'
          ? generateKeyPairSync('ec', { namedCurve: opts.namedCurve ?? 'P-256' })
          : kind === 'rsa'
            ? generateKeyPairSync('rsa', { modulusLength: opts.modulusLength ?? 2048 })
            : generateKeyPairSync('ed25519');
      return {
        pem: write(`${name}.pem`, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()),
        jwk: write(`${name}.jwk`, JSON.stringify(privateKey.export({ format: 'jwk' }))),
        privateKey,
      };
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
