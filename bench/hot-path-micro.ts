/*
 * Micro-benchmark of the per-request work the proxy does before the token
 * exchange, on a cache hit: the raw-header scan (11 ordinary headers), the
 * request-target check, the Host check and the route match. Prints JSON:
 * nanoseconds per call (best of ROUNDS rounds of ITERATIONS calls each).
 *
 *   node --import tsx bench/hot-path-micro.ts
 *
 * Environment: MICRO_ITERATIONS (default 1000000), MICRO_ROUNDS (default 3),
 * MICRO_SRC (a directory holding `proxy/headers.ts`, `proxy/request-target.ts`
 * and `proxy/router.ts`, e.g. copies taken with `git show` from an older
 * commit, to compare before/after; default this checkout's `src`). Bounded:
 * about ITERATIONS x ROUNDS x 4 calls, a few seconds; no network.
 */
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ITERATIONS = Number(process.env.MICRO_ITERATIONS ?? 1_000_000);
const ROUNDS = Number(process.env.MICRO_ROUNDS ?? 3);
const SRC = process.env.MICRO_SRC ?? join(fileURLToPath(new URL('.', import.meta.url)), '..', 'src');

const load = async (dir: string, file: string): Promise<Record<string, unknown>> => (await import(pathToFileURL(join(SRC, dir, file)).href)) as Record<string, unknown>;
const headers = await load('proxy', 'headers.ts');
// Request-target checks and the route table moved to src/routing/ (shared by every front door).
const target = await load('routing', 'request-target.ts');
const router = await load('routing', 'router.ts');

// What a typical API client sends (curl, a browser fetch, an SDK).
const raw = [
  'Host', 'api.example.com:8443',
  'User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
  'Accept', 'application/json',
  'Accept-Encoding', 'gzip, deflate, br',
  'Accept-Language', 'en-US,en;q=0.9',
  'Authorization', 'Bearer 0123456789abcdef0123456789abcdef',
  'Content-Type', 'application/json',
  'Content-Length', '0',
  'X-Request-Id', '6f9619ff-8b86-d011-b42d-00cf4fc964ff',
  'Cookie', 'session=abc; theme=dark',
  'Connection', 'keep-alive',
];
const url = '/api/v1/users/12345/orders?limit=10&page=2';
const guard = { exchange: {}, policy: { required: ['read'] } };
const table = ['/', '/api/', '/api/v1/admin/', '/health', '/static/'].map((prefix, i) => ({ prefix, value: { prefix, guard: i === 3 || i === 4 ? undefined : guard } }));

let sink = 0;
function measure(name: string, fn: () => unknown): [string, number] | undefined {
  let best = Infinity;
  for (let i = 0; i < 100_000; i++) if (fn() !== undefined) sink++;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ITERATIONS; i++) if (fn() !== undefined) sink++;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / ITERATIONS);
  }
  return [name, Math.round(best * 10) / 10];
}

type Scan = (raw: readonly string[], keepForwarding: boolean, keepAuthorization: boolean) => unknown;
type Check = (url: string) => unknown;
type Host = (value: string) => boolean;
type RouterLike = new (routes: unknown[]) => { match(path: string): unknown };
const results = [
  measure('scanRequestHeaders (11 headers) ns', () => (headers.scanRequestHeaders as Scan)(raw, false, false)),
  measure('checkTarget ns', () => (target.checkTarget as Check)(url)),
  typeof target.isValidHost === 'function' ? measure('isValidHost ns', () => (target.isValidHost as Host)('api.example.com:8443') || undefined) : undefined,
  measure('Router.match (5 routes) ns', (() => {
    const r = new (router.Router as RouterLike)(table);
    return () => r.match('/api/v1/users/12345/orders');
  })()),
];
console.log(JSON.stringify({ src: SRC, iterations: ITERATIONS, rounds: ROUNDS, node: process.version, nsPerCall: Object.fromEntries(results.filter((x) => x !== undefined)), sink: sink > 0 }, null, 1));
