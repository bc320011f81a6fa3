#!/usr/bin/env node
/*
 * A DPoP client (RFC 9449) for the demo (`npm start`), in plain Node 20 with
 * jose (`npm install jose` when run outside this repository):
 *
 *   1. makes a key pair (ES256) that never leaves this process;
 *   2. gets an access token bound to it: a client-credentials request to the
 *      authorization server with a DPoP proof (htm POST, htu the token
 *      endpoint); the token is opaque, its introspection carries cnf.jkt;
 *   3. calls the demo's DPoP route through the gateway, with a fresh proof for
 *      every request (htm, htu, iat, a new jti, and ath: the hash of the
 *      token; the server's nonce when it asks for one, RFC 9449 §8-9), and
 *      prints the API's answer;
 *   4. shows what a thief gets: the same token without a proof, or as Bearer,
 *      and a replayed proof, are refused.
 *
 * Usage: node examples/dpop-client.mjs [--as URL] [--gateway URL] [--path PATH] [--calls N]
 *   --as       the authorization server (default http://localhost:8443)
 *   --gateway  the gateway (default http://localhost:8080)
 *   --path     the DPoP route (default /dpop/items)
 *   --calls    how many calls with a fresh proof each (default 2)
 * Exits 0 when every call got 200 and every refusal was a 401.
 */
import { createHash, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';

const TIMEOUT_MS = 10_000;
const CLIENT = { id: 'test-client', secret: 'Password1' };

const USAGE = 'usage: node examples/dpop-client.mjs [--as URL] [--gateway URL] [--path PATH] [--calls N]';
let values;
try {
  ({ values } = parseArgs({
    options: {
      as: { type: 'string', default: 'http://localhost:8443' },
      gateway: { type: 'string', default: 'http://localhost:8080' },
      path: { type: 'string', default: '/dpop/items' },
      calls: { type: 'string', default: '2' },
    },
  }));
  for (const u of [values.as, values.gateway]) new URL(u);
} catch (err) {
  console.error(`${err.message}\n${USAGE}`);
  process.exit(2);
}
const calls = Number(values.calls);
if (!Number.isInteger(calls) || calls < 1 || calls > 100) {
  console.error('--calls must be a number from 1 to 100');
  process.exit(2);
}

/** The client's key: the private half signs proofs, the public half goes in each one. */
const { privateKey, publicKey } = await generateKeyPair('ES256');
const publicJwk = await exportJWK(publicKey);
const jkt = await calculateJwkThumbprint(publicJwk, 'sha256');

/**
 * A DPoP proof for one request: signed by the client's key, naming the
 * method and the URL (without query and fragment), once (jti), now (iat),
 * and, towards a resource, the token it comes with (ath).
 */
function dpopProof(method, url, { accessToken, nonce } = {}) {
  const u = new URL(url);
  u.search = '';
  u.hash = '';
  return new SignJWT({
    jti: randomUUID(),
    htm: method,
    htu: u.href,
    iat: Math.floor(Date.now() / 1000),
    ...(accessToken ? { ath: createHash('sha256').update(accessToken).digest('base64url') } : {}),
    ...(nonce ? { nonce } : {}),
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: publicJwk })
    .sign(privateKey);
}

/** A server asking for a nonce (RFC 9449 §8, §9) says so in WWW-Authenticate or the error; the nonce is in DPoP-Nonce. */
const wantsNonce = (res, body) => res.headers.has('dpop-nonce') && (/use_dpop_nonce/.test(res.headers.get('www-authenticate') ?? '') || body?.error === 'use_dpop_nonce');

async function readBody(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The latest nonce each server gave (by origin): later proofs carry it until it gives another. */
const nonces = new Map();

/** Sends a request with a fresh proof from `makeProof(nonce)`; once more with the server's new nonce if it asks for one. */
async function withProof(url, init, makeProof) {
  const origin = new URL(url).origin;
  for (let attempt = 0; ; attempt++) {
    const dpop = await makeProof(nonces.get(origin));
    const res = await fetch(url, { ...init, headers: { ...init.headers, dpop }, signal: AbortSignal.timeout(TIMEOUT_MS) });
    const body = await readBody(res);
    if (res.headers.has('dpop-nonce')) nonces.set(origin, res.headers.get('dpop-nonce'));
    if (attempt === 0 && wantsNonce(res, body)) {
      console.log(`                 -> ${res.status}, the server wants a nonce: again with it`);
      continue;
    }
    return { res, body, dpop };
  }
}

const line = (label, text) => console.log(`  ${label.padEnd(14)} ${text}`);
let failed = false;
const expect = (ok, what) => {
  if (!ok) {
    failed = true;
    console.log(`                 !! unexpected: ${what}`);
  }
};

console.log('DPoP client for the phantom-gateway demo');
line('key', `ES256, thumbprint (jkt) ${jkt}`);

/** A fetch failure (refused, timed out) as one line, without a stack trace. */
function unreachable(what, url, err) {
  console.error(`cannot reach ${what} at ${url} (${err.cause?.code ?? err.cause?.message ?? err.message}): is the demo running (npm start)?`);
  process.exit(1);
}

// Where the token endpoint is, and whether it takes DPoP proofs signed with ES256.
const discovery = await fetch(new URL('/.well-known/openid-configuration', values.as), { signal: AbortSignal.timeout(TIMEOUT_MS) }).catch((err) =>
  unreachable('the authorization server', values.as, err),
);
if (!discovery.ok) {
  console.error(`discovery at ${values.as} answered ${discovery.status}: is the demo running (npm start)?`);
  process.exit(1);
}
const meta = await discovery.json();
if (!(meta.dpop_signing_alg_values_supported ?? []).includes('ES256')) {
  console.error(`${values.as} does not accept ES256 DPoP proofs`);
  process.exit(1);
}

line('token', `POST ${meta.token_endpoint} (client credentials) with a DPoP proof`);
const tokenAnswer = await withProof(
  meta.token_endpoint,
  {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: CLIENT.id, client_secret: CLIENT.secret, scope: 'read' }).toString(),
  },
  (nonce) => dpopProof('POST', meta.token_endpoint, { nonce }),
).catch((err) => unreachable('the token endpoint', meta.token_endpoint, err));
if (tokenAnswer.res.status !== 200) {
  console.error(`the token endpoint answered ${tokenAnswer.res.status}: ${JSON.stringify(tokenAnswer.body)}`);
  process.exit(1);
}
const { access_token: token, token_type: tokenType, expires_in: expiresIn } = tokenAnswer.body;
line('', `-> 200, token_type ${tokenType}, expires in ${expiresIn} s: an opaque token bound to the key`);
expect(tokenType === 'DPoP', `token_type ${tokenType}`);

const url = new URL(values.path, values.gateway).href;
let lastProof;
for (let i = 1; i <= calls; i++) {
  line(`call ${i}`, `GET ${url}, Authorization: DPoP <token>, a fresh proof`);
  const { res, body, dpop } = await withProof(url, { headers: { authorization: `DPoP ${token}` } }, (nonce) => dpopProof('GET', url, { accessToken: token, nonce })).catch((err) =>
    unreachable('the gateway', values.gateway, err),
  );
  lastProof = dpop;
  line('', `-> ${res.status} ${typeof body === 'object' ? body.message : body}`);
  expect(res.status === 200, `status ${res.status}: ${JSON.stringify(body)}`);
  if (i === 1 && res.status === 200 && typeof body === 'object') {
    console.log('  The API received (cnf.jkt is the key above; X-DPoP-Verified is the gateway saying it checked the proof):');
    console.log(JSON.stringify({ path: body.path, dpop: body.dpop, cnf: body.tokenPayload?.cnf, scope: body.tokenPayload?.scope }, null, 2).replace(/^/gm, '    '));
  }
}

// What someone who stole the token (but not the key) gets.
const refusals = [
  ['no proof', { authorization: `DPoP ${token}` }],
  ['as Bearer', { authorization: `Bearer ${token}` }],
  ['a replayed proof', { authorization: `DPoP ${token}`, dpop: lastProof }],
];
for (const [what, headers] of refusals) {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(TIMEOUT_MS) }).catch((err) => unreachable('the gateway', values.gateway, err));
  await res.body?.cancel();
  line('stolen token', `${what}: -> ${res.status} ${res.headers.get('www-authenticate') ?? ''}`);
  expect(res.status === 401, `${what} got ${res.status}`);
}

process.exitCode = failed ? 1 : 0;
