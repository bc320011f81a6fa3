/*
 * The exchange over an asynchronous store (the shape a shared Redis store
 * will have): a hit answered from it costs no introspection, concurrent
 * callers share one read and one introspection, and a store that fails is a
 * miss, never a refusal. The store here is scripted (tests/helpers/stores.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryTokenCache } from '../../src/cache/memory.js';
import { GatewayError } from '../../src/core/errors.js';
import { TokenExchange } from '../../src/core/exchange.js';
import { IntrospectionClient } from '../../src/introspection/client.js';
import { ScopePolicy } from '../../src/policy/scope.js';
import { startScriptedIntrospection, type ScriptedIntrospection } from '../helpers/servers.js';
import { AsyncStore } from '../helpers/stores.js';
import type { TokenStore } from '../../src/cache/store.js';

const open = new ScopePolicy('');

describe('TokenExchange over a scripted asynchronous store', () => {
  let as: ScriptedIntrospection;
  const clients: IntrospectionClient[] = [];
  const internalErrors: unknown[] = [];

  function exchangeOver(store: TokenStore): TokenExchange {
    const client = new IntrospectionClient(
      { endpoint: new URL(`${as.url}/introspect`), clientId: 'gateway-client', clientSecret: 's', timeoutMs: 2000, verifySsl: true, maxAnswerBytes: 65536, connections: 4 },
      () => {},
    );
    clients.push(client);
    return new TokenExchange({
      introspector: client,
      cache: store,
      namespace: 'ns',
      tokenCacheSeconds: 300,
      negativeCacheSeconds: 10,
      maxTokenLength: 4096,
      onInternalError: (err) => internalErrors.push(err),
    });
  }

  before(async () => {
    as = await startScriptedIntrospection();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await as.close();
  });

  test('two instances over one shared store: the second finds the first one\'s answer and makes no introspection', async () => {
    const shared = new MemoryTokenCache({ maxEntries: 10 });
    const first = exchangeOver(new AsyncStore(shared));
    const second = exchangeOver(new AsyncStore(shared));
    const jwt = await as.activate('store-shared', { tenant: 'alice' });
    const v1 = await first.authorize('Bearer store-shared', open);
    assert.ok(!(v1 instanceof GatewayError));
    // The write is fire-and-forget: wait for it to land.
    await new Promise((r) => setTimeout(r, 20));
    const v2 = await second.authorize('Bearer store-shared', open);
    assert.ok(!(v2 instanceof GatewayError));
    assert.equal(v2.authorization, `Bearer ${jwt}`);
    assert.equal(v2.claims.tenant, 'alice', 'the cached entry gives the verified claims');
    assert.equal(v2.claims.sub, 'user-1');
    assert.ok(Object.isFrozen(v2.claims));
    assert.equal(as.callsFor('store-shared'), 1);
  });

  test('concurrent callers on a miss share one introspection (single-flight covers the store read)', async () => {
    const store = new AsyncStore(new MemoryTokenCache({ maxEntries: 10 }));
    const ex = exchangeOver(store);
    await as.activate('store-burst', {}, { delayMs: 20 });
    const verdicts = await Promise.all(Array.from({ length: 10 }, () => ex.authorize('Bearer store-burst', open)));
    for (const v of verdicts) assert.ok(!(v instanceof GatewayError));
    assert.equal(as.callsFor('store-burst'), 1);
  });

  test('a store that fails to read is a miss: the token is introspected and allowed, and the failure is reported', async () => {
    const store = new AsyncStore(new MemoryTokenCache({ maxEntries: 10 }));
    store.failReads = true;
    const ex = exchangeOver(store);
    await as.activate('store-read-fails');
    internalErrors.length = 0;
    const v = await ex.authorize('Bearer store-read-fails', open);
    assert.ok(!(v instanceof GatewayError), 'allowed');
    assert.equal(as.callsFor('store-read-fails'), 1);
    assert.equal(internalErrors.length, 1);
  });

  test('a store that fails to write never fails the request, nor leaves an unhandled rejection', async () => {
    const store = new AsyncStore(new MemoryTokenCache({ maxEntries: 10 }));
    store.failWrites = true;
    const ex = exchangeOver(store);
    await as.activate('store-write-fails');
    internalErrors.length = 0;
    let unhandled: unknown;
    const onUnhandled = (e: unknown) => (unhandled = e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const v = await ex.authorize('Bearer store-write-fails', open);
      assert.ok(!(v instanceof GatewayError), 'allowed');
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(unhandled, undefined);
      assert.equal(internalErrors.length, 1, 'the failed write is reported');
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
