/*
 * The floor of a Node.js reverse proxy on this machine: node:http in front,
 * an undici Pool behind, and nothing else (no routing, no checks, no token,
 * no header rules). Whatever the gateway costs above this is its own; what
 * this costs above NGINX is the price of Node's HTTP stack.
 *
 * Usage: node node-floor.js <port> <upstreamPort>
 */
import { createServer } from 'node:http';
import { Pool, type Dispatcher } from 'undici';

const port = Number(process.argv[2]);
const pool = new Pool(`http://127.0.0.1:${process.argv[3]}`, { connections: 128 });

createServer((req, res) => {
  const handler: Dispatcher.DispatchHandler = {
    // undici tells the current handler API from the legacy one by this method.
    onRequestStart() {},
    onResponseStart(_c, status, headers) {
      res.writeHead(status, headers as Record<string, string>);
    },
    onResponseData(_c, chunk) {
      res.write(chunk);
    },
    onResponseEnd() {
      res.end();
    },
    onResponseError() {
      res.statusCode = 502;
      res.end();
    },
  };
  pool.dispatch({ path: req.url!, method: req.method as Dispatcher.HttpMethod, headers: req.rawHeaders, body: null }, handler);
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
