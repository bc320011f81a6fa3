/*
 * i13b regression: the reload fix for a longer DPoP window (forgetBefore +
 * extend in Guards) looks only at the longest window of all routes, so a
 * reload that lengthens one route's `dpop.max_age_seconds` while another
 * route already has a longer one makes that route's forgotten proofs fresh.
 *
 * A proof is remembered until iat + its route's max_age_seconds + 1 s
 * (DpopVerifier.remember). `dpopWindowMs(config)` is the maximum over the
 * routes; when it does not grow, Guards neither raises the floor nor
 * extends the entries. Here /short has max_age 1 s and /long 60 s; the
 * reload raises /short to 60 s (the maximum stays 60 s). A proof used on
 * /short is forgotten 2 s after its iat, and 2.5 s after it the same proof
 * (with its token) is accepted again on /short under the new window: a
 * captured request is replayed.
 *
 * Fix: compare windows route by route (or remember every proof for the
 * longest window of the configuration, not its route's), and apply the
 * floor/extend whenever any route's window grows.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/observability/logger.js';
import { Runtime } from '../../src/runtime.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';
import { dpopKey, proof } from './i13-helpers.js';

describe('i13b: DPoP replay memory when a reload lengthens one route window (scripted introspection)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let runtime: Runtime;
  let yaml: string;
  let port: number;
  const text = (shortAge: number) => `listen: { host: 127.0.0.1, port: 0 }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
routes:
  - path: /short
    upstream: ${api.url}
    phantom_token:
      dpop: { max_age_seconds: ${shortAge}, clock_skew_seconds: 0 }
  - path: /long
    upstream: ${api.url}
    phantom_token:
      dpop: { max_age_seconds: 60, clock_skew_seconds: 0 }
`;
  const load = (): GatewayConfig => parseConfig(yaml, { file: 'reload.yaml', env: {} });

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    yaml = text(1);
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    runtime = new Runtime(load(), { logger: createLogger('info', sink), load });
    port = (await runtime.gateway!.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    await runtime.close();
    await Promise.all([as.close(), api.close()]);
  });

  test('a proof forgotten under /short max_age_seconds 1 is refused after a reload raises it to 60 (/long already 60)', async () => {
    const key = await dpopKey();
    await as.activate('tok', { cnf: { jkt: key.jkt } });
    const url = `http://127.0.0.1:${port}/short/x`;
    const p = await proof(key, 'GET', url, 'tok');
    const iatMs = Math.floor(Date.now() / 1000) * 1000;
    assert.equal((await fetch(url, { headers: { authorization: 'DPoP tok', dpop: p } })).status, 200);
    assert.equal((await fetch(url, { headers: { authorization: 'DPoP tok', dpop: p } })).status, 401, 'replay refused before the reload');
    yaml = text(60);
    assert.deepEqual(await runtime.reload(), { ok: true });
    await new Promise((r) => setTimeout(r, Math.max(0, iatMs + 2500 - Date.now())));
    const again = await fetch(url, { headers: { authorization: 'DPoP tok', dpop: p } });
    assert.equal(again.status, 401, 'the proof was accepted again after the reload');
    assert.equal(api.received.length, 1, 'the replayed request reached the API');
  });
});
