/*
 * client_secret_post and client_secret_basic, the secret given inline or in
 * a mounted file, against the real oidc-provider: its RFC 7662 JSON (the
 * gateway mints) and its Curity-style JWT answer.
 */
import { after } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEV_CLIENTS } from '../../src/dev/authorization-server.js';
import { methodSuite } from './method.case.js';
import { startAs } from './peers.js';

const dir = mkdtempSync(join(tmpdir(), 'phantom-gateway-secrets-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const WRONG = 'Wrong-secret-4711';
// Mounted secrets end with a newline (`echo`, editors, kubectl create secret --from-file of such a file).
const secretFile = join(dir, 'secret');
writeFileSync(secretFile, `${DEV_CLIENTS.introspection.secret}\n`);
const wrongFile = join(dir, 'wrong');
writeFileSync(wrongFile, `${WRONG}\n`);

const post = { token_endpoint_auth_method: 'client_secret_post' };

for (const response of ['json', 'jwt'] as const) {
  methodSuite({
    name: `client_secret_post, introspection_response ${response} (real oidc-provider)`,
    method: 'client_secret_post',
    startAs: () => startAs({ introspectionClient: post }),
    accepted: (as) => `  introspection_endpoint: ${as.introspectionEndpoint}
  introspection_response: ${response}
  client_auth_method: client_secret_post
  client_secret: ${DEV_CLIENTS.introspection.secret}`,
    refused: (as) => `  introspection_endpoint: ${as.introspectionEndpoint}
  introspection_response: ${response}
  client_auth_method: client_secret_post
  client_secret: ${WRONG}`,
    secrets: [WRONG],
    tokenClientId: DEV_CLIENTS.client.id,
    mints: response === 'json',
  });
}

methodSuite({
  name: 'client_secret_post from client_secret_file with a trailing newline, json (real oidc-provider)',
  method: 'client_secret_post',
  startAs: () => startAs({ introspectionClient: post }),
  accepted: (as) => `  introspection_endpoint: ${as.introspectionEndpoint}
  introspection_response: json
  client_auth_method: client_secret_post
  client_secret_file: ${secretFile}`,
  refused: (as) => `  introspection_endpoint: ${as.introspectionEndpoint}
  introspection_response: json
  client_auth_method: client_secret_post
  client_secret_file: ${wrongFile}`,
  secrets: [WRONG],
  tokenClientId: DEV_CLIENTS.client.id,
  mints: true,
});

methodSuite({
  name: 'client_secret_basic (the default) from client_secret_file, json (real oidc-provider)',
  method: 'client_secret_basic',
  startAs: () => startAs({}),
  accepted: (as) => `  introspection_endpoint: ${as.introspectionEndpoint}
  introspection_response: json
  client_secret_file: ${secretFile}`,
  refused: (as) => `  introspection_endpoint: ${as.introspectionEndpoint}
  introspection_response: json
  client_secret_file: ${wrongFile}`,
  secrets: [WRONG],
  tokenClientId: DEV_CLIENTS.client.id,
  mints: true,
});
