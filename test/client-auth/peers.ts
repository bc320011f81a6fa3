/*
 * The real oidc-provider (the development authorization server) with the
 * introspection client registered for one authentication method, a gateway
 * in front of an echo upstream, and what the tests ask of them.
 */
import assert from 'node:assert/strict';
import { createLocalJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { Agent, request } from 'undici';
import { DEV_CLIENTS, startDevAuthorizationServer, type DevAuthorizationServer, type DevAuthorizationServerOptions } from '../../src/dev/authorization-server.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoUpstream, type EchoUpstream } from '../helpers/servers.js';

/** `iss` of the tokens the gateway mints in these tests. */
export const MINTED_ISSUER = 'https://gateway.test';

export function startAs(opts: Omit<DevAuthorizationServerOptions, 'port'>): Promise<DevAuthorizationServer> {
  // 120 s tokens: shorter than minting's 300 s cap, so the minted exp is the token's own.
  return startDevAuthorizationServer({ port: 0, publicHost: '127.0.0.1', accessTokenTtl: 120, ...opts });
}

/** A client_credentials token of the tutorial's client, and when it expires (epoch seconds, at the latest). */
export async function clientCredentialsToken(as: DevAuthorizationServer, ca?: Buffer): Promise<{ token: string; exp: number }> {
  const dispatcher = ca === undefined ? undefined : new Agent({ connect: { ca } });
  try {
    const res = await request(as.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: DEV_CLIENTS.client.id, client_secret: DEV_CLIENTS.client.secret, scope: 'read' }).toString(),
      ...(dispatcher ? { dispatcher } : {}),
    });
    const body = (await res.body.json()) as { access_token: string; expires_in: number };
    assert.equal(res.statusCode, 200, JSON.stringify(body));
    return { token: body.access_token, exp: Math.floor(Date.now() / 1000) + body.expires_in };
  } finally {
    await dispatcher?.close();
  }
}

export interface Stack {
  as: DevAuthorizationServer;
  api: EchoUpstream;
  gw: TestGateway;
  close(): Promise<void>;
}

/** A gateway whose `/api` route (scope `read`) uses `phantomToken` (YAML lines, indented two spaces) in front of an echo upstream. */
export async function startGatewayFor(as: DevAuthorizationServer, phantomToken: string): Promise<Stack> {
  const api = await startEchoUpstream();
  try {
    const gw = await startGateway(`
minting:
  issuer: ${MINTED_ISSUER}
phantom_token:
  client_id: ${DEV_CLIENTS.introspection.id}
  scope: read
${phantomToken}
routes:
  - path: /api
    upstream: ${api.url}
`);
    return { as, api, gw, close: async () => Promise.all([gw.close(), api.close()]).then(() => undefined) };
  } catch (err) {
    await api.close();
    throw err;
  }
}

/** `GET /api/items` through the gateway with `token`. */
export async function callApi(stack: Stack, token: string): Promise<{ status: number; headers: Record<string, unknown>; body: Record<string, unknown> }> {
  const res = await request(`${stack.gw.url}/api/items`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as Record<string, unknown> };
}

/** The JWT the upstream received, verified against the gateway's published keys. */
export async function forwardedJwt(stack: Stack, body: Record<string, unknown>): Promise<{ jwt: string; claims: JWTPayload }> {
  const authorization = (body.headers as Record<string, string>).authorization;
  assert.match(authorization, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'the upstream gets a JWT');
  const jwt = authorization.slice('Bearer '.length);
  const jwks = stack.gw.gateway.guards.jwks();
  assert.ok(jwks !== undefined, 'the gateway publishes the keys it mints with');
  const { payload } = await jwtVerify(jwt, createLocalJWKSet({ keys: [...jwks.keys] }), { issuer: MINTED_ISSUER, typ: 'at+jwt' });
  return { jwt, claims: payload };
}

/** Access log lines of `/api` requests: status, cache and refusal code. */
export function accessLog(stack: Stack): Array<{ status: unknown; cache: unknown; code: unknown }> {
  return stack.gw.logs.filter((l) => l.msg === 'request' && l.path === '/api/items').map((l) => ({ status: l.status, cache: l.cache, code: l.code }));
}

/** Warnings about the introspection endpoint's answers. */
export function introspectionWarnings(stack: Stack): Array<Record<string, unknown>> {
  return stack.gw.logs.filter((l) => typeof l.code === 'string' && (l.code as string).startsWith('ERR_INTROSPECTION') && l.msg !== 'request');
}
