/*
 * A stand-in forward-auth decision listener for the NGINX tests, written to
 * the contract of src/forward-auth/http.ts (issue 9) over the real engine
 * (`decide`, `renderRefusal`), with its calls counted: the original request
 * from X-Original-Method / X-Original-URI; allow = 200 with
 * `X-Accel-Expires` first, then `Authorization: Bearer <jwt>` and the
 * identity headers; deny = the rendered refusal with `X-Accel-Expires` of the
 * decision's TTL when it has one.
 */
import { createServer, type IncomingMessage } from 'node:http';
import { decide } from '../../src/core/decide.js';
import type { Guards } from '../../src/core/guards.js';
import { renderRefusal } from '../../src/core/render.js';
import { listen, type Started } from './servers.js';

export interface DecisionServer extends Started {
  /** Decision requests received. */
  calls: Array<{ method: string | undefined; uri: string | undefined; headers: IncomingMessage['headers'] }>;
  /** Connections accepted (keep-alive from NGINX keeps this small). */
  connections: number;
}

/** `identity`: claim name -> header name, as `forward_auth.identity_headers`. */
export async function startDecisionServer(guards: Guards, identity: Record<string, string> = {}): Promise<DecisionServer> {
  const calls: DecisionServer['calls'] = [];
  const server = createServer(async (req, res) => {
    const method = req.headers['x-original-method'] as string | undefined;
    const uri = req.headers['x-original-uri'] as string | undefined;
    calls.push({ method, uri, headers: req.headers });
    const authorization: string[] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'authorization') authorization.push(req.rawHeaders[i + 1]!);
    const d = await decide(guards, {
      method: method ?? req.method!,
      target: uri ?? req.url!,
      authorization,
      preflight: req.headers.origin !== undefined && req.headers['access-control-request-method'] !== undefined,
      methodOverride: ['x-http-method-override', 'x-http-method', 'x-method-override'].some((h) => req.headers[h] !== undefined),
      clientAddress: req.socket.remoteAddress ?? '',
    });
    if (d.allow) {
      const headers: Array<[string, string]> = [['X-Accel-Expires', String(d.ttl)]];
      if (d.token) {
        headers.push(['Authorization', d.token.authorization]);
        for (const [claim, h] of Object.entries(identity)) {
          const v = (d.token.claims as Record<string, unknown>)[claim];
          if (typeof v === 'string') headers.push([h, v]);
        }
      }
      res.writeHead(200, [...headers.flat(), 'Content-Length', '0']);
      res.end();
      return;
    }
    const r = renderRefusal(d.error);
    const headers: string[] = d.ttl > 0 ? ['X-Accel-Expires', String(d.ttl)] : [];
    for (const [k, v] of Object.entries(r.headers)) headers.push(k, v);
    res.writeHead(r.status, headers);
    res.end(r.body);
  });
  const self = Object.assign(await listen(server), { calls, connections: 0 });
  server.on('connection', () => self.connections++);
  server.keepAliveTimeout = 5000;
  return self;
}
