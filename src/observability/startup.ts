import { createRequire } from 'node:module';
import { loggableRedisUrl } from '../cache/redis/options.js';
import type { GatewayConfig } from '../config/schema.js';

/** One listener a process opened: which, and where. */
export interface StartedListener {
  readonly listener: 'proxy' | 'forward_auth' | 'envoy_grpc' | (string & {});
  readonly host: string;
  readonly port: number;
}

/** The package's version (from package.json, beside `src/` and `dist/` alike). */
export function gatewayVersion(): string {
  try {
    return (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** A URL as it may be logged: origin and path, never a query string (it may carry a key). */
export function loggable(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
}

/**
 * The fields of the one "phantom-gateway started" line: version, config
 * file, routes (path, upstream origin, protected or open), the
 * introspection endpoints (origin and path; the issuer when the endpoint is
 * discovered from it) and the listeners.
 */
export function startupFields(config: GatewayConfig, opts: { configFile: string | undefined; listeners: readonly StartedListener[] }): Record<string, unknown> {
  const endpoints = new Map<string, Record<string, string>>();
  const routes = config.routes.map((r) => {
    const pt = r.phantom_token;
    if (pt !== false) {
      const e: Record<string, string> =
        pt.introspection_endpoint !== undefined ? { endpoint: loggable(pt.introspection_endpoint) } : { issuer: pt.issuer!, endpoint: 'discovered' };
      endpoints.set(JSON.stringify(e), e);
    }
    return { path: r.path, ...(r.upstream !== undefined ? { upstream: new URL(r.upstream).origin } : {}), protected: pt !== false };
  });
  return {
    version: gatewayVersion(),
    config: opts.configFile,
    routes,
    introspection: [...endpoints.values()],
    listeners: opts.listeners,
    workers: config.workers,
    ...(config.cache.redis !== undefined ? { shared_cache: loggableRedisUrl(config.cache.redis.url) } : {}),
  };
}
