/*
 * Set-up shared by the i12 regression tests (the shared Redis cache): a real
 * redis-server, the scripted introspection peer (it counts introspections
 * and changes its answer mid-test), an echo upstream, and in-process
 * gateways on that Redis, stopped in `after()`.
 */
import { after, before } from 'node:test';
import { request } from 'undici';
import { basicConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { sharedUp, startRedis, TEST_KEY_SECRET, type RedisInstance } from '../helpers/redis.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from '../helpers/servers.js';

export interface SharedSuite {
  redis: RedisInstance;
  as: ScriptedIntrospection;
  api: EchoUpstream;
  /**
   * A gateway on the suite's Redis, up (sharing) before it resolves.
   * `redisExtra`: more lines of `cache.redis` (4 spaces indented); `extra`:
   * more top-level YAML (e.g. routes are in basicConfig already).
   */
  gateway(opts?: { redisExtra?: string; extra?: string; yaml?: (redisBlock: string) => string; waitUp?: boolean }): Promise<TestGateway>;
}

/** The `cache.redis` block for `redis`, with extra lines (4 spaces indented). */
export function redisBlock(redis: RedisInstance, redisExtra = ''): string {
  return `cache:\n  redis:\n    url: ${redis.url}\n    key_secret: ${TEST_KEY_SECRET}\n${redisExtra}`;
}

/** Starts the suite's servers before its tests and stops them (and every gateway) after. */
export function sharedSuite(): SharedSuite {
  const gateways: TestGateway[] = [];
  const suite = {} as SharedSuite;
  before(async () => {
    const [redis, as, api] = await Promise.all([startRedis(), startScriptedIntrospection(), startEchoUpstream()]);
    Object.assign(suite, { redis, as, api });
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await Promise.all([suite.redis?.close(), suite.as?.close(), suite.api?.close()]);
  });
  suite.gateway = async (opts = {}) => {
    const block = redisBlock(suite.redis, opts.redisExtra ?? '');
    const yaml = opts.yaml !== undefined ? opts.yaml(block) : basicConfig(suite.as.url, suite.api.url, `${block}${opts.extra ?? ''}`);
    const gw = await startGateway(yaml);
    gateways.push(gw);
    if (opts.waitUp !== false) await sharedUp(gw.gateway.guards.shared!);
    return gw;
  };
  return suite;
}

/** One request with `Bearer <token>` to `path` on `gw`; its status. */
export async function call(gw: TestGateway, token: string, path = '/api/x'): Promise<number> {
  const res = await request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  await res.body.dump();
  return res.statusCode;
}

/** From now on the peer says `token` is not active (revoked). */
export function revoke(as: ScriptedIntrospection, token: string): void {
  as.answers.set(token, { status: 200, body: '{"active":false}', headers: { 'content-type': 'application/json' } });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms until it holds; fails after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
