import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS, type ErrorCode } from '../../src/core/errors.js';
import { insufficientScope, TOKEN_INACTIVE, TOKEN_MALFORMED, TOKEN_MISSING } from '../../src/core/errors.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

test('the README error table lists every error code with its status, body code and message', () => {
  const table = readme.split('<!-- errors-table:start -->')[1]!.split('<!-- errors-table:end -->')[0]!;
  const rows = new Map<string, string[]>();
  for (const line of table.split('\n')) {
    const m = /^\| `(ERR_[A-Z_]+)` \|(.*)$/.exec(line);
    if (m) rows.set(m[1]!, m[2]!.split('|').map((c) => c.trim()));
  }
  assert.deepEqual([...rows.keys()].sort(), Object.keys(ERRORS).sort());
  for (const [code, spec] of Object.entries(ERRORS) as [ErrorCode, (typeof ERRORS)[ErrorCode]][]) {
    const [status, publicCode, message] = rows.get(code)!;
    assert.equal(status, String(spec.status), code);
    assert.equal(publicCode, `\`${spec.publicCode}\``, code);
    assert.equal(message, spec.message, code);
  }
  // The challenges documented are the ones sent.
  for (const err of [TOKEN_MISSING, TOKEN_MALFORMED, TOKEN_INACTIVE]) {
    assert.ok(rows.get(err.code)![3]!.includes(`WWW-Authenticate: ${err.challenge}\``), err.code);
  }
  assert.equal(insufficientScope('read').challenge, 'Bearer error="insufficient_scope", scope="read"');
});

test('the README starts with the two commands', () => {
  const head = readme.split('\n').slice(0, 12).join('\n');
  assert.match(head, /npm ci && npm start/);
  assert.match(head, /npm test/);
});
