/*
 * Review of issue 10's foundation: the NGINX decision cache key
 * (src/forward-auth/nginx-conf.ts requirementsKey) promises that "a
 * configuration change to any of them gives new keys, so no decision cached
 * before it is used after". A decision of a minting route carries a JWT the
 * gateway signed; the key names nothing of the minting (issuer, signing key,
 * copied claims, lifetime), so after such a change NGINX keeps serving JWTs
 * with the old `iss`/claims, signed by a key the gateway may no longer publish.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { nginxConf } from '../../src/forward-auth/nginx-conf.js';

const yaml = (minting: string) => `
forward_auth:
  listen: { host: 127.0.0.1, port: 9001 }
phantom_token:
  introspection_endpoint: https://as.example/introspect
  client_id: gateway
  client_secret: s
  introspection_response: json
minting:
${minting}
routes:
  - path: /api
    upstream: http://127.0.0.1:9
`;

const cacheKeys = (minting: string) =>
  nginxConf(parseConfig(yaml(minting), { file: 'gateway.yaml', env: {} }), { listen: { host: '127.0.0.1', port: 8080 } })
    .split('\n')
    .filter((l) => l.includes('proxy_cache_key'))
    .map((l) => l.trim());

describe('review i10: the NGINX decision cache key ignores the minting options', () => {
  test('changing minting.issuer gives new cache keys', () => {
    const before = cacheKeys('  issuer: https://gateway-old.example\n');
    const after = cacheKeys('  issuer: https://gateway-new.example\n');
    assert.ok(before.length > 0, 'no proxy_cache_key in the generated configuration');
    assert.notDeepEqual(after, before, 'NGINX would keep serving JWTs minted with the old iss');
  });

  test('changing minting.copy_claims gives new cache keys', () => {
    const before = cacheKeys('  issuer: https://gateway.example\n');
    const after = cacheKeys('  issuer: https://gateway.example\n  copy_claims: [acr]\n');
    assert.notDeepEqual(after, before, 'NGINX would keep serving JWTs minted without the newly copied claims');
  });
});
