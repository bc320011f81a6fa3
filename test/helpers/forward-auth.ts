import { Writable } from 'node:stream';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import type { Guards } from '../../src/core/guards.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { createLogger } from '../../src/observability/logger.js';

export interface TestForwardAuth {
  listener: ForwardAuthListener;
  url: string;
  port: number;
  /** Decision requests received. */
  readonly requests: number;
  /** Every log line written, parsed. */
  readonly logs: Record<string, unknown>[];
  rawLogs(): string;
  close(): Promise<void>;
}

/** Runs the forward-auth listener in-process on a free loopback port, from YAML text, with its logs captured. */
export async function startForwardAuth(yaml: string, opts: { guards?: Guards } = {}): Promise<TestForwardAuth> {
  const config = parseConfig(yaml, { file: 'test.yaml', env: {} });
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(l);
      cb();
    },
  });
  const logger = createLogger(config.log.level, sink);
  const listener = new ForwardAuthListener(config, { logger, ...(opts.guards ? { guards: opts.guards } : {}) });
  let requests = 0;
  listener.server.on('request', () => requests++);
  const addr = await listener.listen(0, '127.0.0.1');
  return {
    listener,
    port: addr.port,
    url: `http://127.0.0.1:${addr.port}`,
    get requests() {
      return requests;
    },
    get logs() {
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    rawLogs: () => lines.join('\n'),
    close: () => listener.close(),
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One decision request. `headers` is a flat name/value list (a name may
 * repeat); `path` is the decision request's own target (default `/`).
 */
export async function ask(url: string, headers: string[], opts: { method?: string; path?: string } = {}): Promise<Answer> {
  const res = await request(`${url}${opts.path ?? '/'}`, { method: (opts.method ?? 'GET') as 'GET', headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** The headers Traefik, Caddy and APISIX send: `X-Forwarded-Method` and `X-Forwarded-Uri`. */
export function forwarded(method: string, uri: string, authorization?: string | string[]): string[] {
  const h = ['x-forwarded-method', method, 'x-forwarded-uri', uri];
  for (const a of authorization === undefined ? [] : Array.isArray(authorization) ? authorization : [authorization]) h.push('authorization', a);
  return h;
}

/** The headers an NGINX `auth_request` location sets: `X-Original-Method` and `X-Original-URI`. */
export function original(method: string, uri: string, authorization?: string): string[] {
  const h = ['x-original-method', method, 'x-original-uri', uri];
  if (authorization !== undefined) h.push('authorization', authorization);
  return h;
}
