/*
 * Adapters of the shared front-door suite: each turns a FrontDoorRequest
 * into what the client, and the API behind, would see.
 */
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { createGuards } from '../../src/core/guards.js';
import { decide } from '../../src/core/decide.js';
import { certThumbprint } from '../../src/net/client-cert.js';
import { renderRefusal } from '../../src/core/render.js';
import { createLogger } from '../../src/observability/logger.js';
import { startGateway } from '../helpers/gateway.js';
import { ask, startForwardAuth } from '../helpers/forward-auth.js';
import { freePort, startCaddy } from '../helpers/caddy.js';
import { findProgram } from '../helpers/services.js';
import { skip as nginxSkip, startGeneratedNginx } from '../helpers/nginx.js';
import type { EchoUpstream } from '../helpers/servers.js';
import type { FrontDoor, FrontDoorRequest, Outcome } from './behaviour.case.js';
import { startExpressApp, startFastifyApp, type StartApp } from '../middleware/apps.js';

/**
 * Flat header list of a FrontDoorRequest (Authorization and DPoP once per
 * value); with `clientCertHeader`, its certificate as a trusted peer passes
 * it on (RFC 9440 Client-Cert).
 */
export function headerList(req: FrontDoorRequest, clientCertHeader = false): string[] {
  const out: string[] = [];
  const auth = req.authorization === undefined ? [] : Array.isArray(req.authorization) ? req.authorization : [req.authorization];
  for (const a of auth) out.push('authorization', a);
  for (const p of req.dpop ?? []) out.push('dpop', p);
  if (clientCertHeader && req.clientCert !== undefined) out.push('client-cert', `:${req.clientCert.toString('base64')}:`);
  for (const [k, v] of Object.entries(req.headers ?? {})) out.push(k, v);
  return out;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

/** A client's view of an HTTP answer; on a 2xx, what the echo upstream last received. */
export async function httpOutcome(url: string, req: FrontDoorRequest, api: EchoUpstream | undefined, clientCertHeader = false): Promise<Outcome> {
  const before = api?.received.length ?? 0;
  const res = await request(url + req.target, { method: (req.method ?? 'GET') as 'GET', headers: headerList(req, clientCertHeader) });
  const text = await res.body.text();
  const ok = res.statusCode >= 200 && res.statusCode < 300;
  let forwarded: string | null | undefined;
  let forwardedDpop: string | null | undefined;
  let dpopVerified: string | null | undefined;
  if (ok && api !== undefined) {
    const seen = api.received.length > before ? api.received[api.received.length - 1] : undefined;
    forwarded = seen === undefined ? undefined : (one(seen.headers.authorization) ?? null);
    forwardedDpop = seen === undefined ? undefined : (one(seen.headers.dpop) ?? null);
    dpopVerified = seen === undefined ? undefined : (one(seen.headers['x-dpop-verified']) ?? null);
  }
  return {
    status: res.statusCode,
    challenge: one(res.headers['www-authenticate']),
    retryAfter: one(res.headers['retry-after']),
    body: ok || text === '' ? undefined : safeJson(text),
    forwarded,
    forwardedDpop,
    dpopVerified,
    dpopNonce: one(res.headers['dpop-nonce']),
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The reverse proxy. */
export const proxyDoor: FrontDoor = {
  name: 'reverse proxy',
  // The test client is a trusted proxy in the sender suite: its Client-Cert is believed.
  certificates: true,
  async start(yaml, { api }) {
    const gw = await startGateway(yaml);
    return { origin: gw.url, call: (req) => httpOutcome(gw.url, req, api, true), close: () => gw.close() };
  },
};

/** The origin the library and the forward-auth listener are told the client addressed. */
const PUBLIC_ORIGIN = 'https://api.example.test';

/** The library: createGuards() + decide() + renderRefusal(), in process. */
export const libraryDoor: FrontDoor = {
  name: 'library decide()',
  certificates: true,
  async start(yaml) {
    const config = parseConfig(yaml, { file: 'test.yaml', env: {} });
    const guards = createGuards(config, { logger: createLogger('silent') });
    return {
      origin: PUBLIC_ORIGIN,
      async call(req) {
        const auth = req.authorization === undefined ? [] : Array.isArray(req.authorization) ? req.authorization : [req.authorization];
        const h = req.headers ?? {};
        const q = req.target.indexOf('?');
        const d = await decide(guards, {
          method: req.method ?? 'GET',
          target: req.target,
          authorization: auth,
          preflight: h.origin !== undefined && h['access-control-request-method'] !== undefined,
          clientAddress: '127.0.0.1',
          dpop: req.dpop ?? [],
          url: PUBLIC_ORIGIN + (q === -1 ? req.target : req.target.slice(0, q)),
          certThumbprint: req.clientCert === undefined ? undefined : certThumbprint(req.clientCert),
        });
        if (d.allow) {
          const proof = d.token?.dpop;
          return {
            status: 200,
            challenge: undefined,
            retryAfter: undefined,
            body: undefined,
            forwarded: d.token?.authorization ?? null,
            forwardedDpop: proof?.proof ?? null,
            dpopVerified: proof?.jkt ?? null,
          };
        }
        const r = renderRefusal(d.error);
        return { status: r.status, challenge: r.headers['www-authenticate'], retryAfter: r.headers['retry-after'], body: JSON.parse(r.body), forwarded: undefined, dpopNonce: r.headers['dpop-nonce'] };
      },
      close: () => guards.close(),
    };
  },
};

/** The forward-auth listener, asked as Traefik/Caddy ask (X-Forwarded-Method/Uri); "forwarded" is the Authorization of its allow. */
export const forwardAuthDoor: FrontDoor = {
  name: 'forward-auth listener (HTTP)',
  certificates: true,
  async start(yaml) {
    const fa = await startForwardAuth(`${yaml}\nforward_auth: { listen: { host: 127.0.0.1, port: 0 } }\n`);
    const host = new URL(PUBLIC_ORIGIN).host;
    return {
      origin: PUBLIC_ORIGIN,
      async call(req) {
        // As Traefik asks: the original method, URI, scheme and host, and the client's headers.
        const h = ['x-forwarded-method', req.method ?? 'GET', 'x-forwarded-uri', req.target, 'x-forwarded-proto', 'https', 'x-forwarded-host', host, ...headerList(req, true)];
        const a = await ask(fa.url, h);
        const ok = a.status >= 200 && a.status < 300;
        // Traefik's authResponseHeaders (Authorization, DPoP, X-DPoP-Verified): what the answer lacks is removed.
        return {
          status: a.status,
          challenge: one(a.headers['www-authenticate']),
          retryAfter: one(a.headers['retry-after']),
          body: ok || a.body === '' ? undefined : safeJson(a.body),
          forwarded: ok ? (one(a.headers.authorization) ?? null) : undefined,
          forwardedDpop: ok ? (one(a.headers.dpop) ?? null) : undefined,
          dpopVerified: ok ? (one(a.headers['x-dpop-verified']) ?? null) : undefined,
          dpopNonce: one(a.headers['dpop-nonce']),
        };
      },
      close: () => fa.close(),
    };
  },
};

const caddy = findProgram('caddy', 'caddy');

/** A real Caddy (forward_auth) in front of the echo upstream, asking the forward-auth listener. */
export const caddyDoor: FrontDoor = {
  name: 'Caddy forward_auth + forward-auth listener',
  skip: caddy.skip,
  async start(yaml, { api }) {
    const fa = await startForwardAuth(`${yaml}\nforward_auth: { listen: { host: 127.0.0.1, port: 0 } }\n`);
    const port = await freePort();
    const running = await startCaddy(
      caddy.path!,
      `{
	auto_https off
	admin off
}
http://127.0.0.1:${port} {
	route {
		forward_auth 127.0.0.1:${fa.port} {
			uri /
			# A client's certificate headers are never passed on as the gateway's.
			header_up -Client-Cert
			header_up -Client-Cert-Chain
			copy_headers Authorization DPoP X-DPoP-Verified
		}
		@unset header_regexp Authorization ^\\{http\\.reverse_proxy\\.header\\.
		request_header @unset -Authorization
		@unset_dpop header_regexp DPoP ^\\{http\\.reverse_proxy\\.header\\.
		request_header @unset_dpop -DPoP
		@unset_verified header_regexp X-DPoP-Verified ^\\{http\\.reverse_proxy\\.header\\.
		request_header @unset_verified -X-DPoP-Verified
		reverse_proxy 127.0.0.1:${api.port}
	}
}
`,
    );
    return {
      origin: `http://127.0.0.1:${port}`,
      call: (req) => httpOutcome(`http://127.0.0.1:${port}`, req, api),
      close: async () => {
        await running.close();
        await fa.close();
      },
    };
  },
};

/** A middleware in a real app; "forwarded" is the Authorization its handler received. */
function middlewareDoor(name: string, startApp: StartApp): FrontDoor {
  return {
    name,
    async start(yaml) {
      const app = await startApp({ config: parseConfig(yaml, { file: 'test.yaml', env: {} }) });
      return {
        origin: app.url,
        async call(req) {
          const res = await request(app.url + req.target, { method: (req.method ?? 'GET') as 'GET', headers: headerList(req) });
          const text = await res.body.text();
          const ok = res.statusCode >= 200 && res.statusCode < 300;
          const seen = ok ? (safeJson(text) as { authorization?: string; dpop?: string; dpopVerified?: string }) : undefined;
          return {
            status: res.statusCode,
            challenge: one(res.headers['www-authenticate']),
            retryAfter: one(res.headers['retry-after']),
            body: ok || text === '' ? undefined : safeJson(text),
            forwarded: seen === undefined ? undefined : (seen.authorization ?? null),
            forwardedDpop: seen === undefined ? undefined : (seen.dpop ?? null),
            dpopVerified: seen === undefined ? undefined : (seen.dpopVerified ?? null),
            dpopNonce: one(res.headers['dpop-nonce']),
          };
        },
        close: () => app.close(),
      };
    },
  };
}

/** The Express middleware (the guards built from the configuration). */
export const expressDoor = middlewareDoor('Express middleware', startExpressApp);

/** The Fastify plugin (the guards built from the configuration, closed with the app). */
export const fastifyDoor = middlewareDoor('Fastify plugin', startFastifyApp);

/** A real NGINX running the file `phantom-gateway nginx-conf` generates (auth_request + decision cache) in front of the echo upstream, asking the forward-auth listener. */
export const nginxDoor: FrontDoor = {
  name: 'NGINX (generated nginx-conf) + forward-auth listener',
  skip: nginxSkip,
  // NGINX's parser refuses a second Authorization itself (400, JSON "Bad request"), before any decision.
  duplicateAuthorizationStatus: 400,
  async start(yaml, { api }) {
    const fa = await startForwardAuth(`${yaml}\nforward_auth: { listen: { host: 127.0.0.1, port: 0 } }\n`);
    const config = parseConfig(`${yaml}\nforward_auth: { listen: { host: 127.0.0.1, port: ${fa.port} } }\n`, { file: 'test.yaml', env: {} });
    let started: Awaited<ReturnType<typeof startGeneratedNginx>>;
    try {
      started = await startGeneratedNginx(config);
    } catch (err) {
      await fa.close();
      throw err;
    }
    const { instance: running, port } = started;
    return {
      origin: `http://127.0.0.1:${port}`,
      call: (req) => httpOutcome(`http://127.0.0.1:${port}`, req, api),
      close: async () => {
        await running.stop();
        await fa.close();
      },
    };
  },
};
