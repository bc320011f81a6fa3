/*
 * The review's NGINX stack: scripted introspection endpoint, echo upstream,
 * the real forward-auth listener, and a real NGINX running the generated
 * configuration (as test/forward-auth/nginx-conf.test.ts builds it), with
 * an optional extra line for the `http {}` context (an operator's setting).
 */
import { parseConfig } from '../../src/config/load.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { createLogger } from '../../src/observability/logger.js';
import { freePort } from './cli.js';
import { MODULES, nginx, skip, startGeneratedNginx, type NginxInstance } from './nginx.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from './servers.js';

export { MODULES, nginx, skip };

export const reviewYaml = (as: string, api: string, faPort: number) => `
phantom_token:
  introspection_endpoint: ${as}/introspect
  client_id: review
  client_secret: s3cret
  scope: read
routes:
  - path: /api
    upstream: ${api}
  - path: /public
    upstream: ${api}
    phantom_token: false
forward_auth:
  listen: { host: 127.0.0.1, port: ${faPort} }
  identity_headers: { client_id: X-User-Id }
log: { level: silent }
`;

export interface ReviewStack {
  as: ScriptedIntrospection;
  api: EchoUpstream;
  listener: ForwardAuthListener;
  nginx: NginxInstance;
  port: number;
  url: string;
  decisionCalls: number;
  stop(): Promise<void>;
}

export async function startReviewStack(opts: { httpExtra?: string } = {}): Promise<ReviewStack> {
  const as = await startScriptedIntrospection();
  const api = await startEchoUpstream();
  const faPort = await freePort();
  const config = parseConfig(reviewYaml(as.url, api.url, faPort), { file: 'review.yaml', env: {} });
  const listener = new ForwardAuthListener(config, { logger: createLogger('silent') });
  await listener.listen();
  let started: { instance: NginxInstance; port: number };
  try {
    started = await startGeneratedNginx(config, {}, opts.httpExtra);
  } catch (err) {
    await listener.close();
    await as.close();
    await api.close();
    throw err;
  }
  const { instance, port } = started;
  const stack: ReviewStack = {
    as,
    api,
    listener,
    nginx: instance,
    port,
    url: `http://127.0.0.1:${port}`,
    decisionCalls: 0,
    stop: async () => {
      await instance.stop();
      await listener.close();
      await as.close();
      await api.close();
    },
  };
  listener.server.on('request', () => stack.decisionCalls++);
  return stack;
}

