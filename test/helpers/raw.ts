import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  raw: string;
}

/**
 * Sends bytes exactly as given over a fresh TCP connection and reads the first
 * response (for requests an HTTP client would normalise or refuse to send).
 */
export function rawRequest(port: number, request: string | Buffer, opts: { timeoutMs?: number } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      finish();
    }, opts.timeoutMs ?? 5000);
    const finish = () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      const split = raw.indexOf('\r\n\r\n');
      if (split === -1) return reject(new Error(`no complete response: ${JSON.stringify(raw.slice(0, 200))}`));
      const [statusLine, ...headerLines] = raw.slice(0, split).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of headerLines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(statusLine!.split(' ')[1]), headers, body: raw.slice(split + 4), raw });
    };
    socket.on('data', (c) => {
      chunks.push(c);
      // Stop once one complete response with a Content-Length has arrived.
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      if (split !== -1) {
        const m = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, split));
        if (m && text.length - split - 4 >= Number(m[1])) {
          socket.destroy();
          finish();
        }
      }
    });
    socket.on('end', () => finish());
    socket.on('error', (err) => (chunks.length ? finish() : reject(err)));
    socket.write(request);
  });
}
