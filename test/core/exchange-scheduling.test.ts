/*
 * TokenExchange with the introspection scheduler behind it: what the
 * requester is used for (only on a miss), single-flight joins (never counted
 * against a cap), and withdrawal (only when the last requester of an
 * introspection that has not been sent goes away).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryTokenCache } from '../../src/cache/memory.js';
import { GatewayError } from '../../src/core/errors.js';
import { TokenExchange, type Requester } from '../../src/core/exchange.js';
import { IntrospectionClient } from '../../src/introspection/client.js';
import { ScopePolicy } from '../../src/policy/scope.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';

const ANY = new ScopePolicy('');

describe('token exchange and the introspection queue, scripted introspection answering after 200 ms', { timeout: 10_000 }, () => {
  let as: ScriptedIntrospection;
  let client: IntrospectionClient;
  let exchange: TokenExchange;
  before(async () => {
    as = await startScriptedIntrospection();
    as.fallback = { status: 204, delayMs: 200 };
    client = new IntrospectionClient({
      endpoint: new URL(`${as.url}/introspect`),
      clientId: 'gateway-client',
      clientSecret: 'gateway-secret',
      timeoutMs: 2000,
      verifySsl: true,
      maxAnswerBytes: 65536,
      connections: 1,
      maxQueued: 10,
      maxQueuedPerClient: 1,
    });
    exchange = new TokenExchange({ introspector: client, cache: new MemoryTokenCache({ maxEntries: 100 }), namespace: 'ns', tokenCacheSeconds: 60, negativeCacheSeconds: 10, maxTokenLength: 4096 });
  });
  after(async () => {
    await client.destroy();
    await as.close();
  });

  /** A requester that counts how often its address is read. */
  class CountingRequester implements Requester {
    reads = 0;
    constructor(readonly address: string) {}
    get clientAddress(): string {
      this.reads++;
      return this.address;
    }
  }
  const requester = (address: string) => new CountingRequester(address);

  test('cache-hit path: a cached token is decided synchronously and its requester\'s address is never read', async () => {
    await as.activate('sched-cached', { scope: 'read' });
    const first = requester('192.0.2.1');
    const v = exchange.authorize('Bearer sched-cached', ANY, first);
    assert.ok(v instanceof Promise);
    assert.equal((await v) instanceof GatewayError, false);
    assert.equal(first.reads, 1);
    const again = requester('192.0.2.1');
    const hit = exchange.authorize('Bearer sched-cached', ANY, again);
    assert.ok(!(hit instanceof Promise), 'a hit is synchronous');
    assert.equal(again.reads, 0, 'no scheduling work on a hit');
  });

  test('single-flight joins are free: a second requester of a waiting token is neither capped nor counted, and one withdrawing leaves it to the other', async () => {
    const running = exchange.authorize('Bearer sched-running', ANY, requester('192.0.2.2'));
    const a = requester('192.0.2.3');
    const b = requester('192.0.2.3');
    const pa = exchange.authorize('Bearer sched-joined', ANY, a);
    const pb = exchange.authorize('Bearer sched-joined', ANY, b);
    assert.equal(b.reads, 0, 'a join does not even ask who it is');
    assert.deepEqual(client.load, { running: 1, queued: 1 });
    exchange.withdraw(pa);
    assert.deepEqual(client.load, { running: 1, queued: 1 }, 'b still waits for it');
    const capped = await exchange.authorize('Bearer sched-other', ANY, requester('192.0.2.3'));
    assert.ok(capped instanceof GatewayError && capped.status === 429, 'the client\'s one place is taken by the joined token');
    assert.equal(((await pb) as GatewayError).code, 'ERR_TOKEN_INACTIVE');
    await running;
    assert.equal(as.callsFor('sched-joined'), 1);
  });

  test('the last requester withdrawing drops the waiting introspection, and the next request for the token starts afresh', async () => {
    const running = exchange.authorize('Bearer sched-running-2', ANY, requester('192.0.2.4'));
    const p = exchange.authorize('Bearer sched-dropped', ANY, requester('192.0.2.5'));
    assert.equal(exchange.inflight, 2);
    exchange.withdraw(p);
    assert.equal(exchange.inflight, 1);
    assert.deepEqual(client.load, { running: 1, queued: 0 });
    const again = exchange.authorize('Bearer sched-dropped', ANY, requester('192.0.2.5'));
    assert.equal(((await again) as GatewayError).code, 'ERR_TOKEN_INACTIVE');
    await running;
    await p;
    assert.equal(as.callsFor('sched-dropped'), 1, 'introspected once: for the request still waiting');
  });
});
