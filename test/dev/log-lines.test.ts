import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/observability/logger.js';
import { humanLine, humanLog } from '../../src/dev/log-lines.js';

function collect() {
  const lines: string[] = [];
  return { lines, out: { write: (s: string) => lines.push(s) } };
}

test('demo log: the gateway logger access line becomes "time LEVEL METHOD path -> status ms cache"', () => {
  const { lines, out } = collect();
  const logger = createLogger('info', humanLog(out));
  logger.info({ method: 'GET', path: '/api/x', status: 200, ms: 3.2, cache: 'miss' }, 'request');
  logger.info({ method: 'GET', path: '/api', status: 401, ms: 0.4, cache: '-', code: 'ERR_TOKEN_MISSING' }, 'request');
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^\d\d:\d\d:\d\d INFO  GET \/api\/x -> 200 3\.2ms cache=miss\n$/);
  assert.match(lines[1]!, /^\d\d:\d\d:\d\d INFO  GET \/api -> 401 0\.4ms cache=- code=ERR_TOKEN_MISSING\n$/);
});

test('demo log: extra fields (request ids, trace context, client address) stay out of the request line; route and client_id show', () => {
  const line = JSON.stringify({
    level: 'info',
    time: '2026-11-29T04:30:00.000Z',
    pid: 1,
    hostname: 'h',
    request_id: 'c0ffee',
    trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
    client: '203.0.113.9',
    upstream: 'http://127.0.0.1:3000',
    method: 'POST',
    path: '/api',
    status: 200,
    ms: 12,
    cache: 'hit',
    route: '/api',
    client_id: 'test-client',
    msg: 'request',
  });
  const human = humanLine(line);
  assert.match(human, /^\d\d:\d\d:\d\d INFO  POST \/api -> 200 12ms cache=hit route=\/api client_id=test-client$/);
  assert.doesNotMatch(human, /c0ffee|4bf92f|203\.0\.113\.9/);
});

test('demo log: numeric pino levels and epoch times, other messages with their short fields, errors by message', () => {
  assert.match(humanLine(JSON.stringify({ level: 40, time: Date.now(), msg: 'introspection endpoint slow', endpoint: 'http://as/introspect', nested: { a: 1 } })), /^\d\d:\d\d:\d\d WARN  introspection endpoint slow endpoint=http:\/\/as\/introspect$/);
  assert.match(humanLine(JSON.stringify({ level: 'error', msg: 'internal error', err: { message: 'boom', stack: 'Error: boom\n    at x' } })), /ERROR internal error error=boom$/);
  assert.doesNotMatch(humanLine(JSON.stringify({ level: 50, msg: 'x', err: { message: 'boom', stack: 'at x' } })), /stack|at x/);
});

test('demo log: a line that is not a JSON object passes through unchanged', () => {
  assert.equal(humanLine('plain text line'), 'plain text line');
  assert.equal(humanLine('[1,2]'), '[1,2]');
  const { lines, out } = collect();
  humanLog(out).write('{"level":30,"msg":"a"}\n{"level":30,"msg":"b"}\n');
  assert.deepEqual(lines.map((l) => l.replace(/^\S+ /, '')), ['INFO  a\n', 'INFO  b\n']);
});
