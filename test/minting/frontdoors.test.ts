/*
 * Minted tokens through every front door of the shared suite (proxy,
 * decide(), forward-auth, Envoy gRPC, Caddy, Express, Fastify, NGINX), with
 * the real oidc-provider answering JSON: what the API receives (or what the
 * decision tells the data plane to send) verifies against the key set the
 * gateway publishes for its signing key file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { JSONWebKeySet } from 'jose';
import type { DevAuthorizationServer } from '../../src/dev/authorization-server.js';
import { KeySet, loadSigningKeyFile } from '../../src/minting/index.js';
import { startEchoUpstream, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { caddyDoor, expressDoor, fastifyDoor, forwardAuthDoor, libraryDoor, nginxDoor, proxyDoor } from '../frontdoors/adapters.js';
import type { FrontDoor, RunningFrontDoor } from '../frontdoors/behaviour.case.js';
import { envoyGrpcDoor } from '../forward-auth/envoy-grpc.door.js';
import { bearerOf, clientCredentials, introspect, jsonPhantomToken, keyDir, startDevAs, verifyMinted } from './helpers.js';

const ISSUER = 'https://gateway.example.com';
const keys = keyDir();
const keyFile = keys.key('doors', 'ed25519').pem;
const jwks = new KeySet(loadSigningKeyFile(keyFile)).jwks() as JSONWebKeySet;
let as: DevAuthorizationServer;
let api: EchoUpstream;

before(async () => {
  as = await startDevAs();
  api = await startEchoUpstream();
});
after(async () => {
  await api.close();
  await as.close();
  keys.cleanup();
});

function yaml(): string {
  return `
phantom_token:
${jsonPhantomToken(as)}
routes:
  - path: /api
    upstream: ${api.url}
    phantom_token: { scope: read }
minting:
  issuer: ${ISSUER}
  signing_key_file: ${keyFile}
  audience: api.example.com
log: { level: silent }
`;
}

for (const door of [proxyDoor, libraryDoor, forwardAuthDoor, envoyGrpcDoor as unknown as FrontDoor, caddyDoor, expressDoor, fastifyDoor, nginxDoor]) {
  describe(`minted token through ${door.name} (real oidc-provider, json)`, { skip: door.skip ?? false }, () => {
    let running: RunningFrontDoor;
    before(async () => {
      running = await door.start(yaml(), { as: undefined as unknown as ScriptedIntrospection, api });
    });
    after(() => running.close());

    test('an active token: the JWT verifies against the published key set, with the right claims and an exp no later than the token', async () => {
      const token = await clientCredentials(as, 'read');
      const out = await running.call({ target: '/api/x', authorization: `Bearer ${token}` });
      assert.equal(out.status, 200);
      const { payload, header } = await verifyMinted(bearerOf(out.forwarded ?? undefined), jwks, { issuer: ISSUER, audience: 'api.example.com' });
      assert.equal(header.typ, 'at+jwt');
      assert.equal(header.kid, jwks.keys[0]!.kid);
      assert.equal(payload.client_id, 'test-client');
      assert.equal(payload.scope, 'read');
      assert.ok(payload.exp! <= ((await introspect(as, token)).exp as number));
    });

    test('an unknown token: 401 invalid_token', async () => {
      const out = await running.call({ target: '/api/x', authorization: 'Bearer not-issued-by-the-server' });
      assert.equal(out.status, 401);
      assert.equal(out.challenge, 'Bearer error="invalid_token"');
    });
  });
}
