import { connect, type Socket } from 'node:net';

/**
 * A raw TCP conversation with a server, for exchanges `rawRequest` cannot
 * express: send part of a request, wait for what the server says (or that it
 * says nothing), then send more.
 */
export interface Conversation {
  readonly socket: Socket;
  /** Everything received so far, as latin1 text. */
  received(): string;
  /** Resolves once the peer has closed its side (or the socket errored). */
  readonly closed: Promise<void>;
  send(bytes: string | Buffer): void;
  /**
   * Waits until `predicate(received())` holds; rejects after `timeoutMs`, or
   * when the connection closes first, with what was received so far.
   */
  waitFor(predicate: (text: string) => boolean, timeoutMs?: number): Promise<string>;
  close(): void;
}

export async function openConversation(port: number): Promise<Conversation> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const chunks: Buffer[] = [];
  const waiters = new Set<() => void>();
  let ended = false;
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    wake();
  });
  const closed = new Promise<void>((resolve) => {
    const done = () => {
      ended = true;
      wake();
      resolve();
    };
    socket.once('end', done);
    socket.once('close', done);
    socket.on('error', done);
  });
  const received = () => Buffer.concat(chunks).toString('latin1');
  return {
    socket,
    received,
    closed,
    send: (bytes) => void socket.write(bytes),
    waitFor: (predicate, timeoutMs = 3000) =>
      new Promise<string>((resolve, reject) => {
        const check = () => {
          const text = received();
          if (predicate(text)) {
            finish();
            resolve(text);
          } else if (ended) {
            finish();
            reject(new Error(`connection closed; received ${JSON.stringify(text.slice(0, 300))}`));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`timed out after ${timeoutMs} ms; received ${JSON.stringify(received().slice(0, 300))}`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
    close: () => socket.destroy(),
  };
}

/** True once `text` holds a complete final (non-1xx) response with a Content-Length body. */
export function hasFinalResponse(text: string): boolean {
  // Only 2xx-5xx status lines match, so an interim `100 Continue` is skipped.
  const m = /HTTP\/1\.1 [2-5]\d\d [^\r]*\r\n([\s\S]*?)\r\n\r\n/.exec(text);
  if (m === null) return false;
  const len = /(?:^|\r\n)content-length: *(\d+)/i.exec(m[1]!);
  return len === null || text.length - (m.index + m[0].length) >= Number(len[1]);
}
