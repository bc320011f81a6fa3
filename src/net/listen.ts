import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * `server.listen` as a promise: resolves with the bound address, rejects with
 * the listen error (EADDRINUSE, EACCES) instead of leaving it to an 'error'
 * event nobody handles.
 */
export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
