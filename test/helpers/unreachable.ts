/*
 * A scripted authorization server that becomes unreachable at the TCP level,
 * on loopback only: a child process that listens with a backlog of 1, and
 * when stopped fills its own accept queue and blocks its event loop, so it
 * never accepts again. Further connects to it hang (the kernel drops their
 * SYNs), as with a stopped process or a host whose packets are dropped. Also:
 * how many sockets this process has to it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface Unreachable {
  readonly port: number;
  readonly url: string;
  /** Sockets of this process connected or connecting to the port (read from /proc). */
  sockets(): number;
  /** When started with `answers`: stop answering and accepting from now on. */
  stop(): Promise<void>;
  close(): Promise<void>;
}

/*
 * The child: an HTTP introspection endpoint answering `answers` (token -> JWT;
 * 204 for other tokens) until it is stopped. To stop, it fills its own accept
 * queue (backlog 1) and blocks its event loop for good, right after starting
 * those connects, before it could accept them: from then on it answers
 * nothing, and every new connect to it hangs.
 */
const CHILD = `
const http = require('node:http');
const net = require('node:net');
const answers = JSON.parse(process.env.ANSWERS);
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const jwt = answers[new URLSearchParams(body).get('token')];
    if (jwt) res.writeHead(200, { 'content-type': 'application/jwt' }).end(jwt);
    else res.writeHead(204).end();
  });
});
function stop() {
  const { port } = server.address();
  for (let i = 0; i < 3; i++) net.connect(port, '127.0.0.1').on('error', () => {});
  process.nextTick(() => {
    process.stdout.write('stopped\\n'); // synchronous for a pipe on Linux
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  });
}
process.on('SIGUSR2', stop);
server.listen(0, '127.0.0.1', 1, () => {
  process.stdout.write(server.address().port + '\\n');
  if (process.env.STOPPED === '1') stop();
});
`;

/**
 * Starts the endpoint. Without `answers` it is unreachable from the start;
 * with them, it answers until `stop()`.
 */
export async function startUnreachable(answers?: Record<string, string>): Promise<Unreachable> {
  const child: ChildProcess = spawn(process.execPath, ['-e', CHILD], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { PATH: process.env.PATH ?? '', ANSWERS: JSON.stringify(answers ?? {}), STOPPED: answers === undefined ? '1' : '0' },
  });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  let out = '';
  const waiters = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const w of [...waiters]) w();
  });
  const line = (pattern: RegExp) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(out);
        if (m) {
          waiters.delete(check);
          resolve(m);
        }
      };
      child.once('exit', (code) => reject(new Error(`introspection endpoint exited early (${code})`)));
      waiters.add(check);
      check();
    });
  const port = Number((await line(/^(\d+)\n/))[1]);
  if (answers === undefined) await line(/stopped\n/);
  // Started: from now on never what keeps a test process alive, and never left behind by one.
  child.unref();
  (child.stdout as unknown as { unref(): void }).unref();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    sockets: () => socketsTo(port),
    stop: async () => {
      child.kill('SIGUSR2');
      await line(/stopped\n/);
    },
    close: async () => {
      process.off('exit', kill);
      if (child.exitCode === null && child.signalCode === null) {
        child.ref(); // to see it exit
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** Sockets owned by this process whose remote end is 127.0.0.1:`port`. */
export function socketsTo(port: number): number {
  const mine = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) mine.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && f[2] === remote && mine.has(f[9]!)) n++;
  }
  return n;
}
