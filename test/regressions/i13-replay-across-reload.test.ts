/*
 * i13 regression: a reload that changes `cache.max_dpop_proofs` forgets
 * every proof seen, so each proof accepted before it is accepted once more
 * after it.
 *
 * Guards carries the previous MemoryReplayStore over a reload only when
 * the bound is unchanged; otherwise it starts an empty one. Any proof used
 * within the last max_age_seconds + clock_skew_seconds can then be replayed
 * (with its token) once, on every instance reloaded that way. Raising the
 * bound is what an operator does when the warning/metrics say the memory is
 * too small, i.e. under load, when most proofs are live.
 *
 * Fix: when the bound changes, copy the live entries into the new store
 * (LRU `dump`/`load`, or keep the old one as a second memory until its
 * entries expire) rather than starting empty.
 *
 * Second test, same family: a reload that raises `dpop.max_age_seconds`.
 * A proof is remembered until iat + max_age + skew of the configuration that
 * accepted it; the new configuration accepts iat up to its own, longer,
 * max_age. A proof forgotten under the old window is fresh again under the
 * new one (here: max_age 1 s, skew 0, then 60 s; the proof replayed 2.5 s
 * after its iat). Fix: remember each proof until the longest window any
 * configuration may accept it in (e.g. iat + 3600 + 300, the schema's
 * maxima, bounded by max_dpop_proofs), or refuse proofs with an iat from
 * before the reload beyond the window they were accepted under.
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

describe('i13: DPoP replay memory across a reload (scripted introspection)', () => {
  let as: ScriptedIntrospection;
  let api: EchoUpstream;
  let runtime: Runtime;
  let yaml: string;
  let port: number;
  const text = (max: number, maxAge = 60) => `listen: { host: 127.0.0.1, port: 0 }
phantom_token:
  introspection_endpoint: ${as.url}/introspect
  client_id: gateway
  client_secret: s
  scheme: DPoP
  dpop: { max_age_seconds: ${maxAge}, clock_skew_seconds: 0 }
cache:
  max_dpop_proofs: ${max}
routes:
  - path: /api
    upstream: ${api.url}
`;
  const load = (): GatewayConfig => parseConfig(yaml, { file: 'reload.yaml', env: {} });

  before(async () => {
    as = await startScriptedIntrospection();
    api = await startEchoUpstream();
    yaml = text(1000);
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    runtime = new Runtime(load(), { logger: createLogger('info', sink), load });
    port = (await runtime.gateway!.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    await runtime.close();
    await Promise.all([as.close(), api.close()]);
  });

  test('a proof used before a reload that raises max_dpop_proofs is refused after it', async () => {
    const key = await dpopKey();
    await as.activate('tok', { cnf: { jkt: key.jkt } });
    const url = `http://127.0.0.1:${port}/api/x`;
    const p = await proof(key, 'GET', url, 'tok');
    assert.equal((await fetch(url, { headers: { authorization: 'DPoP tok', dpop: p } })).status, 200);
    assert.equal((await fetch(url, { headers: { authorization: 'DPoP tok', dpop: p } })).status, 401, 'replay refused before the reload');

    yaml = text(2000);
    assert.deepEqual(await runtime.reload(), { ok: true });
    const again = await fetch(url, { headers: { authorization: 'DPoP tok', dpop: p } });
    assert.equal(again.status, 401, 'the proof was accepted again after the reload');
    assert.equal(api.received.length, 1);
  });

  test('a proof forgotten under max_age_seconds 1 is refused after a reload that raises it to 60', async () => {
    yaml = text(2000, 1);
    assert.deepEqual(await runtime.reload(), { ok: true });
    const key = await dpopKey();
    await as.activate('tok2', { cnf: { jkt: key.jkt } });
    const url = `http://127.0.0.1:${port}/api/x`;
    const p = await proof(key, 'GET', url, 'tok2');
    const iatMs = Math.floor(Date.now() / 1000) * 1000;
    assert.equal((await fetch(url, { headers: { authorization: 'DPoP tok2', dpop: p } })).status, 200);
    yaml = text(2000, 60);
    assert.deepEqual(await runtime.reload(), { ok: true });
    await new Promise((r) => setTimeout(r, Math.max(0, iatMs + 2500 - Date.now())));
    const again = await fetch(url, { headers: { authorization: 'DPoP tok2', dpop: p } });
    assert.equal(again.status, 401, 'the proof was accepted again after the reload');
  });
});
