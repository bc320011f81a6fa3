/*
 * A DPoP client for the benchmarks: keys that sign proofs (RFC 9449 §4.2)
 * ahead of a timed round, and a load generator that sends pre-built
 * requests over N keep-alive connections and counts every answer's status.
 *
 * wrk cannot make a fresh proof per request, and the gateway's replay cache
 * refuses a proof sent twice: so each request of a DPoP round carries its
 * own proof (unique jti, iat = when it was signed), signed before the round
 * starts so that signing is not charged to the round. The Bearer round uses
 * the same generator with one fixed request, so the two compare.
 *
 * The generator speaks HTTP/1.1 on raw sockets (one request in flight per
 * connection, no pipelining): cheaper per request than an HTTP client
 * library, which matters on a 2-core machine where it shares the CPU with
 * the gateway. It reads the status line, Content-Length or chunked bodies,
 * and reconnects when the server closes. A non-2xx answer is counted, never
 * hidden: a round whose proofs were refused would be measuring the 401 path.
 */
import { createPrivateKey, generateKeyPairSync, hash, randomBytes, sign, constants, type KeyObject } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { cpuTicks, HZ } from './processes.js';

/** The proof algorithms the benchmark signs with. */
export type ProofAlg = 'ES256' | 'ES384' | 'EdDSA' | 'PS256' | 'RS256';

/** A client's DPoP key: its public JWK, its RFC 7638 thumbprint (the token's `cnf.jkt`), and proofs signed with it. */
export class ProofKey {
  readonly alg: ProofAlg;
  readonly jwk: JWK;
  readonly jkt: string;
  /** A label for tables: the alg, and the modulus for RSA. */
  readonly label: string;
  readonly #key: KeyObject;
  readonly #header: string;
  readonly #jtiPrefix = randomBytes(9).toString('base64url');
  #count = 0;

  private constructor(alg: ProofAlg, key: KeyObject, jwk: JWK, jkt: string, label: string) {
    this.alg = alg;
    this.#key = key;
    this.jwk = jwk;
    this.jkt = jkt;
    this.label = label;
    this.#header = b64u(JSON.stringify({ typ: 'dpop+jwt', alg, jwk }));
  }

  /** A fresh key pair for `alg` (`modulusLength` for RSA, default 2048). */
  static async generate(alg: ProofAlg, modulusLength = 2048): Promise<ProofKey> {
    const pair =
      alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : alg === 'ES384'
          ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
          : alg === 'EdDSA'
            ? generateKeyPairSync('ed25519')
            : generateKeyPairSync('rsa', { modulusLength });
    const full = pair.publicKey.export({ format: 'jwk' }) as JWK;
    // Only the members RFC 7638 names: what a client library puts in a proof.
    const jwk: JWK = full.kty === 'EC' ? { kty: 'EC', crv: full.crv!, x: full.x!, y: full.y! } : full.kty === 'OKP' ? { kty: 'OKP', crv: full.crv!, x: full.x! } : { kty: 'RSA', e: full.e!, n: full.n! };
    const jkt = await calculateJwkThumbprint(jwk, 'sha256');
    const label = alg === 'RS256' || alg === 'PS256' ? `${alg} (RSA ${modulusLength})` : alg === 'EdDSA' ? 'EdDSA (Ed25519)' : alg;
    return new ProofKey(alg, createPrivateKey(pair.privateKey.export({ format: 'pem', type: 'pkcs8' })), jwk, jkt, label);
  }

  /**
   * A proof for one request: `htm` = `method`, `htu` = `url`, `ath` = the
   * SHA-256 of `accessToken`, a jti never used before by this key, `iat` =
   * `nowMs` in seconds.
   */
  proof(method: string, url: string, accessToken: string, nowMs = Date.now()): string {
    const payload = b64u(
      JSON.stringify({ jti: `${this.#jtiPrefix}.${this.#count++}`, htm: method, htu: url, iat: Math.floor(nowMs / 1000), ath: hash('sha256', accessToken, 'base64url') }),
    );
    const input = `${this.#header}.${payload}`;
    return `${input}.${signJws(this.alg, this.#key, input)}`;
  }
}

function b64u(s: string): string {
  return Buffer.from(s).toString('base64url');
}

/** The JWS signature (RFC 7518 §3) of `input`, base64url. */
function signJws(alg: ProofAlg, key: KeyObject, input: string): string {
  const data = Buffer.from(input);
  switch (alg) {
    case 'ES256':
      return sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    case 'ES384':
      return sign('sha384', data, { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    case 'EdDSA':
      return sign(null, data, key).toString('base64url');
    case 'PS256':
      return sign('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }).toString('base64url');
    case 'RS256':
      return sign('sha256', data, key).toString('base64url');
  }
}

/** One HTTP/1.1 request as bytes: `headers` in order, then an empty line (no body). */
export function requestBytes(method: string, path: string, headers: ReadonlyArray<readonly [string, string]>): Buffer {
  let text = `${method} ${path} HTTP/1.1\r\n`;
  for (const [k, v] of headers) text += `${k}: ${v}\r\n`;
  return Buffer.from(`${text}\r\n`, 'latin1');
}

export interface LoadOptions {
  port: number;
  host?: string;
  connections: number;
  /** Stop starting requests after this long. */
  seconds: number;
  /** The i-th request's bytes, or undefined when there are no more (the round ends early). */
  next: (i: number) => Buffer | undefined;
  /** Processes whose CPU is charged per request (the gateway). */
  pids?: readonly number[];
  /** Give up on an answer after this long (counted as an error, the connection replaced). Default 10 s. */
  answerTimeoutMs?: number;
}

export interface LoadResult {
  /** Answers received (any status). */
  requests: number;
  /** Wall time from the first request to the last answer. */
  seconds: number;
  rps: number;
  /** Latency percentiles of the answers, in ms. */
  p50: number;
  p99: number;
  /** Answers by status code. */
  statuses: Record<number, number>;
  /** Answers that were not 200. */
  non200: number;
  /** Connections closed or timed out with a request in flight. */
  socketErrors: number;
  /** Requests `next` had none left for: the round ended before `seconds`. */
  exhausted: boolean;
  /** CPU of `pids` (and their children) per answer, in µs. */
  cpuUsPerReq: number | undefined;
  /** This process's CPU per answer, in µs: what the generator itself costs the machine. */
  generatorCpuUsPerReq: number;
}

/** What a response parser needs to know of one answer so far. */
interface Pending {
  sentAt: bigint;
  buf: Buffer;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_HEADER_BYTES = 64 * 1024;

/**
 * Parses one complete HTTP/1.1 response at the start of `buf`: its status
 * and length in bytes, or undefined when more bytes are needed. Throws on a
 * response it cannot frame.
 */
export function parseResponse(buf: Buffer): { status: number; length: number; close: boolean } | undefined {
  const end = buf.indexOf(HEADER_END);
  if (end < 0) {
    if (buf.length > MAX_HEADER_BYTES) throw new Error('response header too large');
    return undefined;
  }
  // One lower-case string of the head, searched for the three fields that frame a response.
  const head = buf.toString('latin1', 0, end).toLowerCase();
  const m = /^http\/1\.[01] (\d{3})/.exec(head);
  if (!m) throw new Error(`not an HTTP/1.1 response: ${JSON.stringify(head.slice(0, 40))}`);
  const status = Number(m[1]);
  const field = (name: string): string | undefined => {
    const at = head.indexOf(`\r\n${name}:`);
    if (at < 0) return undefined;
    const from = at + name.length + 3;
    const to = head.indexOf('\r\n', from);
    return head.slice(from, to < 0 ? head.length : to).trim();
  };
  const cl = field('content-length');
  const contentLength = cl === undefined ? undefined : Number(cl);
  const chunked = field('transfer-encoding')?.split(',').some((v) => v.trim() === 'chunked') ?? false;
  const close = field('connection')?.split(',').some((v) => v.trim() === 'close') ?? false;
  const bodyStart = end + 4;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return { status, length: bodyStart, close };
  if (chunked) {
    let at = bodyStart;
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at, 'latin1');
      if (lineEnd < 0) return undefined;
      const size = parseInt(buf.toString('latin1', at, lineEnd).split(';')[0]!, 16);
      if (!Number.isFinite(size) || size < 0) throw new Error('bad chunk size');
      if (size === 0) {
        // Trailers (none expected) end with an empty line.
        const trailerEnd = buf.indexOf('\r\n', lineEnd + 2, 'latin1');
        if (trailerEnd < 0) return undefined;
        if (trailerEnd === lineEnd + 2) return { status, length: trailerEnd + 2, close };
        const blank = buf.indexOf(HEADER_END, lineEnd, 'latin1');
        return blank < 0 ? undefined : { status, length: blank + 4, close };
      }
      at = lineEnd + 2 + size + 2;
      if (at > buf.length) return undefined;
    }
  }
  if (contentLength === undefined || !Number.isSafeInteger(contentLength) || contentLength < 0) throw new Error('response without Content-Length or chunked framing');
  return buf.length >= bodyStart + contentLength ? { status, length: bodyStart + contentLength, close } : undefined;
}

/**
 * Sends `next(0)`, `next(1)`, ... over `connections` keep-alive connections,
 * one request in flight on each, until `seconds` have passed or `next` has
 * none left; resolves once every request sent has its answer (or failed).
 */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const host = opts.host ?? '127.0.0.1';
  const timeoutMs = opts.answerTimeoutMs ?? 10_000;
  const latenciesUs: number[] = [];
  const statuses: Record<number, number> = {};
  let index = 0;
  let socketErrors = 0;
  let exhausted = false;
  const pids = opts.pids ?? [];
  const ticksBefore = pids.reduce((a, p) => a + cpuTicks(p), 0);
  const ownBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(Math.round(opts.seconds * 1e9));
  let lastAnswer = started;

  const takeNext = (): Buffer | undefined => {
    if (exhausted || process.hrtime.bigint() >= deadline) return undefined;
    const b = opts.next(index);
    if (b === undefined) {
      exhausted = true;
      return undefined;
    }
    index++;
    return b;
  };

  const connection = (): Promise<void> =>
    new Promise<void>((resolve) => {
      let socket: Socket;
      let pending: Pending | undefined;
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve();
      };
      const send = (s: Socket) => {
        const req = takeNext();
        if (req === undefined) return finish();
        pending = { sentAt: process.hrtime.bigint(), buf: Buffer.alloc(0) };
        clearTimeout(timer);
        timer = setTimeout(() => {
          socketErrors++;
          pending = undefined;
          s.destroy();
          open();
        }, timeoutMs);
        s.write(req);
      };
      const open = () => {
        if (done) return;
        const s = connect(opts.port, host);
        socket = s;
        s.setNoDelay(true);
        s.on('connect', () => send(s));
        s.on('data', (chunk: Buffer) => {
          if (pending === undefined) return; // bytes after a timeout: this socket is being replaced
          pending.buf = pending.buf.length === 0 ? chunk : Buffer.concat([pending.buf, chunk]);
          let parsed: ReturnType<typeof parseResponse>;
          try {
            parsed = parseResponse(pending.buf);
          } catch {
            socketErrors++;
            pending = undefined;
            s.destroy();
            return open();
          }
          if (parsed === undefined) return;
          const now = process.hrtime.bigint();
          lastAnswer = now;
          latenciesUs.push(Number(now - pending.sentAt) / 1000);
          statuses[parsed.status] = (statuses[parsed.status] ?? 0) + 1;
          pending = undefined;
          if (parsed.close) {
            s.destroy();
            return open();
          }
          send(s);
        });
        s.on('error', () => {
          // 'close' follows
        });
        s.on('close', () => {
          if (socket !== s || done) return;
          if (pending !== undefined) {
            socketErrors++;
            pending = undefined;
            clearTimeout(timer);
            // A refused connection would otherwise spin: give up after the deadline.
            if (process.hrtime.bigint() >= deadline) return finish();
            setTimeout(open, 10);
          }
        });
      };
      open();
    });

  await Promise.all(Array.from({ length: opts.connections }, connection));
  const ticksAfter = pids.reduce((a, p) => a + cpuTicks(p), 0);
  const own = process.cpuUsage(ownBefore);
  const seconds = Number(lastAnswer - started) / 1e9;
  const requests = latenciesUs.length;
  latenciesUs.sort((a, b) => a - b);
  const pct = (p: number) => (requests === 0 ? NaN : latenciesUs[Math.min(requests - 1, Math.floor((p / 100) * requests))]! / 1000);
  return {
    requests,
    seconds,
    rps: seconds > 0 ? requests / seconds : 0,
    p50: pct(50),
    p99: pct(99),
    statuses,
    non200: requests - (statuses[200] ?? 0),
    socketErrors,
    exhausted,
    cpuUsPerReq: pids.length > 0 && requests > 0 ? (((ticksAfter - ticksBefore) / HZ) * 1e6) / requests : undefined,
    generatorCpuUsPerReq: requests > 0 ? (own.user + own.system) / requests : NaN,
  };
}

/**
 * Throws unless every answer of `r` was 200 and no connection failed: a
 * round measured on refusals (a proof the gateway did not accept, a token
 * not active) would report the cost of a 401, not of a DPoP cache hit.
 */
export function assertAllOk(what: string, r: LoadResult): void {
  if (r.non200 > 0 || r.socketErrors > 0 || r.requests === 0) {
    throw new Error(`${what}: ${r.requests} answers, statuses ${JSON.stringify(r.statuses)}, ${r.socketErrors} connection errors: not a cache hit run, the numbers would be meaningless`);
  }
}

/**
 * The DPoP benchmark's gateway configuration: the same upstream behind
 * /bearer (scheme: Bearer) and /dpop (scheme: DPoP, forward: dpop, the
 * default algorithms), both cached an hour; no access log. The replay memory
 * is sized as the README says to size it: the DPoP rate (a few thousand per
 * second here) times the window (max_age_seconds + skew), with room; past it
 * a proof gets 503, which the bench would report as a failed run.
 */
export function dpopBenchGatewayYaml(o: { port: number; introspectionEndpoint: string; upstream: string; maxAgeSeconds: number }): string {
  return `listen: { host: 127.0.0.1, port: ${o.port} }
phantom_token:
  introspection_endpoint: ${o.introspectionEndpoint}
  client_id: bench
  client_secret: bench-secret
  scope: read
  token_cache_seconds: 3600
routes:
  - path: /bearer
    upstream: ${o.upstream}
  - path: /dpop
    upstream: ${o.upstream}
    phantom_token:
      scheme: DPoP
      dpop: { max_age_seconds: ${o.maxAgeSeconds}, forward: dpop }
cache: { max_entries: 20000, max_dpop_proofs: 2000000 }
log: { access_log: false }
`;
}
