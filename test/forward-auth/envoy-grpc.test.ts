/*
 * Envoy's ext_authz over gRPC: a @grpc/grpc-js client sends Envoy-shaped
 * CheckRequests to the service, which decides against a scripted
 * introspection endpoint. The wire format is checked against Envoy's field
 * numbers with a hand-written protobuf encoder and decoder, so a wrong number
 * in proto/ cannot pass by being wrong the same way on both ends.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { parse as parseYaml } from 'yaml';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { parseConfig, ConfigError } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { createLogger } from '../../src/observability/logger.js';
import { EnvoyAuthService, EXTERNAL_AUTH_PROTO, PROTO_LOADER_OPTIONS, grpcCodeFor } from '../../src/forward-auth/envoy-grpc.js';
import { basicConfig } from '../helpers/gateway.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { ensureBuilt, freePort, scratchDir, startCli } from '../helpers/cli.js';
import { envoyGrpcDoor } from './envoy-grpc.door.js';
import { X509Certificate } from 'node:crypto';
import { makeTestPki } from '../client-auth/certs.js';
import { dpopClient, dpopProof, x5tS256 } from '../frontdoors/dpop.js';

// ---- a hand-written protobuf wire encoder/decoder (independent of proto/) ----

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
/** A length-delimited field (wire type 2): a string, bytes or a nested message. */
function ld(no: number, ...parts: (Buffer | string)[]): Buffer {
  const payload = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
  return Buffer.concat([varint((no << 3) | 2), varint(payload.length), payload]);
}

interface WireField {
  no: number;
  wire: number;
  value: Buffer | number;
}

function decodeWire(buf: Buffer): WireField[] {
  const out: WireField[] = [];
  let i = 0;
  const readVarint = (): number => {
    let n = 0;
    let mul = 1;
    for (;;) {
      const b = buf[i++]!;
      n += (b & 127) * mul;
      if (b < 128) return n;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const tag = readVarint();
    const no = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0) out.push({ no, wire, value: readVarint() });
    else if (wire === 2) {
      const len = readVarint();
      out.push({ no, wire, value: buf.subarray(i, i + len) });
      i += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

/** Every value at a path of field numbers (repeated fields give several). */
function at(buf: Buffer, ...path: number[]): (Buffer | number)[] {
  let level: (Buffer | number)[] = [buf];
  for (const no of path) {
    level = level.flatMap((b) => (Buffer.isBuffer(b) ? decodeWire(b).filter((f) => f.no === no).map((f) => f.value) : []));
  }
  return level;
}
const str = (v: Buffer | number | undefined) => (Buffer.isBuffer(v) ? v.toString('utf8') : v);

/** A client that sends and receives raw bytes on Envoy's method path. */
const RawClient = grpc.makeGenericClientConstructor(
  {
    Check: {
      path: '/envoy.service.auth.v3.Authorization/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    },
  },
  'RawAuthorization',
);

// ---- the typed client, from the project's own proto/ ----

const clientPackage = protoLoader.loadSync(EXTERNAL_AUTH_PROTO, { ...PROTO_LOADER_OPTIONS, defaults: true });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const AuthorizationClient = (grpc.loadPackageDefinition(clientPackage) as any).envoy.service.auth.v3.Authorization as grpc.ServiceClientConstructor;

interface Header {
  header: { key: string; value: string };
  append: { value: boolean } | null;
  append_action: number;
}
interface Response {
  status: { code: number };
  ok_response?: { headers: Header[]; headers_to_remove: string[] } | null;
  denied_response?: { status: { code: number }; headers: Header[]; body: string } | null;
}

/** A CheckRequest as Envoy's HTTP filter builds it (headers map, pseudo-headers included). */
function envoyRequest(opts: { method?: string; path?: string; headers?: Record<string, string>; source?: string } = {}) {
  const method = opts.method ?? 'GET';
  const path = opts.path ?? '/api/items';
  return {
    attributes: {
      source: { address: { socket_address: { address: opts.source ?? '10.0.0.7', port_value: 51234 } } },
      destination: { address: { socket_address: { address: '10.0.0.1', port_value: 10000 } } },
      request: {
        http: {
          id: '1234567890',
          method,
          path,
          host: 'api.example.com',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          headers: { ':authority': 'api.example.com', ':method': method, ':path': path, ':scheme': 'http', 'user-agent': 'curl/8', 'x-request-id': 'r-1', ...opts.headers },
        },
      },
    },
  };
}

interface Harness {
  as: ScriptedIntrospection;
  guards: Guards;
  service: EnvoyAuthService;
  client: grpc.Client;
  raw: grpc.Client;
  lines: string[];
  check(req: unknown, deadlineMs?: number): Promise<Response>;
  checkRaw(bytes: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

async function startHarness(extraYaml = '', opts: { phantom?: string } = {}): Promise<Harness> {
  const as = await startScriptedIntrospection();
  let yaml = basicConfig(as.url, 'http://127.0.0.1:9', `  - path: /admin
    upstream: http://127.0.0.1:9
    phantom_token:
      scope: admin
${extraYaml}`);
  if (opts.phantom) yaml = yaml.replace('  scope: read\n', `  scope: read\n${opts.phantom}`);
  const config = parseConfig(yaml, { file: 'test.yaml', env: {} });
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(l);
      cb();
    },
  });
  const logger = createLogger('info', sink);
  const guards = createGuards(config, { logger });
  const service = new EnvoyAuthService(config, { logger, guards });
  const { port } = await service.listen(0, '127.0.0.1');
  const client = new AuthorizationClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const raw = new RawClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    as,
    guards,
    service,
    client,
    raw,
    lines,
    check: (req, deadlineMs = 5000) =>
      new Promise((resolve, reject) => {
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        (client as any).Check(req, { deadline: Date.now() + deadlineMs }, (err: Error | null, r: Response) => (err ? reject(err) : resolve(r)));
      }),
    checkRaw: (bytes) =>
      new Promise((resolve, reject) => {
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        (raw as any).Check(bytes, { deadline: Date.now() + 5000 }, (err: Error | null, r: Buffer) => (err ? reject(err) : resolve(r)));
      }),
    close: async () => {
      client.close();
      raw.close();
      await service.close();
      await guards.close();
      await as.close();
    },
  };
}

function header(headers: Header[], key: string): Header | undefined {
  const all = headers.filter((h) => h.header.key === key);
  assert.ok(all.length <= 1, `one ${key} header at most`);
  return all[0];
}

function assertDenied(r: Response, httpStatus: number, grpcCode: number, bodyCode: string): Header[] {
  assert.equal(r.status.code, grpcCode, 'CheckResponse.status.code');
  assert.equal(r.ok_response ?? null, null);
  assert.ok(r.denied_response, 'denied_response');
  assert.equal(r.denied_response.status.code, httpStatus);
  assert.equal((JSON.parse(r.denied_response.body) as { code: string }).code, bodyCode);
  const headers = r.denied_response.headers;
  assert.equal(header(headers, 'content-type')?.header.value, 'application/json');
  assert.equal(header(headers, 'cache-control')?.header.value, 'no-store');
  // Envoy frames its local reply itself.
  assert.equal(header(headers, 'content-length'), undefined);
  for (const h of headers) {
    assert.deepEqual(h.append, { value: false }, `${h.header.key}: append false`);
    assert.equal(h.append_action, 2, `${h.header.key}: OVERWRITE_IF_EXISTS_OR_ADD`);
  }
  return headers;
}

describe('Envoy ext_authz over gRPC', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());
  beforeEach(() => {
    h.as.calls.length = 0;
  });

  test('an active token: OK, with Authorization overwritten by the JWT (append false, OVERWRITE_IF_EXISTS_OR_ADD); a second check is a cache hit', async () => {
    const jwt = await h.as.activate('tok-allow', { scope: 'read' });
    const r = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-allow' } }));
    assert.equal(r.status.code, 0);
    assert.equal(r.denied_response ?? null, null);
    assert.deepEqual(r.ok_response!.headers, [{ header: { key: 'authorization', value: `Bearer ${jwt}`, raw_value: Buffer.alloc(0) }, append: { value: false }, append_action: 2, keep_empty_value: false }]);
    const again = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-allow' } }));
    assert.equal(again.ok_response!.headers[0]!.header.value, `Bearer ${jwt}`);
    assert.equal(h.as.callsFor('tok-allow'), 1);
    assert.equal(h.as.calls[0]!.headers.accept, 'application/jwt');
  });

  test('no token: 401 UNAUTHENTICATED with WWW-Authenticate: Bearer and the JSON body, no introspection', async () => {
    const r = await h.check(envoyRequest());
    const headers = assertDenied(r, 401, 16, 'unauthorized');
    assert.equal(header(headers, 'www-authenticate')?.header.value, 'Bearer');
    assert.deepEqual(JSON.parse(r.denied_response!.body), { code: 'unauthorized', message: 'Access token required' });
    assert.equal(h.as.calls.length, 0);
  });

  test('an inactive token: 401 with error="invalid_token"', async () => {
    const r = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-dead' } }));
    const headers = assertDenied(r, 401, 16, 'unauthorized');
    assert.equal(header(headers, 'www-authenticate')?.header.value, 'Bearer error="invalid_token"');
    assert.equal(h.as.callsFor('tok-dead'), 1);
  });

  test('a token without the route\'s scope: 403 PERMISSION_DENIED with insufficient_scope', async () => {
    await h.as.activate('tok-noscope', { scope: 'write' });
    const r = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-noscope' } }));
    const headers = assertDenied(r, 403, 7, 'forbidden');
    assert.equal(header(headers, 'www-authenticate')?.header.value, 'Bearer error="insufficient_scope", scope="read"');
  });

  test('one token, two routes: allowed on /api (scope read), refused 403 on /admin (scope admin), one introspection', async () => {
    const jwt = await h.as.activate('tok-read', { scope: 'read' });
    const ok = await h.check(envoyRequest({ path: '/api/orders?page=2', headers: { authorization: 'Bearer tok-read' } }));
    assert.equal(ok.status.code, 0);
    assert.equal(ok.ok_response!.headers[0]!.header.value, `Bearer ${jwt}`);
    const admin = await h.check(envoyRequest({ path: '/admin/users', headers: { authorization: 'Bearer tok-read' } }));
    const headers = assertDenied(admin, 403, 7, 'forbidden');
    assert.equal(header(headers, 'www-authenticate')?.header.value, 'Bearer error="insufficient_scope", scope="admin"');
    assert.equal(h.as.callsFor('tok-read'), 1);
  });

  test('two Authorization headers joined by Envoy ("Bearer a,Bearer b"): refused as two credentials, 401 invalid_request, no introspection', async () => {
    await h.as.activate('tok-a', { scope: 'read' });
    for (const joined of ['Bearer tok-a,Bearer tok-b', 'Bearer tok-a, Bearer tok-a', 'Bearer tok-a,']) {
      const r = await h.check(envoyRequest({ headers: { authorization: joined } }));
      const headers = assertDenied(r, 401, 16, 'unauthorized');
      assert.equal(header(headers, 'www-authenticate')?.header.value, 'Bearer error="invalid_request"', joined);
    }
    assert.equal(h.as.calls.length, 0);
  });

  test('one non-Bearer credential with commas (AWS SigV4, Digest) in the joined headers map is one credential, not three: an open route passes it; a protected route refuses it as one malformed credential', async () => {
    const sigv4 = 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7';
    const digest = 'Digest username="u", realm="r", nonce="n", uri="/public/x", response="6629fae49393a05397450978507c4ef1"';
    for (const credential of [sigv4, digest]) {
      const open = await h.check(envoyRequest({ path: '/public/x', headers: { authorization: credential } }));
      assert.equal(open.status.code, 0, credential);
      assert.deepEqual(open.ok_response!.headers, []);
      const guarded = await h.check(envoyRequest({ headers: { authorization: credential } }));
      // No Bearer credential at all: the plain challenge, as at the proxy (two credentials would be invalid_request).
      const headers = assertDenied(guarded, 401, 16, 'unauthorized');
      assert.equal(header(headers, 'www-authenticate')?.header.value, 'Bearer');
    }
    // A Bearer part beside another credential is still two: 400 on an open route (both would reach the upstream), 401 invalid_request on a protected one.
    const mixedOpen = await h.check(envoyRequest({ path: '/public/x', headers: { authorization: `${digest},Bearer tok-x` } }));
    assertDenied(mixedOpen, 400, 3, 'bad_request');
    const mixed = await h.check(envoyRequest({ headers: { authorization: `${digest},Bearer tok-x` } }));
    assert.equal(header(assertDenied(mixed, 401, 16, 'unauthorized'), 'www-authenticate')?.header.value, 'Bearer error="invalid_request"');
    assert.equal(h.as.calls.length, 0);
  });

  test('header_map: Authorization entries are counted as lines, one line with commas is one credential (an open route passes it)', async () => {
    const req = envoyRequest({ path: '/public/x' });
    const http = req.attributes.request.http as Record<string, unknown>;
    delete http.headers;
    http.header_map = { headers: [{ key: ':path', raw_value: Buffer.from('/public/x') }, { key: 'authorization', raw_value: Buffer.from('Digest username="u", realm="r", nonce="n"') }] };
    const one = await h.check(req);
    assert.equal(one.status.code, 0);
  });

  test('header bounds: more than server.max_headers headers, or headers over server.max_header_bytes, are 431 as at the HTTP listeners; a Check message over the receive bound is refused by gRPC before it is read; the server keeps serving', async () => {
    // envoyRequest() has :authority (Host), user-agent and x-request-id: 97 more make 100, the bound; the other pseudo-headers are the request line.
    const many: Record<string, string> = {};
    for (let i = 0; i < 97; i++) many[`x-h-${i}`] = 'v';
    const fine = await h.check(envoyRequest({ path: '/public/x', headers: many }));
    assert.equal(fine.status.code, 0);
    many['x-h-97'] = 'v';
    const tooMany = await h.check(envoyRequest({ path: '/public/x', headers: many }));
    assertDenied(tooMany, 431, 3, 'bad_request');
    assert.equal(JSON.parse(tooMany.denied_response!.body).message, 'Too many request headers');
    const large = await h.check(envoyRequest({ path: '/public/x', headers: { 'x-big': 'a'.repeat(16_384) } }));
    assertDenied(large, 431, 3, 'bad_request');
    assert.equal(JSON.parse(large.denied_response!.body).message, 'Request headers too large');
    const huge: Record<string, string> = {};
    for (let i = 0; i < 10_000; i++) huge[`x-h-${i}`] = 'v'.repeat(20);
    await assert.rejects(h.check(envoyRequest({ path: '/public/x', headers: huge })), (e: grpc.ServiceError) => e.code === grpc.status.RESOURCE_EXHAUSTED);
    const after = await h.check(envoyRequest({ path: '/public/x' }));
    assert.equal(after.status.code, 0);
    assert.equal(h.as.calls.length, 0);
  });

  test('header_map (encode_raw_headers): the token from raw_value; two Authorization entries refused', async () => {
    const jwt = await h.as.activate('tok-raw', { scope: 'read' });
    const req = envoyRequest();
    const http = req.attributes.request.http as Record<string, unknown>;
    delete http.headers;
    http.header_map = { headers: [{ key: ':path', raw_value: Buffer.from('/api/x') }, { key: 'authorization', raw_value: Buffer.from('Bearer tok-raw') }] };
    const ok = await h.check(req);
    assert.equal(ok.status.code, 0);
    assert.equal(ok.ok_response!.headers[0]!.header.value, `Bearer ${jwt}`);
    http.header_map = { headers: [{ key: 'authorization', raw_value: Buffer.from('Bearer tok-raw') }, { key: 'authorization', raw_value: Buffer.from('Bearer tok-raw') }] };
    const two = await h.check(req);
    assertDenied(two, 401, 16, 'unauthorized');
  });

  test('paths the proxy would refuse are refused: 400 INVALID_ARGUMENT before any introspection', async () => {
    await h.as.activate('tok-path', { scope: 'read' });
    for (const path of ['/api/../admin', '/public/%2e%2e/api', '//api/x', 'http://evil/api', '/API/x']) {
      const r = await h.check(envoyRequest({ path, headers: { authorization: 'Bearer tok-path' } }));
      assertDenied(r, 400, 3, 'bad_request');
    }
    const none = await h.check(envoyRequest({ path: '/nowhere', headers: { authorization: 'Bearer tok-path' } }));
    assertDenied(none, 404, 5, 'not_found');
    assert.equal(h.as.calls.length, 0);
  });

  test('credential rules: token in the query 400, method override 405, TRACE 405; open route and CORS preflight pass untouched', async () => {
    assertDenied(await h.check(envoyRequest({ path: '/api/x?access_token=abc' })), 400, 3, 'bad_request');
    assertDenied(await h.check(envoyRequest({ method: 'POST', headers: { authorization: 'Bearer x', 'x-http-method-override': 'DELETE' } })), 405, 3, 'bad_request');
    assertDenied(await h.check(envoyRequest({ method: 'TRACE' })), 405, 3, 'bad_request');
    const open = await h.check(envoyRequest({ path: '/public/page', headers: { authorization: 'Bearer whatever' } }));
    assert.equal(open.status.code, 0);
    assert.deepEqual(open.ok_response!.headers, []);
    const preflight = await h.check(envoyRequest({ method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } }));
    assert.equal(preflight.status.code, 0);
    assert.deepEqual(preflight.ok_response!.headers, []);
    // Any other OPTIONS needs a token.
    assertDenied(await h.check(envoyRequest({ method: 'OPTIONS' })), 401, 16, 'unauthorized');
    assert.equal(h.as.calls.length, 0);
  });

  test('scripted authorization server answers 503 with Retry-After: 503 UNAVAILABLE, Retry-After passed on', async () => {
    h.as.answers.set('tok-503', { status: 503, headers: { 'retry-after': '7' }, body: 'down' });
    const r = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-503' } }));
    const headers = assertDenied(r, 503, 14, 'server_error');
    assert.equal(header(headers, 'retry-after')?.header.value, '7');
    assert.ok(!r.denied_response!.body.includes('down'));
    // Never cached: the next check asks again.
    await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-503' } }));
    assert.equal(h.as.callsFor('tok-503'), 2);
  });

  test('scripted authorization server answers 500: 502 UNAVAILABLE', async () => {
    h.as.answers.set('tok-500', { status: 500, body: 'stack trace' });
    const r = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-500' } }));
    assertDenied(r, 502, 14, 'server_error');
  });

  test('concurrent checks for one new token share one introspection', async () => {
    const jwt = await h.as.activate('tok-burst', { scope: 'read' }, { delayMs: 150 });
    const results = await Promise.all(Array.from({ length: 12 }, () => h.check(envoyRequest({ headers: { authorization: 'Bearer tok-burst' } }))));
    for (const r of results) assert.equal(r.ok_response!.headers[0]!.header.value, `Bearer ${jwt}`);
    assert.equal(h.as.callsFor('tok-burst'), 1);
  });

  test('malformed CheckRequests are denied with 400 (never a gRPC error Envoy could fail open on), and the server keeps serving', async () => {
    for (const req of [{}, { attributes: {} }, { attributes: { request: {} } }, { attributes: { request: { http: { path: '/api/x' } } } }]) {
      const r = await h.check(req);
      assertDenied(r, 400, 3, 'bad_request');
    }
    // Bytes that are no CheckRequest at all (a truncated length-delimited field).
    const bytes = await h.checkRaw(Buffer.from([0x0a, 0x50, 0x01]));
    assert.equal(at(bytes, 1, 1)[0], 3);
    assert.equal(at(bytes, 2, 1, 1)[0], 400);
    const jwt = await h.as.activate('tok-after', { scope: 'read' });
    const r = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-after' } }));
    assert.equal(r.ok_response!.headers[0]!.header.value, `Bearer ${jwt}`);
  });

  test('wire format: a hand-encoded CheckRequest (Envoy field numbers) is understood, and the answer has Envoy\'s field numbers', async () => {
    const jwt = await h.as.activate('tok-wire', { scope: 'read' });
    const entry = (k: string, v: string) => ld(3, ld(1, k), ld(2, v)); // map<string,string> headers = 3
    // CheckRequest.attributes(1) { source(1) { address(1) { socket_address(1) { address(2) } } },
    //   request(4) { http(2) { method(2), headers(3), path(4) } } }
    const request = ld(
      1,
      ld(1, ld(1, ld(1, ld(2, '10.9.8.7')))),
      ld(4, ld(2, ld(2, 'GET'), entry(':path', '/api/wire'), entry('authorization', 'Bearer tok-wire'), ld(4, '/api/wire'))),
    );
    const ok = await h.checkRaw(request);
    // status(1) present, its code(1) 0 (written out, or left out as proto3 may).
    assert.equal(at(ok, 1).length, 1);
    assert.ok(at(ok, 1, 1).every((c) => c === 0));
    // ok_response(3).headers(2).header(1).key(1) / value(2)
    assert.equal(str(at(ok, 3, 2, 1, 1)[0]), 'authorization');
    assert.equal(str(at(ok, 3, 2, 1, 2)[0]), `Bearer ${jwt}`);
    // append(2) is a BoolValue present with value(1) false (written as 0, or left out).
    assert.equal(at(ok, 3, 2, 2).length, 1);
    assert.ok(at(ok, 3, 2, 2, 1).every((v) => v === 0));
    // append_action(3) = OVERWRITE_IF_EXISTS_OR_ADD (2)
    assert.equal(at(ok, 3, 2, 3)[0], 2);
    assert.deepEqual(at(ok, 2), [], 'no denied_response');

    // header_map(13) { headers(1) { key(1), raw_value(3) } }
    const rawHeaders = ld(13, ld(1, ld(1, 'authorization'), ld(3, 'Bearer tok-wire')));
    const viaMap = await h.checkRaw(ld(1, ld(4, ld(2, ld(2, 'GET'), ld(4, '/api/wire'), rawHeaders))));
    assert.equal(str(at(viaMap, 3, 2, 1, 2)[0]), `Bearer ${jwt}`);

    // A denial: status(1).code(1) = 16; denied_response(2) { status(1).code(1) = 401, headers(2), body(3) }
    const denied = await h.checkRaw(ld(1, ld(4, ld(2, ld(2, 'GET'), ld(4, '/api/wire')))));
    assert.deepEqual(at(denied, 1, 1), [16]);
    assert.deepEqual(at(denied, 2, 1, 1), [401]);
    assert.deepEqual(JSON.parse(str(at(denied, 2, 3)[0]) as string), { code: 'unauthorized', message: 'Access token required' });
    const keys = at(denied, 2, 2, 1, 1).map(str);
    assert.ok(keys.includes('www-authenticate'));
    assert.deepEqual(at(denied, 3), [], 'no ok_response');
  });

  test('the source address picks the introspection queue; logs carry neither tokens nor JWTs nor query strings', async () => {
    const jwt = await h.as.activate('tok-secret-value', { scope: 'read' });
    await h.check(envoyRequest({ path: '/api/x?q=private-query', headers: { authorization: 'Bearer tok-secret-value' } }));
    const logs = h.lines.join('\n');
    assert.ok(logs.includes('"front_door":"envoy_grpc"'));
    assert.ok(!logs.includes('tok-secret-value'));
    assert.ok(!logs.includes(jwt.split('.')[1]!));
    assert.ok(!logs.includes('private-query'));
  });
});

describe('Envoy ext_authz over gRPC: sender-constrained tokens on the wire', () => {
  let h: Harness;
  const pki = makeTestPki('envoy-client');
  before(async () => {
    h = await startHarness(`  - path: /dpop
    upstream: http://127.0.0.1:9
    phantom_token: { scheme: DPoP }
`);
  });
  after(async () => {
    await h?.close();
    pki.cleanup();
  });

  test('hand-encoded: source.certificate (Peer field 5, URL-encoded PEM) for a certificate-bound token; host (5) and scheme (6) for htu when no pseudo-header says them', async () => {
    const jwt = await h.as.activate('tok-wire-cert', { scope: 'read', cnf: { 'x5t#S256': x5tS256(pki.client.cert) } });
    const pem = encodeURIComponent(pki.client.cert.toString('utf8'));
    const header = (k: string, v: string) => ld(1, ld(1, k), ld(3, v)); // header_map(13).headers(1) { key(1), raw_value(3) }
    // attributes(1) { source(1) { address(1) { socket_address(1) { address(2) } }, certificate(5) }, request(4) { http(2) { method(2), path(4), host(5), scheme(6), header_map(13) } } }
    const check = (source: Buffer, path: string, headers: Buffer[]) =>
      h.checkRaw(ld(1, source, ld(4, ld(2, ld(2, 'GET'), ld(4, path), ld(5, 'api.example.com:8443'), ld(6, 'https'), ld(13, ...headers)))));
    const address = ld(1, ld(1, ld(2, '10.9.8.7')));
    const withCert = await check(ld(1, address, ld(5, pem)), '/api/x', [header('authorization', 'Bearer tok-wire-cert')]);
    assert.equal(str(at(withCert, 3, 2, 1, 2)[0]), `Bearer ${jwt}`);
    const without = await check(ld(1, address), '/api/x', [header('authorization', 'Bearer tok-wire-cert')]);
    assert.deepEqual(at(without, 2, 1, 1), [401]);
    // A client's Client-Cert header is no certificate here.
    const forged = await check(ld(1, address), '/api/x', [header('authorization', 'Bearer tok-wire-cert'), header('client-cert', `:${new X509Certificate(pki.client.cert).raw.toString('base64')}:`)]);
    assert.deepEqual(at(forged, 2, 1, 1), [401]);

    const key = await dpopClient();
    const djwt = await h.as.activate('tok-wire-dpop', { scope: 'read', cnf: { jkt: key.jkt } });
    const proof = await dpopProof(key, 'GET', 'https://api.example.com:8443/dpop/x', 'tok-wire-dpop');
    const dpop = await check(ld(1, address), '/dpop/x?y=1', [header('authorization', 'DPoP tok-wire-dpop'), header('dpop', proof)]);
    // ok_response(3).headers(2): authorization, dpop, x-dpop-verified, each header(1) { key(1), value(2) }
    assert.deepEqual(at(dpop, 3, 2, 1, 1).map(str), ['authorization', 'dpop', 'x-dpop-verified']);
    assert.deepEqual(at(dpop, 3, 2, 1, 2).map(str), [`DPoP ${djwt}`, proof, key.jkt]);
    // header_map keeps two DPoP lines apart: two proofs, refused.
    const two = await check(ld(1, address), '/dpop/x', [header('authorization', 'DPoP tok-wire-dpop'), header('dpop', await dpopProof(key, 'GET', 'https://api.example.com:8443/dpop/x', 'tok-wire-dpop')), header('dpop', proof)]);
    assert.deepEqual(at(two, 2, 1, 1), [401]);
    assert.match(String(at(two, 2, 2, 1, 2).map(str).find((v) => String(v).startsWith('DPoP '))), /^DPoP error="invalid_dpop_proof"/);
  });
});

describe('Envoy ext_authz over gRPC: identity headers (forward_auth.identity_headers)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness('forward_auth:\n  grpc: { port: 0 }\n  identity_headers: { sub: X-Subject, tenant: X-Tenant }\n');
  });
  after(() => h.close());

  test('an allow sets each identity header the claims give (overwriting a client copy) and removes the others; an open route removes them all', async () => {
    await h.as.activate('tok-id', { scope: 'read' });
    const r = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-id', 'x-subject': 'spoofed', 'x-tenant': 'spoofed' } }));
    assert.equal(r.status.code, 0);
    const subject = header(r.ok_response!.headers, 'x-subject');
    assert.equal(subject?.header.value, 'user-1');
    assert.equal(subject?.append_action, 2, 'OVERWRITE_IF_EXISTS_OR_ADD');
    assert.deepEqual(subject?.append, { value: false });
    assert.equal(header(r.ok_response!.headers, 'x-tenant'), undefined, 'the token has no tenant claim');
    assert.deepEqual(r.ok_response!.headers_to_remove, ['x-tenant', 'dpop', 'x-dpop-verified', 'client-cert', 'client-cert-chain'], "the client's copy is removed");
    const open = await h.check(envoyRequest({ path: '/public/x', headers: { 'x-subject': 'spoofed' } }));
    assert.equal(open.status.code, 0);
    assert.deepEqual(open.ok_response!.headers, []);
    // ...and the client's Authorization: an open route does not forward it (forward_authorization).
    assert.deepEqual(open.ok_response!.headers_to_remove, ['x-subject', 'x-tenant', 'authorization', 'dpop', 'x-dpop-verified', 'client-cert', 'client-cert-chain']);
  });
});

describe('Envoy ext_authz over gRPC: identity header names apart from claim values', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness('forward_auth:\n  grpc: { port: 0 }\n  identity_headers: { preferred_username: X-User, client_id: X-Client-Id }\n');
  });
  after(() => h.close());

  test("a claim VALUE spelled like another identity header's name does not spare that header: the client's X-Client-Id is still removed", async () => {
    await h.as.activate('tok-spelled-like-header', { scope: 'read', preferred_username: 'x-client-id', client_id: undefined });
    const r = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-spelled-like-header', 'x-client-id': 'admin-console' } }));
    assert.equal(r.status.code, 0);
    assert.equal(header(r.ok_response!.headers, 'x-user')?.header.value, 'x-client-id');
    assert.equal(header(r.ok_response!.headers, 'x-client-id'), undefined);
    assert.deepEqual(r.ok_response!.headers_to_remove, ['x-client-id', 'dpop', 'x-dpop-verified', 'client-cert', 'client-cert-chain']);
  });
});

describe('Envoy ext_authz over gRPC: a bug on the asynchronous path', () => {
  test('scripted: a throw while answering after an introspection is logged and denied 500 (INTERNAL), never an unhandled rejection or an unanswered call', async () => {
    const h = await startHarness();
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    const logger = h.service.logger;
    const info = logger.info.bind(logger);
    // The access-log line of an allow throws (a stand-in for any bug there).
    (logger as { info: unknown }).info = (obj: { status?: number }, msg?: string) => {
      if (msg === 'check' && obj.status === 200) throw new Error('access log broke');
      return info(obj as never, msg as never);
    };
    try {
      await h.as.activate('tok-async-bug', { scope: 'read' });
      const r = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-async-bug' } }));
      assertDenied(r, 500, 13, 'server_error');
      assert.ok(!r.denied_response!.body.includes('access log broke'));
      // The same on the synchronous path (now a cache hit).
      const hit = await h.check(envoyRequest({ headers: { authorization: 'Bearer tok-async-bug' } }));
      assertDenied(hit, 500, 13, 'server_error');
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(unhandled, []);
      assert.ok(h.lines.some((l) => l.includes('internal error during an Envoy check')));
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await h.close();
    }
  });
});

describe('Envoy ext_authz over gRPC: deadlines and cancellation', () => {
  let h: Harness;
  before(async () => {
    // One introspection at a time, so a second new token waits in the queue.
    h = await startHarness('', { phantom: '  connections: 1\n  timeout_ms: 3000\n' });
  });
  after(() => h.close());

  test('a check past its gRPC deadline ends with DEADLINE_EXCEEDED and its queued token is never introspected', async () => {
    await h.as.activate('tok-slow', { scope: 'read' }, { delayMs: 400 });
    await h.as.activate('tok-queued', { scope: 'read' });
    const slow = h.check(envoyRequest({ headers: { authorization: 'Bearer tok-slow' } }));
    // Give the first check time to take the one connection.
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(h.check(envoyRequest({ headers: { authorization: 'Bearer tok-queued' } }), 100), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
    const r = await slow;
    assert.equal(r.status.code, 0);
    // The queued introspection was withdrawn with its only caller.
    await new Promise((r2) => setTimeout(r2, 50));
    assert.equal(h.as.callsFor('tok-queued'), 0);
    assert.equal(h.as.callsFor('tok-slow'), 1);
    const logged = h.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'check');
    assert.deepEqual(
      logged.map((l) => [l.status, l.code]),
      [
        [499, 'client_closed'],
        [200, undefined],
      ],
    );
  });

  test('introspection queues are per client: the source address, or X-Forwarded-For when the source is a trusted proxy', async () => {
    const local = await startHarness('trusted_proxies: [10.0.0.0/8]\n', { phantom: '  connections: 1\n  max_queued_per_client: 1\n' });
    try {
      await local.as.activate('tok-hold', { scope: 'read' }, { delayMs: 300 });
      for (const t of ['q1', 'q2', 'q3', 'q4', 'q5']) await local.as.activate(t, { scope: 'read' });
      const hold = local.check(envoyRequest({ source: '192.0.2.1', headers: { authorization: 'Bearer tok-hold' } }));
      await new Promise((r) => setTimeout(r, 50));
      const send = (token: string, source: string, xff?: string) =>
        local.check(envoyRequest({ source, headers: { authorization: `Bearer ${token}`, ...(xff ? { 'x-forwarded-for': xff } : {}) } }));
      // Behind the trusted proxy 10.0.0.7: two clients, one queue place each.
      const a = send('q1', '10.0.0.7', '198.51.100.1, 10.0.0.3');
      const b = send('q2', '10.0.0.7', '198.51.100.2');
      const a2 = await send('q3', '10.0.0.7', '203.0.113.9, 198.51.100.1');
      assertDenied(a2, 429, 8, 'too_many_requests');
      // An untrusted source's X-Forwarded-For is its own claim: its queue is its address.
      const c = send('q4', '192.0.2.50', '198.51.100.77');
      const c2 = await send('q5', '192.0.2.50', '198.51.100.78');
      assertDenied(c2, 429, 8, 'too_many_requests');
      for (const r of await Promise.all([hold, a, b, c])) assert.equal(r.status.code, 0);
    } finally {
      await local.close();
    }
  });

  test('scripted authorization server slower than timeout_ms: 504 DEADLINE_EXCEEDED in the denial', async () => {
    const local = await startHarness('', { phantom: '  timeout_ms: 100\n' });
    try {
      await local.as.activate('tok-504', { scope: 'read' }, { delayMs: 500 });
      const r = await local.check(envoyRequest({ headers: { authorization: 'Bearer tok-504' } }));
      assertDenied(r, 504, 4, 'server_error');
    } finally {
      await local.close();
    }
  });
});

describe('Envoy ext_authz over gRPC: status mapping and configuration', () => {
  test('gRPC codes for HTTP statuses', () => {
    assert.deepEqual(
      [400, 401, 403, 404, 405, 429, 431, 500, 502, 503, 504].map(grpcCodeFor),
      [3, 16, 7, 5, 3, 8, 3, 13, 14, 14, 4],
    );
  });

  test('forward_auth.grpc: host defaults to loopback, port is required, unknown keys are refused', () => {
    const base = 'phantom_token:\n  introspection_endpoint: http://127.0.0.1:1/i\n  client_id: c\n  client_secret: s\nroutes:\n  - path: /api\n    upstream: http://127.0.0.1:2\n';
    const c = parseConfig(`${base}forward_auth:\n  grpc:\n    port: 9191\n`, { file: 't.yaml', env: {} });
    assert.deepEqual(c.forward_auth?.grpc, { host: '127.0.0.1', port: 9191 });
    assert.equal(parseConfig(base, { file: 't.yaml', env: {} }).forward_auth, undefined);
    assert.throws(() => parseConfig(`${base}forward_auth:\n  grpc:\n    host: 0.0.0.0\n`, { file: 't.yaml', env: {} }), (e: ConfigError) => /forward_auth\.grpc\.port/.test(e.message));
    assert.throws(() => parseConfig(`${base}forward_auth:\n  grpc:\n    port: 1\n    tls: true\n`, { file: 't.yaml', env: {} }), ConfigError);
  });
});

describe('Envoy ext_authz over gRPC: the adapter for the shared front-door suite', () => {
  test('envoyGrpcDoor reports what the client and the API would see', async () => {
    const as = await startScriptedIntrospection();
    const door = await envoyGrpcDoor.start(basicConfig(as.url, 'http://127.0.0.1:9'));
    try {
      const jwt = await as.activate('tok-door', { scope: 'read' });
      assert.deepEqual(await door.call({ target: '/api/x', authorization: 'Bearer tok-door', dpop: ['a.b.c'] }), {
        status: 200,
        challenge: undefined,
        retryAfter: undefined,
        body: undefined,
        forwarded: `Bearer ${jwt}`,
        forwardedDpop: null,
        dpopVerified: null,
      });
      const none = await door.call({ target: '/api/x' });
      assert.deepEqual([none.status, none.challenge, none.body], [401, 'Bearer', { code: 'unauthorized', message: 'Access token required' }]);
      assert.equal((await door.call({ target: '/api/x', authorization: ['Bearer tok-door', 'Bearer tok-door'] })).status, 401);
      assert.deepEqual(await door.call({ target: '/public/x', authorization: 'Basic abc' }), {
        status: 200,
        challenge: undefined,
        retryAfter: undefined,
        body: undefined,
        // An open route without forward_authorization: Envoy removes the client's Authorization (headers_to_remove).
        forwarded: null,
        forwardedDpop: null,
        dpopVerified: null,
      });
    } finally {
      await door.close();
      await as.close();
    }
  });
});

describe('Envoy ext_authz over gRPC: examples/envoy-grpc', () => {
  test('gateway.yaml is valid and envoy.yaml asks it: ext_authz V3, fail closed, its gRPC port, a timeout above timeout_ms', () => {
    const dir = new URL('../../examples/envoy-grpc/', import.meta.url);
    const gateway = parseConfig(readFileSync(new URL('gateway.yaml', dir), 'utf8'), { file: 'gateway.yaml', env: { INTROSPECTION_CLIENT_SECRET: 'x' } });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const envoy = parseYaml(readFileSync(new URL('envoy.yaml', dir), 'utf8')) as any;
    const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const filters = hcm.http_filters as { name: string; typed_config: Record<string, unknown> }[];
    assert.deepEqual(filters.map((f) => f.name), ['envoy.filters.http.ext_authz', 'envoy.filters.http.router']);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const authz = filters[0]!.typed_config as any;
    assert.equal(authz.transport_api_version, 'V3');
    assert.equal(authz.failure_mode_allow, false);
    assert.ok(Number.parseFloat(authz.grpc_service.timeout) * 1000 > (gateway.routes[0]!.phantom_token as { timeout_ms: number }).timeout_ms);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const cluster = envoy.static_resources.clusters.find((c: any) => c.name === authz.grpc_service.envoy_grpc.cluster_name);
    assert.ok(cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config.http2_protocol_options);
    const addr = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    assert.deepEqual({ host: addr.address, port: addr.port_value }, gateway.forward_auth!.grpc);
  });
});

describe('Envoy ext_authz over gRPC: the command line', () => {
  let as: ScriptedIntrospection;
  const scratch = scratchDir();
  before(async () => {
    ensureBuilt();
    as = await startScriptedIntrospection();
  });
  after(async () => {
    await as.close();
    scratch.cleanup();
  });

  test('phantom-gateway serves Check on forward_auth.grpc beside the proxy, and stops on SIGTERM', async () => {
    const [port, grpcPort] = [await freePort(), await freePort()];
    const file = scratch.write(
      'grpc.yaml',
      `listen:\n  host: 127.0.0.1\n  port: ${port}\nforward_auth:\n  grpc:\n    port: ${grpcPort}\n${basicConfig(as.url, 'http://127.0.0.1:9')}`,
    );
    const run = startCli(['--config', file]);
    try {
      await run.waitFor(/Envoy ext_authz \(gRPC\) listening/);
      const jwt = await as.activate('tok-cli', { scope: 'read' });
      const client = new AuthorizationClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
      const r = await new Promise<Response>((resolve, reject) =>
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        (client as any).Check(envoyRequest({ headers: { authorization: 'Bearer tok-cli' } }), { deadline: Date.now() + 5000 }, (err: Error | null, res: Response) => (err ? reject(err) : resolve(res))),
      );
      client.close();
      assert.equal(r.ok_response!.headers[0]!.header.value, `Bearer ${jwt}`);
      run.child.kill('SIGTERM');
      const { code } = await run.exited;
      assert.equal(code, 0);
    } finally {
      run.kill();
    }
  });
});
