/*
 * The benchmark's authorization server: a separate process so its CPU is not
 * charged to the gateway. Scripted (fixed latency, canned JWTs) because the
 * benchmark measures the gateway, not an authorization server.
 *
 *   valid-*, cold-*, mem-*  -> 200 application/jwt (818 bytes), after LATENCY ms;
 *                              with Accept: application/json, RFC 7662 JSON
 *                              with the same claims (the json dialect)
 *   dpop-<jkt>[-*]          -> the same, DPoP-bound: with cnf: {jkt: <jkt>}
 *                              (<jkt> an RFC 7638 thumbprint, 43 base64url characters)
 *   anything else           -> 204 (inactive), after LATENCY ms; {"active":false} for JSON
 *   GET /stats              -> {"calls": n, "connections": n}
 *
 * Usage: node introspection-server.js <port> <latencyMs>
 */
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';

const port = Number(process.argv[2] ?? 0);
const latency = Number(process.argv[3] ?? 5);
let calls = 0;
let connections = 0;

const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'at+jwt', kid: 'bench-key-1' })).toString('base64url');
const ACTIVE = /^(valid|cold|mem|dpop)-/;
const DPOP_BOUND = /^dpop-([A-Za-z0-9_-]{43})(?:-|$)/;

function claimsFor(token: string): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  const jkt = DPOP_BOUND.exec(token)?.[1];
  return {
    iss: 'https://login.example.com/oauth/v2/oauth-anonymous',
    sub: createHash('sha256').update(token).digest('hex'),
    aud: 'api.example.com',
    client_id: 'bench-client-with-a-realistic-name',
    scope: 'read write openid profile email orders:read orders:write customers:read',
    purpose: 'access_token',
    iat: now,
    nbf: now,
    exp: now + 3600,
    jti: createHash('sha256').update(`j${token}`).digest('base64url'),
    preferred_username: 'benchmark.user@example.com',
    tenant: 'example-tenant-0001',
    ...(jkt !== undefined ? { cnf: { jkt } } : {}),
  };
}

function jwtFor(token: string): string {
  const payload = Buffer.from(JSON.stringify(claimsFor(token))).toString('base64url');
  const sig = createHash('sha512').update(token).digest('base64url'); // the size of an ES256 signature
  return `${header}.${payload}.${sig}`;
}

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ calls, connections }));
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    calls++;
    const token = new URLSearchParams(Buffer.concat(chunks).toString()).get('token') ?? '';
    const json = /^application\/json/.test(req.headers.accept ?? '');
    setTimeout(() => {
      if (json) {
        const active = ACTIVE.test(token);
        res.writeHead(200, { 'content-type': 'application/json', ...(active ? { 'cache-control': 'max-age=3600' } : {}) });
        res.end(JSON.stringify(active ? { active: true, token_type: 'Bearer', ...claimsFor(token) } : { active: false }));
      } else if (ACTIVE.test(token)) {
        res.writeHead(200, { 'content-type': 'application/jwt', 'cache-control': 'max-age=3600' });
        res.end(jwtFor(token));
      } else {
        res.writeHead(204);
        res.end();
      }
    }, latency);
  });
});
server.on('connection', () => connections++);
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${(server.address() as { port: number }).port}\n`);
});
