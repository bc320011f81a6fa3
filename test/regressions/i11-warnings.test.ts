/*
 * Review of issue 11: rate-limited warnings about the introspection endpoint.
 * A misconfiguration that makes every answer useless must cost one warning
 * (then a count a minute), not a warning and a false "recovered" line per
 * request (scripted authorization server: it answers JSON where a JWT is
 * expected, as a server without Accept: application/jwt support does).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/gateway.js';

describe('review i11 warnings: a JSON answer without a JWT (introspection_response: jwt), scripted', () => {
  let st: Stack;
  before(async () => {
    st = await startStack(
      (as, api) => `phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: ${api.url}
`,
    );
    st.as.fallback = {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ active: true, sub: 'user-1', scope: 'read', client_id: 'c', exp: Math.floor(Date.now() / 1000) + 300 }),
    };
  });
  after(() => st.close());

  // Defect: the "JSON without a JWT" warning goes through the outage WarnChannel (fail), and the 200 it came in
  // then calls outages.ok() (src/introspection/client.ts #decided): every request logs the warning AND "recovered".
  test('five requests with five tokens: the warning is logged once, and no "introspection endpoint recovered" line follows', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await request(`${st.gw.url}/api/x`, { headers: { authorization: `Bearer json-answer-token-${i}` } });
      await r.body.text();
      assert.equal(r.statusCode, 401);
    }
    assert.equal(st.as.calls.length, 5, 'each token introspected (no_jwt answers are not cached)');
    const lines = st.gw.logs.filter((l) => l.msg !== 'request');
    const warnings = lines.filter((l) => l.code === 'ERR_INTROSPECTION_INVALID_ANSWER' && l.level === 'warn');
    const recovered = lines.filter((l) => /recovered/.test(String(l.msg)));
    assert.equal(warnings.length, 1, `one warning, not one per request: ${JSON.stringify(lines.map((l) => l.msg))}`);
    assert.equal(recovered.length, 0, 'the endpoint never recovered: every answer was still unusable');
  });
});
