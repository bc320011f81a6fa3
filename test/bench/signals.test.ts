/*
 * `npm run bench` stops every process it started when it is ended by a signal:
 * SIGTERM (kill, a CI timeout) as well as SIGINT (Ctrl+C). The benchmark itself
 * needs NGINX and wrk and runs for minutes, so this runs a small script with
 * the benchmark's own process handling (bench/processes.ts): a subject in its
 * own process group with children of its own (like NGINX and its workers), a
 * short-lived child (like wrk), and a sub-benchmark (like bench/dialects.ts)
 * that must be told to stop so it can stop its own subjects.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'phantom-bench-signals-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const SCRIPT = `
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Subjects, runChild, transientChild } from ${JSON.stringify(join(ROOT, 'bench/processes.ts'))};
const [work, marker] = process.argv.slice(2);
const subjects = new Subjects(process.cwd(), [work]);
const group = subjects.start('sh', ['-c', 'sleep 300 & sleep 300 & wait'], 'subject');
const short = transientChild(spawn('sleep', ['300'], { stdio: 'ignore' }));
const sub = 'const fs = require("fs"); const f = process.argv[1]; process.on("SIGTERM", () => { fs.writeFileSync(f, "stopped"); process.exit(0); }); fs.writeFileSync(f, "started"); setInterval(() => {}, 1000);';
void runChild(process.execPath, ['-e', sub, marker], { cwd: process.cwd(), timeoutMs: 300_000 });
while (!existsSync(marker)) await new Promise((r) => setTimeout(r, 20));
await new Promise((r) => setTimeout(r, 100));
process.stdout.write(JSON.stringify({ group: group.pid, short: short.pid }) + '\\n');
setInterval(() => {}, 1000);
`;

/** Live (not zombie) processes whose process group is `pgid`, or the one process `pid`. */
function live(filter: (pid: number, pgrp: number) => boolean): number[] {
  const found: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[0] !== 'Z' && filter(Number(e), Number(f[2]))) found.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

for (const [signal, status] of [
  ['SIGTERM', 143],
  ['SIGINT', 130],
] as const) {
  test(`bench: on ${signal} every process started is stopped, the work folder removed, and the exit status is ${status}`, async () => {
    const dir = mkdtempSync(join(scratch, `${signal}-`));
    const work = mkdtempSync(join(dir, 'work-'));
    const marker = join(dir, 'sub-benchmark');
    const script = join(dir, 'bench-like.mts');
    writeFileSync(script, SCRIPT);
    const child = spawn(process.execPath, ['--import', 'tsx', script, work, marker], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const closed = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    try {
      assert.ok(await until(() => out.includes('\n') || child.exitCode !== null, 30_000) && child.exitCode === null, `the script started: ${err}`);
      const pids = JSON.parse(out) as { group: number; short: number };
      assert.ok(live((_, pgrp) => pgrp === pids.group).length >= 3, 'the subject runs with its children');
      assert.deepEqual(live((pid) => pid === pids.short), [pids.short]);
      assert.equal(readFileSync(marker, 'utf8'), 'started');

      child.kill(signal);
      assert.equal(await closed, status, err);
      assert.ok(await until(() => live((_, pgrp) => pgrp === pids.group).length === 0, 5000), 'the subject and its children are stopped');
      assert.ok(await until(() => live((pid) => pid === pids.short).length === 0, 5000), 'the short-lived child is stopped');
      assert.ok(await until(() => readFileSync(marker, 'utf8') === 'stopped', 5000), 'the sub-benchmark was told to stop (SIGTERM)');
      assert.equal(existsSync(work), false, 'the work folder is removed');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
}
