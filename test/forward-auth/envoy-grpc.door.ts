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
}

interface DoorOutcome {
  status: number;
  challenge: string | undefined;
  retryAfter: string | undefined;
  body: unknown;
  forwarded: string | null | undefined;
}

interface HeaderOption {
  header: { key: string; value: string };
}

interface Answer {
  status: { code: number };
  ok_response?: { headers: HeaderOption[] } | null;
  denied_response?: { status: { code: number }; headers: HeaderOption[]; body: string } | null;
}

const pkg = protoLoader.loadSync(EXTERNAL_AUTH_PROTO, { ...PROTO_LOADER_OPTIONS, defaults: true });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const Client = (grpc.loadPackageDefinition(pkg) as any).envoy.service.auth.v3.Authorization as grpc.ServiceClientConstructor;

const get = (headers: HeaderOption[], key: string) => headers.find((h) => h.header.key === key)?.header.value;

export const envoyGrpcDoor = {
  name: 'Envoy gRPC ext_authz',
  async start(yaml: string): Promise<{ call(req: DoorRequest): Promise<DoorOutcome>; close(): Promise<void> }> {
    const config = parseConfig(yaml, { file: 'test.yaml', env: {} });
    const logger = createLogger('silent');
    const guards = createGuards(config, { logger });
    const service = new EnvoyAuthService(config, { logger, guards });
    const { port } = await service.listen(0, '127.0.0.1');
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    return {
      async call(req) {
        const method = req.method ?? 'GET';
        const auth = req.authorization === undefined ? [] : Array.isArray(req.authorization) ? req.authorization : [req.authorization];
        const headers: Record<string, string> = { ':authority': 'api.example.com', ':method': method, ':path': req.target, ...req.headers };
        if (auth.length > 0) headers.authorization = auth.join(',');
        const check = {
          attributes: {
            source: { address: { socket_address: { address: '127.0.0.1', port_value: 40000 } } },
            request: { http: { method, path: req.target, host: 'api.example.com', scheme: 'http', protocol: 'HTTP/1.1', headers } },
          },
        };
        const r = await new Promise<Answer>((resolve, reject) =>
          // eslint-disable-next-line @typescript-eslint/no-explicit-any
          (client as any).Check(check, { deadline: Date.now() + 10_000 }, (err: Error | null, res: Answer) => (err ? reject(err) : resolve(res))),
        );
        if (r.status.code === 0) {
          // Envoy forwards the request with the headers the answer sets; the rest as the client sent them.
          const set = get(r.ok_response?.headers ?? [], 'authorization');
          return { status: 200, challenge: undefined, retryAfter: undefined, body: undefined, forwarded: set ?? headers.authorization ?? null };
        }
        const denied = r.denied_response!;
        return {
          status: denied.status.code,
          challenge: get(denied.headers, 'www-authenticate'),
          retryAfter: get(denied.headers, 'retry-after'),
          body: JSON.parse(denied.body) as unknown,
          forwarded: undefined,
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
