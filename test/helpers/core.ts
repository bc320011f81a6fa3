/*
 * Helpers for the core tests (bearer parsing, token exchange, introspection
 * answers): a movable clock, a config builder, a small HTTP call, and a
 * TokenExchange wired to a real introspection client for unit tests.
 */
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { MemoryTokenCache, type Clock } from '../../src/cache/memory.js';
import type { TokenEntry } from '../../src/cache/entry.js';
import { TokenExchange } from '../../src/core/exchange.js';
import { IntrospectionClient, type IntrospectionWarn } from '../../src/introspection/client.js';

/** A clock tests move by hand; starts at the real time. */
export interface FakeClock {
  readonly now: Clock;
  /** Sets the clock to `Date.now() + offsetMs` (real time plus an offset). */
  reset(offsetMs?: number): void;
  advance(ms: number): void;
}

export function fakeClock(): FakeClock {
  let t = Date.now();
  return {
    now: () => t,
    reset: (offsetMs = 0) => {
      t = Date.now() + offsetMs;
    },
    advance: (ms) => {
      t += ms;
    },
  };
}

/**
 * A gateway configuration as JSON (which is YAML): top-level `phantom_token`
 * block plus the given routes, each pointing at `upstream`.
 */
export function gatewayConfig(opts: {
  introspection: string;
  upstream: string;
  phantom?: Record<string, unknown>;
  routes: Array<{ path: string; phantom_token?: false | Record<string, unknown> }>;
  extra?: Record<string, unknown>;
}): string {
  return JSON.stringify(
    {
      phantom_token: {
        introspection_endpoint: `${opts.introspection}/introspect`,
        client_id: 'gateway-client',
        client_secret: 'gateway-secret',
        ...opts.phantom,
      },
      routes: opts.routes.map((r) => ({ upstream: opts.upstream, ...r })),
      ...opts.extra,
    },
    null,
    2,
  );
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request; `authorization` as an array sends the header several times. */
export async function call(url: string, authorization?: string | string[], method: 'GET' | 'HEAD' = 'GET'): Promise<Reply> {
  const headers: string[] = [];
  for (const a of authorization === undefined ? [] : Array.isArray(authorization) ? authorization : [authorization]) headers.push('authorization', a);
  const res = await request(url, { method, headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A MemoryTokenCache that remembers every key and entry it was asked to store. */
export class RecordingCache extends MemoryTokenCache {
  readonly stored: Array<{ key: string; entry: TokenEntry }> = [];
  /** Largest `size` seen right after a `set`. */
  maxSize = 0;

  override set(key: string, entry: TokenEntry): void {
    this.stored.push({ key, entry });
    super.set(key, entry);
    this.maxSize = Math.max(this.maxSize, this.size);
  }
}

export interface CoreExchange {
  exchange: TokenExchange;
  cache: RecordingCache;
  client: IntrospectionClient;
  warnings: Parameters<IntrospectionWarn>[0][];
  close(): Promise<void>;
}

/** A TokenExchange over a real IntrospectionClient talking to `introspectionUrl`. */
export function coreExchange(
  introspectionUrl: string,
  opts: { maxEntries?: number; tokenCacheSeconds?: number; negativeCacheSeconds?: number; namespace?: string; now?: Clock } = {},
): CoreExchange {
  const warnings: CoreExchange['warnings'] = [];
  const client = new IntrospectionClient(
    {
      endpoint: new URL(`${introspectionUrl}/introspect`),
      clientId: 'gateway-client',
      clientSecret: 'gateway-secret',
      timeoutMs: 2000,
      verifySsl: true,
      maxAnswerBytes: 65536,
      connections: 8,
    },
    (e) => warnings.push(e),
  );
  const cache = new RecordingCache({ maxEntries: opts.maxEntries ?? 100, ...(opts.now ? { now: opts.now } : {}) });
  const exchange = new TokenExchange({
    introspector: client,
    cache,
    namespace: opts.namespace ?? `${introspectionUrl}/introspect\ngateway-client`,
    tokenCacheSeconds: opts.tokenCacheSeconds ?? 300,
    negativeCacheSeconds: opts.negativeCacheSeconds ?? 10,
    maxTokenLength: 4096,
    ...(opts.now ? { now: opts.now } : {}),
  });
  let closed: Promise<void> | undefined;
  return { exchange, cache, client, warnings, close: () => (closed ??= client.close()) };
}
