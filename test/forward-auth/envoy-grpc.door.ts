/*
 * Envoy's gRPC check as a front door of the shared behaviour suite
 * (test/frontdoors/behaviour.case.ts on main): `frontDoorSuite(envoyGrpcDoor)`.
 * Structurally typed here so that this file stands on its own until the
 * branches meet. A request becomes the CheckRequest Envoy's HTTP filter would
 * send (several Authorization values joined with `,`, as Envoy does), and the
 * CheckResponse what the client, and the API behind Envoy, would see.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { parseConfig } from '../../src/config/load.js';
import { createGuards } from '../../src/core/guards.js';
import { EnvoyAuthService, EXTERNAL_AUTH_PROTO, PROTO_LOADER_OPTIONS } from '../../src/forward-auth/envoy-grpc.js';
import { createLogger } from '../../src/observability/logger.js';

interface DoorRequest {
  method?: string;
  target: string;
  authorization?: string | string[];
  headers?: Record<string, string>;
  dpop?: string[];
  clientCert?: Buffer;
}

interface DoorOutcome {
  status: number;
  challenge: string | undefined;
  retryAfter: string | undefined;
  body: unknown;
  forwarded: string | null | undefined;
  forwardedDpop?: string | null | undefined;
  dpopVerified?: string | null | undefined;
  dpopNonce?: string | undefined;
}

interface HeaderOption {
  header: { key: string; value: string };
}

interface Answer {
  status: { code: number };
  ok_response?: { headers: HeaderOption[]; headers_to_remove?: string[] } | null;
  denied_response?: { status: { code: number }; headers: HeaderOption[]; body: string } | null;
}

const pkg = protoLoader.loadSync(EXTERNAL_AUTH_PROTO, { ...PROTO_LOADER_OPTIONS, defaults: true });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const Client = (grpc.loadPackageDefinition(pkg) as any).envoy.service.auth.v3.Authorization as grpc.ServiceClientConstructor;

const get = (headers: HeaderOption[], key: string) => headers.find((h) => h.header.key === key)?.header.value;

/** A certificate as Envoy puts it in `attributes.source.certificate`: URL-encoded PEM. */
function envoyCertificate(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return encodeURIComponent(`-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`);
}

export const envoyGrpcDoor = {
  name: 'Envoy gRPC ext_authz',
  certificates: true,
  async start(yaml: string): Promise<{ origin: string; call(req: DoorRequest): Promise<DoorOutcome>; close(): Promise<void> }> {
    const config = parseConfig(yaml, { file: 'test.yaml', env: {} });
    const logger = createLogger('silent');
    const guards = createGuards(config, { logger });
    const service = new EnvoyAuthService(config, { logger, guards });
    const { port } = await service.listen(0, '127.0.0.1');
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    return {
      origin: 'http://api.example.com',
      async call(req) {
        const method = req.method ?? 'GET';
        const auth = req.authorization === undefined ? [] : Array.isArray(req.authorization) ? req.authorization : [req.authorization];
        const headers: Record<string, string> = { ':authority': 'api.example.com', ':method': method, ':path': req.target, ...req.headers };
        if (auth.length > 0) headers.authorization = auth.join(',');
        // Envoy joins repeated headers with ",".
        if (req.dpop !== undefined && req.dpop.length > 0) headers.dpop = req.dpop.join(',');
        const check = {
          attributes: {
            source: {
              address: { socket_address: { address: '127.0.0.1', port_value: 40000 } },
              ...(req.clientCert === undefined ? {} : { certificate: envoyCertificate(req.clientCert) }),
            },
            request: { http: { method, path: req.target, host: 'api.example.com', scheme: 'http', protocol: 'HTTP/1.1', headers } },
          },
        };
        const r = await new Promise<Answer>((resolve, reject) =>
          // eslint-disable-next-line @typescript-eslint/no-explicit-any
          (client as any).Check(check, { deadline: Date.now() + 10_000 }, (err: Error | null, res: Answer) => (err ? reject(err) : resolve(res))),
        );
        if (r.status.code === 0) {
          // Envoy forwards the request with the headers the answer sets; the rest as the client sent them.
          const ok = r.ok_response ?? { headers: [] };
          const removed = new Set(ok.headers_to_remove ?? []);
          const after = (name: string) => get(ok.headers, name) ?? (removed.has(name) ? undefined : headers[name]) ?? null;
          return { status: 200, challenge: undefined, retryAfter: undefined, body: undefined, forwarded: after('authorization'), forwardedDpop: after('dpop'), dpopVerified: after('x-dpop-verified') };
        }
        const denied = r.denied_response!;
        return {
          status: denied.status.code,
          challenge: get(denied.headers, 'www-authenticate'),
          retryAfter: get(denied.headers, 'retry-after'),
          body: JSON.parse(denied.body) as unknown,
          forwarded: undefined,
          dpopNonce: get(denied.headers, 'dpop-nonce'),
        };
      },
      async close() {
        client.close();
        await service.close();
        await guards.close();
      },
    };
  },
};
