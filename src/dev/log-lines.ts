/*
 * The demo's log output: the gateway writes JSON lines (for machines); on the
 * demo's terminal they become short lines a person reads:
 *
 *   12:04:31 INFO  GET /api -> 200 3ms cache=miss
 *   12:04:40 INFO  GET /api -> 401 0ms cache=- code=unauthorized
 *   12:05:02 WARN  introspection endpoint slow endpoint=http://...
 *
 * Only the fields named below are shown, so new fields in the JSON lines do
 * not clutter the demo; a line that is not JSON is passed through as it is.
 */
import type { DestinationStream } from 'pino';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** What the request line shows after method, path, status and time, in this order. */
const REQUEST_EXTRAS = ['code', 'route', 'introspection_ms', 'client_id'];
/** Never shown on other lines: bookkeeping, or too long for a terminal line. */
const HIDDEN = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'v', 'err', 'trace_id', 'span_id', 'traceparent', 'tracestate', 'request_id']);

function clock(time: unknown): string {
  const d = typeof time === 'number' || typeof time === 'string' ? new Date(time) : new Date();
  return (Number.isNaN(d.getTime()) ? new Date() : d).toTimeString().slice(0, 8);
}

function levelLabel(level: unknown): string {
  if (typeof level === 'number') return LEVELS[level] ?? String(level);
  if (typeof level === 'string') return level.toUpperCase();
  return 'INFO';
}

function scalar(v: unknown): string | undefined {
  if (typeof v === 'string') return v.length > 60 ? `${v.slice(0, 57)}...` : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

/** One JSON log line as a short human line (no trailing newline). */
export function humanLine(line: string): string {
  let o: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return line.trimEnd();
    o = parsed as Record<string, unknown>;
  } catch {
    return line.trimEnd();
  }
  const head = `${clock(o.time)} ${levelLabel(o.level).padEnd(5)} `;
  if (o.msg === 'request' && o.method !== undefined && o.status !== undefined) {
    const parts = [`${scalar(o.method) ?? '?'} ${scalar(o.path) ?? '?'} -> ${scalar(o.status) ?? '?'}`];
    if (o.ms !== undefined) parts.push(`${scalar(o.ms)}ms`);
    if (o.cache !== undefined) parts.push(`cache=${scalar(o.cache)}`);
    for (const k of REQUEST_EXTRAS) {
      const v = scalar(o[k]);
      if (v !== undefined) parts.push(`${k}=${v}`);
    }
    return head + parts.join(' ');
  }
  const fields = Object.entries(o)
    .filter(([k]) => !HIDDEN.has(k))
    .flatMap(([k, v]) => {
      const s = scalar(v);
      return s === undefined ? [] : [`${k}=${s}`];
    });
  const err = o.err as { message?: unknown } | undefined;
  if (err && typeof err.message === 'string') fields.push(`error=${scalar(err.message)}`);
  return head + [typeof o.msg === 'string' ? o.msg : '', ...fields].filter((s) => s !== '').join(' ');
}

/** A pino destination writing human lines to `out` (the demo's stdout). */
export function humanLog(out: { write(s: string): unknown }): DestinationStream {
  return {
    write(chunk: string) {
      for (const line of chunk.split('\n')) if (line.trim() !== '') out.write(`${humanLine(line)}\n`);
    },
  };
}
