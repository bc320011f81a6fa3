/*
 * Review of issue 11 (trace context): tracestate is bounded (512) before it is
 * passed on, but a traceparent of a future version ("cc-...-01-<anything>") is
 * forwarded unchanged at any length, to the upstream and to the introspection
 * call: an untrusted client puts kilobytes of its own text into the gateway's
 * call to the authorization server. A future version must be read as its
 * version-00 prefix (W3C: parse the first 55 characters) and passed on as that.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { suiteStack } from '../helpers/gateway.js';

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const PARENT = 'b7ad6b7169203331';

describe('review i11 trace context: a future-version traceparent is bounded, scripted', () => {
  const st = suiteStack(
    (as, api) => `phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway-client
  client_secret: s3cret
routes:
  - path: /api
    upstream: ${api.url}
`,
  );

  // Defect: TRACEPARENT in src/observability/trace-context.ts accepts `(-.*)?` after the flags with no length bound, and traceHeaders() passes the value on as sent.
  test('cc-<trace>-<parent>-01- followed by 6000 characters: the introspection call and the upstream get at most the 55-character prefix (with the same trace id)', async () => {
    await st.as.activate('trace-token', { scope: 'read' });
    const huge = `cc-${TRACE}-${PARENT}-01-${'a'.repeat(6000)}`;
    const r = await request(`${st.gw.url}/api/x`, { headers: { authorization: 'Bearer trace-token', traceparent: huge } });
    await r.body.text();
    assert.equal(r.statusCode, 200);
    const toAs = st.as.calls[0]!.headers.traceparent as string | undefined;
    const toApi = st.api.received[0]!.headers.traceparent as string | undefined;
    for (const [who, v] of [['introspection call', toAs], ['upstream', toApi]] as const) {
      assert.ok(v === undefined || v.length <= 55, `${who} got a ${v?.length}-character traceparent from the client`);
      if (v !== undefined) assert.ok(v.includes(TRACE), `${who}: the trace id is kept`);
    }
  });
});
