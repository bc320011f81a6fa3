/*
 * The review's NGINX stack: scripted introspection endpoint, echo upstream,
 * the real forward-auth listener, and a real NGINX running the generated
 * configuration (as test/forward-auth/nginx-conf.test.ts builds it), with
 * an optional extra line for the `http {}` context (an operator's setting).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseConfig } from '../../src/config/load.js';
import { ForwardAuthListener } from '../../src/forward-auth/http.js';
import { NGINX_MODULES, nginxConf } from '../../src/forward-auth/nginx-conf.js';
import { createLogger } from '../../src/observability/logger.js';
import { freePort } from './cli.js';
import { nginxPrefix, nginxTest, startNginx, type NginxInstance } from './nginx.js';
import { startEchoUpstream, startScriptedIntrospection, type EchoUpstream, type ScriptedIntrospection } from './servers.js';
import { findNginxModule, findProgram } from './services.js';

export const nginx = findProgram('nginx', 'nginx');
const setMisc = findNginxModule('ngx_http_set_misc_module.so', 'libnginx-mod-http-set-misc');
const ndk = findNginxModule('ndk_http_module.so', 'libnginx-mod-http-ndk');
export const skip = nginx.skip || setMisc.skip || ndk.skip;
export const MODULES = NGINX_MODULES.map((m) => `/usr/lib/nginx/${m}`);

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
  const port = await freePort();
  const prefix = nginxPrefix((cachePath) => nginxConf(config, { listen: { host: '127.0.0.1', port }, cachePath }), MODULES);
  if (opts.httpExtra !== undefined) {
    const conf = readFileSync(prefix.conf, 'utf8').replace('http {\n', `http {\n  ${opts.httpExtra}\n`);
    writeFileSync(prefix.conf, conf);
  }
  let instance: NginxInstance;
  try {
    const t = nginxTest(nginx.path!, prefix.dir);
    assert.equal(t.status, 0, t.output);
    instance = await startNginx(nginx.path!, prefix, port);
  } catch (err) {
    prefix.remove();
    await listener.close();
    await as.close();
    await api.close();
    throw err;
  }
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

