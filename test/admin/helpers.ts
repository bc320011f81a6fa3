import { Writable } from 'node:stream';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { createGuards, type Guards } from '../../src/core/guards.js';
import { createLogger } from '../../src/observability/logger.js';
import { metricsFor, type GatewayMetrics } from '../../src/observability/metrics.js';
import { Gateway } from '../../src/proxy/server.js';
import { startAdmin, type AdminHandle } from '../../src/admin/start.js';
import { parsePrometheus, type Family } from './prometheus.js';

/** The gateway as the CLI runs one process of it, in-process: proxy, guards, metrics and admin listener, logs captured. */
export interface AdminStack {
  gateway: Gateway;
  guards: Guards;
  metrics: GatewayMetrics;
  admin: AdminHandle;
  url: string;
  adminUrl: string;
  rawLogs(): string;
  scrape(): Promise<Map<string, Family>>;
  close(): Promise<void>;
}

export async function startAdminStack(yaml: string): Promise<AdminStack> {
  const config = parseConfig(yaml, { file: 'test.yaml', env: {} });
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const logger = createLogger(config.log.level, sink);
  const metrics = metricsFor(config)!;
  const guards = createGuards(config, { logger, metrics });
  const gateway = new Gateway(config, { logger, guards });
  const addr = await gateway.listen(0, '127.0.0.1');
  const admin = (await startAdmin(config, { logger, guards: () => guards, metrics }))!;
  const adminUrl = `http://127.0.0.1:${admin.address!.port}`;
  return {
    gateway,
    guards,
    metrics,
    admin,
    url: `http://127.0.0.1:${addr.port}`,
    adminUrl,
    rawLogs: () => lines.join(''),
    scrape: async () => {
      const r = await request(`${adminUrl}/metrics`);
      if (r.statusCode !== 200) throw new Error(`/metrics answered ${r.statusCode}`);
      return parsePrometheus(await r.body.text());
    },
    close: async () => {
      admin.drain();
      await gateway.close();
      await guards.close();
      await admin.close();
    },
  };
}

/** GET (or another method) on the admin listener: status, headers, parsed JSON body when there is one. */
export async function adminCall(url: string, opts: { method?: string; authorization?: string | string[]; contentType?: string; body?: string } = {}) {
  const headers: string[] = [];
  for (const a of opts.authorization === undefined ? [] : Array.isArray(opts.authorization) ? opts.authorization : [opts.authorization]) headers.push('authorization', a);
  if (opts.contentType !== undefined) headers.push('content-type', opts.contentType);
  const r = await request(url, { method: (opts.method ?? 'GET') as 'GET', headers, ...(opts.body !== undefined ? { body: opts.body } : {}) });
  const text = await r.body.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.statusCode, headers: r.headers, text, json: json as Record<string, unknown> | undefined };
}
