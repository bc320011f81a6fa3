import { after, before, beforeEach } from 'node:test';
import { Writable } from 'node:stream';
import { Gateway } from '../../src/proxy/server.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import type { Clock } from '../../src/cache/memory.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from './servers.js';

export interface TestGateway {
  gateway: Gateway;
  url: string;
  port: number;
  /** Every log line written, parsed. */
  logs: Record<string, unknown>[];
  /** Every log line as written, for "never contains" checks. */
  rawLogs(): string;
  close(): Promise<void>;
}

/**
 * Runs the real gateway in-process on a free loopback port, from YAML text,
 * with its logs captured.
 */
export async function startGateway(yaml: string, opts: { env?: Record<string, string>; now?: Clock } = {}): Promise<TestGateway> {
  const config = parseConfig(yaml, { file: 'test.yaml', env: opts.env ?? {} });
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(l);
      cb();
    },
  });
  const logger = createLogger(config.log.level, sink);
  const gateway = new Gateway(config, { logger, ...(opts.now ? { now: opts.now } : {}) });
  const addr = await gateway.listen(0, '127.0.0.1');
  const logs: Record<string, unknown>[] = [];
  return {
    gateway,
    port: addr.port,
    url: `http://127.0.0.1:${addr.port}`,
    get logs() {
      logs.length = 0;
      for (const l of lines) logs.push(JSON.parse(l) as Record<string, unknown>);
      return logs;
    },
    rawLogs: () => lines.join('\n'),
    close: () => gateway.close(),
  };
}

/** A minimal gateway config: `/api` protected (scope `read`), `/public` open. */
export function basicConfig(introspectionUrl: string, upstreamUrl: string, extra = ''): string {
  return `
phantom_token:
  introspection_endpoint: ${introspectionUrl}/introspect
  client_id: gateway-client
  client_secret: "s3cret:&=+ x"
  scope: read
routes:
  - path: /api
    upstream: ${upstreamUrl}
  - path: /public
    upstream: ${upstreamUrl}
    phantom_token: false
${extra}`;
}

/** A scripted introspection endpoint, an echo upstream and a gateway between them. */
export interface Stack {
  as: ScriptedIntrospection;
  api: EchoUpstream;
  gw: TestGateway;
  close(): Promise<void>;
}

/**
 * Starts the usual trio for a suite: `configure` gets the two peers and
 * returns the gateway's YAML.
 */
export async function startStack(configure: (as: ScriptedIntrospection, api: EchoUpstream) => string, opts: { now?: Clock } = {}): Promise<Stack> {
  const as = await startScriptedIntrospection();
  const api = await startEchoUpstream();
  const gw = await startGateway(configure(as, api), opts);
  return {
    as,
    api,
    gw,
    close: async () => {
      await gw.close();
      await as.close();
      await api.close();
    },
  };
}

/**
 * `startStack` for the enclosing suite: started before its tests, closed
 * after them, with the recorded calls and requests cleared before each test.
 * The returned object's fields are set once the suite's `before` has run.
 */
export function suiteStack(configure: (as: ScriptedIntrospection, api: EchoUpstream) => string): Stack {
  const stack = {} as Stack;
  before(async () => {
    Object.assign(stack, await startStack(configure));
  });
  after(() => stack.close());
  beforeEach(() => {
    stack.as.calls.length = 0;
    stack.api.received.length = 0;
  });
  return stack;
}
