/*
 * The three introspection_response dialects a scripted endpoint can stand in
 * for (scripted: the Curity and Keycloak shapes, and plain RFC 7662 JSON with
 * faults injected), through the real gateway: what the upstream receives
 * (a JWT that verifies with jose against the right JWKS: the server's for
 * jwt and jwt_claim, the gateway's for json), its claims, its exp never later
 * than the token's; inactive answers as 401; garbage as 502 with a warning;
 * and how long an answer is kept (Cache-Control: max-age).
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call, fakeClock, gatewayConfig } from '../helpers/core.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedAnswer, type ScriptedIntrospection } from '../helpers/servers.js';
import { forwardedJwt, jsonAnswer, nowSeconds, serverKey, signingKeyDir, verifyForwarded, type ServerKey } from './support.js';

const GATEWAY_ISS = 'https://gateway.test';
const MAX_LIFETIME = 600;
const INVALID = { code: 'unauthorized', message: 'Invalid or expired access token' };
const UNAVAILABLE = { code: 'server_error', message: 'Token validation is unavailable' };

let serial = 0;
const fresh = (label: string) => `shape-${label}-${++serial}-${Math.random().toString(36).slice(2)}`;

describe('introspection dialects (scripted Curity, Keycloak and RFC 7662 answers)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  let key: ServerKey;
  const keyDir = signingKeyDir();

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    key = await serverKey();
    gw = await startGateway(
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: 'read' },
        routes: [
          { path: '/jwt', phantom_token: { introspection_response: 'jwt' } },
          { path: '/jwt-claim', phantom_token: { introspection_response: 'jwt_claim' } },
          { path: '/json', phantom_token: { introspection_response: 'json' } },
        ],
        extra: { minting: { issuer: GATEWAY_ISS, signing_key_file: keyDir.keyFile, max_lifetime_seconds: MAX_LIFETIME, copy_claims: ['username', 'sub', 'acr'] } },
      }),
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
    keyDir.remove();
  });
  beforeEach(() => {
    as.calls.length = 0;
    api.received.length = 0;
  });

  async function expectStatus(path: string, token: string, status: number, body?: unknown): Promise<void> {
    const before = api.received.length;
    const r = await call(`${gw.url}${path}/x`, `Bearer ${token}`);
    assert.equal(r.status, status, `${path}: ${r.body}`);
    if (body !== undefined) assert.deepEqual(JSON.parse(r.body), body);
    if (status === 401) assert.equal(r.headers['www-authenticate'], 'Bearer error="invalid_token"');
    if (status !== 200) assert.equal(api.received.length, before, 'never reaches the upstream');
  }

  /** Expects a 502 and one warning whose message matches `detail`. */
  async function expectInvalid(path: string, token: string, detail: RegExp): Promise<void> {
    const mark = gw.logs.length;
    await expectStatus(path, token, 502, UNAVAILABLE);
    const warnings = gw.logs.slice(mark).filter((l) => l.level === 'warn' && l.code === 'ERR_INTROSPECTION_INVALID_ANSWER');
    if (warnings.length === 0) {
      // Repeats of the warning just logged are rate-limited (counted, not written): the last one must be this one.
      const last = gw.logs.slice(0, mark).filter((l) => l.level === 'warn' && l.code === 'ERR_INTROSPECTION_INVALID_ANSWER').at(-1);
      assert.ok(last !== undefined, JSON.stringify(gw.logs.slice(mark)));
      assert.match(String(last.msg), detail);
    } else {
      assert.equal(warnings.length, 1, JSON.stringify(gw.logs.slice(mark)));
      assert.match(String(warnings[0]!.msg), detail);
    }
    // Never cached: the next request asks again.
    await expectStatus(path, token, 502);
    assert.equal(as.callsFor(token), 2);
  }

  const answer = (token: string, a: ScriptedAnswer) => {
    as.answers.set(token, a);
    return token;
  };

  describe('jwt (Curity: Accept application/jwt, the body is the JWT)', () => {
    test('sends Accept: application/jwt; the JWT is forwarded as it came, verifying against the server\'s JWKS', async () => {
      const jwt = await key.sign({ sub: 'alice', scope: 'read', client_id: 'web', aud: 'api' }, { expiresIn: 120 });
      const token = answer(fresh('jwt'), { status: 200, body: jwt, headers: { 'content-type': 'application/jwt' } });
      await expectStatus('/jwt', token, 200);
      assert.equal(as.calls.at(-1)!.headers.accept, 'application/jwt');
      const forwarded = forwardedJwt(api);
      assert.equal(forwarded, jwt);
      const { payload } = await verifyForwarded(forwarded, key.jwks, decodeJwt(jwt).exp!, { issuer: key.issuer });
      assert.equal(payload.sub, 'alice');
    });

    test('204: inactive (401), remembered', async () => {
      const token = answer(fresh('jwt-204'), { status: 204 });
      await expectStatus('/jwt', token, 401, INVALID);
      await expectStatus('/jwt', token, 401, INVALID);
      assert.equal(as.callsFor(token), 1);
    });

    test('JSON {"active": false}: inactive (401)', async () => {
      await expectStatus('/jwt', answer(fresh('jwt-false'), jsonAnswer({ active: false })), 401, INVALID);
    });

    test('Keycloak-style JSON with a jwt member is accepted and that JWT forwarded', async () => {
      const jwt = await key.sign({ sub: 'alice', scope: 'read' }, { typ: 'JWT' });
      await expectStatus('/jwt', answer(fresh('jwt-kc'), jsonAnswer({ active: true, scope: 'read', jwt })), 200);
      assert.equal(forwardedJwt(api), jwt);
    });

    test('an active JSON answer without a JWT: 401, not remembered, and a warning naming the fix (introspection_response: json)', async () => {
      const token = answer(fresh('jwt-nojwt'), jsonAnswer({ active: true, scope: 'read', sub: 'alice' }));
      const mark = gw.logs.length;
      await expectStatus('/jwt', token, 401);
      await expectStatus('/jwt', token, 401);
      assert.equal(as.callsFor(token), 2, 'not remembered: fixing the server\'s set-up takes effect at once');
      const w = gw.logs.slice(mark).filter((l) => l.level === 'warn');
      assert.ok(w.length >= 1 && w.every((l) => /introspection_response: json/.test(String(l.msg))), JSON.stringify(w));
    });

    test('garbage where the JWT should be: 502 with a warning, never cached', async () => {
      await expectInvalid('/jwt', answer(fresh('jwt-html'), { status: 200, body: '<html>Bad gateway</html>', headers: { 'content-type': 'text/html' } }), /not a usable JWT/);
      await expectInvalid('/jwt', answer(fresh('jwt-empty'), { status: 200, body: '', headers: { 'content-type': 'application/jwt' } }), /empty body/);
    });
  });

  describe('jwt_claim (Keycloak 25+: JSON with active and a jwt member)', () => {
    test('the jwt member is forwarded, verifying against the server\'s JWKS, exp the token\'s', async () => {
      const jwt = await key.sign({ sub: 'alice', scope: 'read', typ: 'Bearer', azp: 'web' }, { typ: 'JWT', expiresIn: 200 });
      await expectStatus('/jwt-claim', answer(fresh('claim'), jsonAnswer({ active: true, scope: 'read', typ: 'Bearer', jwt })), 200);
      // Exactly this: Keycloak adds its jwt member only when Accept equals application/jwt.
      assert.equal(as.calls.at(-1)!.headers.accept, 'application/jwt');
      const forwarded = forwardedJwt(api);
      assert.equal(forwarded, jwt);
      await verifyForwarded(forwarded, key.jwks, decodeJwt(jwt).exp!, { issuer: key.issuer });
    });

    test('{"active": false} and 204: inactive (401)', async () => {
      await expectStatus('/jwt-claim', answer(fresh('claim-false'), jsonAnswer({ active: false })), 401, INVALID);
      await expectStatus('/jwt-claim', answer(fresh('claim-204'), { status: 204 }), 401, INVALID);
    });

    test('a raw JWT body (Curity shape) is not this dialect: 502', async () => {
      const jwt = await key.sign({ sub: 'alice', scope: 'read' });
      await expectInvalid('/jwt-claim', answer(fresh('claim-raw'), { status: 200, body: jwt, headers: { 'content-type': 'application/jwt' } }), /broken JSON/);
    });

    test('an active answer without jwt: 502 with a warning naming the fix (the client setting, or introspection_response: json)', async () => {
      await expectInvalid('/jwt-claim', answer(fresh('claim-nojwt'), jsonAnswer({ active: true, scope: 'read', sub: 'alice' })), /JWT claim in introspection answers.*introspection_response: json/);
    });

    test('a jwt member that is not a string: 502', async () => {
      await expectInvalid('/jwt-claim', answer(fresh('claim-num'), jsonAnswer({ active: true, jwt: 42 })), /not a string/);
    });
  });

  describe('json (RFC 7662: the gateway mints)', () => {
    test('sends Accept: application/json; mints an RFC 9068 JWT from the answer, verifying against the gateway\'s JWKS, with the RFC 9068 claims and the copied ones', async () => {
      const exp = nowSeconds() + 120;
      const token = answer(
        fresh('json'),
        jsonAnswer({
          active: true,
          iss: 'https://as.scripted.test',
          sub: 'alice',
          client_id: 'web',
          aud: ['orders-api', 'billing-api'],
          scope: 'read write',
          exp,
          iat: exp - 300,
          jti: 'server-jti',
          username: 'alice@example.com',
          acr: '1',
          ext: { secret: 'not copied' },
          token_type: 'Bearer',
        }),
      );
      await expectStatus('/json', token, 200);
      assert.equal(as.calls.at(-1)!.headers.accept, 'application/json');
      const minted = forwardedJwt(api);
      const { payload, protectedHeader } = await verifyForwarded(minted, gw.gateway.guards.jwks()!, exp, { issuer: GATEWAY_ISS, typ: 'at+jwt' });
      assert.equal(protectedHeader.alg, 'ES256');
      assert.equal(protectedHeader.kid, gw.gateway.guards.jwks()!.keys[0]!.kid);
      assert.equal(payload.exp, exp, 'the token\'s own exp, being earlier than now + max_lifetime_seconds');
      assert.equal(payload.sub, 'alice');
      assert.equal(payload.client_id, 'web');
      assert.deepEqual(payload.aud, ['orders-api', 'billing-api']);
      assert.equal(payload.scope, 'read write');
      assert.equal(payload.cnf, undefined);
      assert.equal(payload.username, 'alice@example.com', 'copy_claims');
      assert.equal(payload.acr, '1');
      assert.equal(payload.ext, undefined, 'only listed members are copied');
      assert.equal(payload.token_type, undefined);
      assert.notEqual(payload.jti, 'server-jti', 'a jti of the gateway\'s own');
      assert.ok(Math.abs(payload.iat! - nowSeconds()) <= 10);
      assert.ok(!minted.includes(token) && !JSON.stringify(payload).includes(token), 'the opaque token is not in the JWT');
    });

    test('a token living longer than max_lifetime_seconds gets a JWT ending at now + max_lifetime_seconds (never later than the token)', async () => {
      const exp = nowSeconds() + 3 * MAX_LIFETIME;
      await expectStatus('/json', answer(fresh('json-long'), jsonAnswer({ active: true, sub: 'alice', scope: 'read', exp })), 200);
      const { payload } = await verifyForwarded(forwardedJwt(api), gw.gateway.guards.jwks()!, exp);
      assert.ok(Math.abs(payload.exp! - (nowSeconds() + MAX_LIFETIME)) <= 10, `exp ${payload.exp}`);
    });

    test('an answer without exp: the JWT ends at now + max_lifetime_seconds', async () => {
      await expectStatus('/json', answer(fresh('json-noexp'), jsonAnswer({ active: true, sub: 'alice', scope: 'read' })), 200);
      const { payload } = await verifyForwarded(forwardedJwt(api), gw.gateway.guards.jwks()!, nowSeconds() + MAX_LIFETIME + 2);
      assert.ok(payload.exp! >= nowSeconds() + MAX_LIFETIME - 10);
    });

    test('a jwt member is not used: what is forwarded is always the gateway\'s own token', async () => {
      const serverJwt = await key.sign({ sub: 'alice', scope: 'read' });
      await expectStatus('/json', answer(fresh('json-jwt'), jsonAnswer({ active: true, sub: 'alice', scope: 'read', exp: nowSeconds() + 60, jwt: serverJwt })), 200);
      const minted = forwardedJwt(api);
      assert.notEqual(minted, serverJwt);
      await verifyForwarded(minted, gw.gateway.guards.jwks()!, nowSeconds() + 60, { issuer: GATEWAY_ISS });
      assert.equal(decodeJwt(minted).jwt, undefined);
    });

    test('{"active": false} and 204: inactive (401), remembered', async () => {
      const token = answer(fresh('json-false'), jsonAnswer({ active: false }));
      await expectStatus('/json', token, 401, INVALID);
      await expectStatus('/json', token, 401, INVALID);
      assert.equal(as.callsFor(token), 1);
      await expectStatus('/json', answer(fresh('json-204'), { status: 204 }), 401, INVALID);
    });

    test('an answer whose exp has passed: 401', async () => {
      await expectStatus('/json', answer(fresh('json-expired'), jsonAnswer({ active: true, sub: 'alice', scope: 'read', exp: nowSeconds() - 5 })), 401, INVALID);
    });

    test('the route\'s scope is checked against the answer\'s scope: 403 without it', async () => {
      const r = await call(`${gw.url}/json/x`, `Bearer ${answer(fresh('json-scope'), jsonAnswer({ active: true, sub: 'alice', scope: 'write', exp: nowSeconds() + 60 }))}`);
      assert.equal(r.status, 403);
    });

    const typeErrors: Array<[string, Record<string, unknown>, RegExp]> = [
      ['exp as a string', { exp: String(nowSeconds() + 60) }, /exp claim that is not a number/],
      ['exp as null', { exp: null }, /exp claim that is not a number/],
      ['iat as a string', { iat: '1' }, /iat claim that is not a number/],
      ['aud as a number', { aud: 5 }, /aud member/],
      ['aud as a list with a number', { aud: ['a', 5] }, /aud member/],
      ['scope as a list', { scope: ['read'] }, /scope member that is not a string/],
      ['cnf as a string', { cnf: 'x' }, /cnf member that is not an object/],
      ['cnf as a list', { cnf: [] }, /cnf member that is not an object/],
      ['sub as a number', { sub: 7 }, /sub member that is not a string/],
      ['client_id as an object', { client_id: {} }, /client_id member that is not a string/],
    ];
    for (const [name, members, detail] of typeErrors) {
      test(`a type error (${name}): 502, warned, never cached`, async () => {
        await expectInvalid('/json', answer(fresh('json-type'), jsonAnswer({ active: true, sub: 'alice', scope: 'read', exp: nowSeconds() + 60, ...members })), detail);
      });
    }

    const notAnswers: Array<[string, string, RegExp]> = [
      ['active missing', '{"sub":"alice","scope":"read"}', /boolean "active"/],
      ['active a string', '{"active":"true","scope":"read"}', /boolean "active"/],
      ['active a number', '{"active":1}', /boolean "active"/],
      ['a list', '[{"active":true}]', /boolean "active"/],
      ['null', 'null', /boolean "active"/],
      ['an error object from a proxy', '{"error":"temporarily_unavailable"}', /boolean "active"/],
      ['duplicate active', '{"active":false,"active":true,"scope":"read"}', /duplicate member/],
      ['duplicate scope', '{"active":true,"scope":"read","scope":"admin"}', /duplicate member/],
      ['duplicate nested', '{"active":true,"scope":"read","cnf":{"jkt":"a","jkt":"b"}}', /duplicate member/],
      ['broken JSON', '{"active":true,', /broken JSON/],
      ['empty', '', /empty body/],
    ];
    for (const [name, body, detail] of notAnswers) {
      test(`not an answer (${name}): 502, warned, never cached`, async () => {
        await expectInvalid('/json', answer(fresh('json-bad'), jsonAnswer(body)), detail);
      });
    }
  });
});

describe('Cache-Control: max-age bounds how long an answer is kept, in every dialect (scripted)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let gw: TestGateway;
  let key: ServerKey;
  const clock = fakeClock();
  const keyDir = signingKeyDir();

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    key = await serverKey();
    gw = await startGateway(
      gatewayConfig({
        introspection: as.url,
        upstream: api.url,
        phantom: { scope: '', token_cache_seconds: 60 },
        routes: [
          { path: '/jwt', phantom_token: { introspection_response: 'jwt' } },
          { path: '/jwt-claim', phantom_token: { introspection_response: 'jwt_claim' } },
          { path: '/json', phantom_token: { introspection_response: 'json' } },
        ],
        extra: { minting: { issuer: GATEWAY_ISS, signing_key_file: keyDir.keyFile } },
      }),
      { now: clock.now },
    );
  });
  after(async () => {
    await gw.close();
    await as.close();
    await api.close();
    keyDir.remove();
  });

  const shapes: Array<[string, (cacheControl: string | undefined) => Promise<ScriptedAnswer>]> = [
    ['jwt', async (cc) => ({ status: 200, body: await key.sign({ sub: 'alice' }), headers: { 'content-type': 'application/jwt', ...(cc ? { 'cache-control': cc } : {}) } })],
    ['jwt-claim', async (cc) => jsonAnswer({ active: true, jwt: await key.sign({ sub: 'alice' }) }, cc ? { 'cache-control': cc } : {})],
    ['json', async (cc) => jsonAnswer({ active: true, sub: 'alice', exp: nowSeconds() + 300 }, cc ? { 'cache-control': cc } : {})],
  ];
  for (const [path, shape] of shapes) {
    test(`${path}: max-age=5 keeps the answer 5 s (one introspection), then asks again`, async () => {
      clock.reset();
      const token = fresh(`max-age-${path}`);
      as.answers.set(token, await shape('max-age=5'));
      assert.equal((await call(`${gw.url}/${path}/x`, `Bearer ${token}`)).status, 200);
      clock.advance(4_000);
      assert.equal((await call(`${gw.url}/${path}/x`, `Bearer ${token}`)).status, 200);
      assert.equal(as.callsFor(token), 1, 'kept within max-age');
      clock.advance(2_000);
      assert.equal((await call(`${gw.url}/${path}/x`, `Bearer ${token}`)).status, 200);
      assert.equal(as.callsFor(token), 2, 'asked again after max-age');
    });

    // A server's JWT answer with no-store is not kept (Curity's phantom token
    // answer means it); RFC 7662 JSON carries no-store on every answer as
    // OAuth's blanket header (RFC 6749 §5.1), so a minted token is kept.
    const minted = path === 'json';
    test(`${path}: no-store: ${minted ? 'kept all the same (minted)' : 'not kept'}; no Cache-Control: kept token_cache_seconds`, async () => {
      clock.reset();
      const noStore = fresh(`no-store-${path}`);
      as.answers.set(noStore, await shape('no-store'));
      for (let i = 0; i < 2; i++) assert.equal((await call(`${gw.url}/${path}/x`, `Bearer ${noStore}`)).status, 200);
      assert.equal(as.callsFor(noStore), minted ? 1 : 2);
      const plain = fresh(`plain-${path}`);
      as.answers.set(plain, await shape(undefined));
      assert.equal((await call(`${gw.url}/${path}/x`, `Bearer ${plain}`)).status, 200);
      clock.advance(59_000);
      assert.equal((await call(`${gw.url}/${path}/x`, `Bearer ${plain}`)).status, 200);
      assert.equal(as.callsFor(plain), 1);
      clock.advance(2_000);
      assert.equal((await call(`${gw.url}/${path}/x`, `Bearer ${plain}`)).status, 200);
      assert.equal(as.callsFor(plain), 2);
    });
  }
});
