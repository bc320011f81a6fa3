import type { Socket } from 'node:net';
import { buildConnector } from 'undici';

/** undici's connector as it is: it returns the socket it opened (its typings say void). */
type OpeningConnector = (options: buildConnector.Options, callback: buildConnector.Callback) => Socket | undefined;

/**
 * An undici connector that remembers every socket it opened until it closes.
 *
 * undici's `destroy()` cannot reach a socket that is still connecting: the
 * client only learns of it when the connect ends, so a connect to a host that
 * drops packets lives until its timeout and keeps the process alive after
 * `destroy()` resolved. With the sockets at hand, `destroyAll()` ends a stop
 * at once, and `size` says how many there are.
 */
export class TrackedConnector {
  readonly #sockets: Set<Socket>;
  readonly #options: buildConnector.BuildOptions;
  readonly #base: OpeningConnector;

  constructor(options: buildConnector.BuildOptions, sockets = new Set<Socket>()) {
    this.#options = options;
    this.#sockets = sockets;
    this.#base = buildConnector(options) as unknown as OpeningConnector;
  }

  /**
   * A connector with these options added (an upstream's TLS options), whose
   * sockets this one tracks too: one `destroyAll()` cuts both.
   */
  sibling(extra: Partial<buildConnector.BuildOptions>): TrackedConnector {
    return new TrackedConnector({ ...this.#options, ...extra } as buildConnector.BuildOptions, this.#sockets);
  }

  /** Pass as undici's `connect` option. */
  readonly connect: buildConnector.connector = (options, callback) => {
    const socket = this.#base(options, callback);
    if (socket === undefined) return;
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
  };

  /** Sockets opened and not yet closed, connecting ones included. */
  get size(): number {
    return this.#sockets.size;
  }

  destroyAll(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }
}
