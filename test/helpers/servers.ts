/*
 * Real HTTP peers on loopback ports for the tests. The introspection endpoint
 * here is *scripted* (it answers what each test tells it to, so faults can be
 * injected); the end-to-end tests against a real authorization server live
 * with the development server.
 */
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPair, SignJWT, type CryptoKey } from 'jose';

export interface Started {
  server: Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function listen(server: Server): Promise<Started> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** What a scripted introspection endpoint answers for one token. */
export interface ScriptedAnswer {
  status: number;
  body?: string;
  /** An array sends the header once per value (several lines). */
  headers?: Record<string, string | string[]>;
  /** Milliseconds to wait before answering. */
  delayMs?: number;
}

export interface IntrospectionCall {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  token: string | null;
}

export interface ScriptedIntrospection extends Started {
  /** Every call received, in order. */
  calls: IntrospectionCall[];
  /** Answers by token; `fallback` for tokens not listed. */
  answers: Map<string, ScriptedAnswer | ((call: IntrospectionCall) => ScriptedAnswer)>;
  fallback: ScriptedAnswer;
  /** Issues a real signed JWT for `token` and makes the endpoint answer it (200, application/jwt). */
  activate(token: string, claims?: Record<string, unknown>, opts?: { expiresIn?: number; headers?: Record<string, string | string[]>; delayMs?: number }): Promise<string>;
  callsFor(token: string): number;
}

let signingKey: Promise<CryptoKey> | undefined;

/** A real ES256-signed RFC 9068 access token (the gateway does not verify; the API does). */
export async function signJwt(claims: Record<string, unknown>, expiresIn = 300): Promise<string> {
  signingKey ??= generateKeyPair('ES256').then((k) => k.privateKey);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ client_id: 'test-client', scope: 'read', sub: 'user-1', ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' })
    .setIssuer('https://issuer.test')
    .setAudience('api.example.com')
    .setIssuedAt(now)
    .setExpirationTime(now + expiresIn)
    .setJti(createHash('sha256').update(String(Math.random())).digest('hex').slice(0, 16))
    .sign(await signingKey);
}

/**
 * A compact JWS around exactly `payload` (any text, even invalid claims),
 * with a dummy signature: the gateway does not verify JWTs, the API does.
 */
export function jwtWithPayload(payload: string): string {
  const b64u = (s: string) => Buffer.from(s).toString('base64url');
  return `${b64u('{"alg":"ES256","typ":"at+jwt"}')}.${b64u(payload)}.${b64u('not-a-real-signature')}`;
}

/** A scripted RFC 7662 endpoint (scripted so tests can inject faults). */
export async function startScriptedIntrospection(): Promise<ScriptedIntrospection> {
  const calls: IntrospectionCall[] = [];
  const answers: ScriptedIntrospection['answers'] = new Map();
  const self = {
    calls,
    answers,
    fallback: { status: 204 } as ScriptedAnswer,
  } as ScriptedIntrospection;
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString();
    const call: IntrospectionCall = { method: req.method!, url: req.url!, headers: req.headers, body, token: new URLSearchParams(body).get('token') };
    calls.push(call);
    const a = (call.token !== null ? answers.get(call.token) : undefined) ?? self.fallback;
    const answer = typeof a === 'function' ? a(call) : a;
    if (answer.delayMs) await new Promise((r) => setTimeout(r, answer.delayMs));
    if (res.destroyed) return;
    res.writeHead(answer.status, answer.headers ?? {});
    res.end(answer.body);
  });
  Object.assign(self, await listen(server));
  self.activate = async (token, claims = {}, opts = {}) => {
    const jwt = await signJwt(claims, opts.expiresIn ?? 300);
    answers.set(token, {
      status: 200,
      body: jwt,
      headers: { 'content-type': 'application/jwt', ...(opts.headers ?? {}) },
      ...(opts.delayMs ? { delayMs: opts.delayMs } : {}),
    });
    return jwt;
  };
  self.callsFor = (token) => calls.filter((c) => c.token === token).length;
  return self;
}

export interface EchoRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  bodyBytes: number;
  bodySha256: string;
}

export interface EchoUpstream extends Started {
  /** Every request that reached the upstream, in order. */
  received: EchoRequest[];
}

/**
 * An upstream that answers every request with a JSON description of what it
 * received. Paths starting with `/slow` wait before answering; `/big?bytes=N`
 * streams N bytes back.
 */
export async function startEchoUpstream(): Promise<EchoUpstream> {
  const received: EchoRequest[] = [];
  const server = createServer(async (req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      for await (const c of req) {
        bytes += (c as Buffer).length;
        hash.update(c as Buffer);
      }
    } catch {
      return; // the gateway aborted the request mid-body: nothing is recorded
    }
    const seen: EchoRequest = {
      method: req.method!,
      url: req.url!,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      bodyBytes: bytes,
      bodySha256: hash.digest('hex'),
    };
    received.push(seen);
    const url = new URL(req.url!, 'http://x');
    if (url.pathname.includes('/slow')) await new Promise((r) => setTimeout(r, Number(url.searchParams.get('ms') ?? 2000)));
    if (res.destroyed) return;
    if (url.pathname.includes('/big')) {
      const total = Number(url.searchParams.get('bytes') ?? 1024 * 1024);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let sent = 0;
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await once(res, 'drain');
        sent += n;
      }
      res.end();
      return;
    }
    const body = JSON.stringify(seen);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-upstream': 'echo',
      // hop-by-hop fields the gateway must not relay to its client
      'keep-alive': 'timeout=5',
      'x-hop': 'secret',
      connection: 'keep-alive, x-hop',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  return Object.assign(await listen(server), { received });
}
