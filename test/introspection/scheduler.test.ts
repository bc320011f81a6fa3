import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FairScheduler, type Job } from '../../src/introspection/scheduler.js';

/** A job that records when it started and holds its slot until `finish()`. */
class Probe implements Job {
  started = -1;
  release: (() => void) | undefined;
  constructor(
    readonly client: string,
    readonly log: Probe[],
  ) {}
  start(release: () => void): void {
    this.started = this.log.length;
    this.log.push(this);
    this.release = release;
  }
  finish(): void {
    this.release!();
  }
}

describe('FairScheduler', () => {
  test('miss-flood fairness: a burst from one client delays another client\'s single job by at most one job per waiting client', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }), // slots
        fc.integer({ min: 1, max: 300 }), // burst size
        fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 5 }), // when each other client submits (in burst jobs)
        (slots, burst, arrivals) => {
          const s = new FairScheduler<Probe>({ slots, maxQueued: 10_000, maxQueuedPerClient: 10_000 });
          const log: Probe[] = [];
          const running: Probe[] = [];
          const lone: Array<{ job: Probe; startsBefore: number }> = [];
          const submit = (job: Probe) => {
            const a = s.submit(job.client, job);
            assert.ok(a === 'started' || a === 'queued');
            if (a === 'started') running.push(job);
          };
          for (let i = 0; i < burst; i++) {
            arrivals.forEach((at, k) => {
              if (at === i) {
                const job = new Probe(`other-${k}`, log);
                lone.push({ job, startsBefore: log.length });
                submit(job);
              }
            });
            submit(new Probe('flooder', log));
          }
          // Serve: finish the oldest running job, one at a time.
          while (running.length > 0) {
            const before = log.length;
            running.shift()!.finish();
            running.push(...log.slice(before));
            assert.ok(s.running <= slots);
          }
          assert.equal(log.length, burst + arrivals.filter((a) => a < burst).length);
          const clients = 1 + arrivals.length;
          for (const { job, startsBefore } of lone) {
            // Jobs started after it was submitted and before it: at most one per other waiting client.
            assert.ok(job.started - startsBefore <= clients - 1, `waited behind ${job.started - startsBefore} jobs`);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test('bounds: refusals exactly past the per-client and global caps, never more than `slots` running, cancelled jobs never start', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('submit' as const), client: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ kind: fc.constant('finish' as const) }),
      fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 3 }), fc.array(op, { maxLength: 120 }), (slots, maxQueued, perClient, ops) => {
        const s = new FairScheduler<Probe>({ slots, maxQueued, maxQueuedPerClient: perClient });
        const log: Probe[] = [];
        const running: Probe[] = [];
        const waiting: Probe[] = [];
        const cancelled = new Set<Probe>();
        for (const o of ops) {
          if (o.kind === 'submit') {
            const job = new Probe(`c${o.client}`, log);
            const queuedForClient = waiting.filter((w) => w.client === job.client).length;
            const expected =
              running.length < slots && waiting.length === 0 ? 'started' : queuedForClient >= perClient ? 'client_full' : waiting.length >= maxQueued ? 'full' : 'queued';
            assert.equal(s.submit(job.client, job), expected);
            if (expected === 'started') running.push(job);
            if (expected === 'queued') waiting.push(job);
          } else if (o.kind === 'finish' && running.length > 0) {
            const before = log.length;
            running.shift()!.finish();
            for (const started of log.slice(before)) {
              assert.ok(!cancelled.has(started), 'a cancelled job started');
              waiting.splice(waiting.indexOf(started), 1);
              running.push(started);
            }
          } else if (o.kind === 'cancel' && waiting.length > 0) {
            const job = waiting.splice(o.pick % waiting.length, 1)[0]!;
            assert.equal(s.cancel(job), true);
            assert.equal(s.cancel(job), false, 'cancelled twice');
            cancelled.add(job);
          }
          assert.equal(s.running, running.length);
          assert.ok(s.running <= slots);
          assert.equal(s.queued, waiting.length);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('a job that fails inside start() gives its slot back and the next one starts (no recursion, no lost slot)', () => {
    const s = new FairScheduler<Job>({ slots: 1, maxQueued: 10_000, maxQueuedPerClient: 10_000 });
    let hold: (() => void) | undefined;
    s.submit('a', { start: (r) => (hold = r) });
    let failedAtOnce = 0;
    for (let i = 0; i < 5000; i++) {
      s.submit('b', {
        start: (release) => {
          failedAtOnce++;
          release();
        },
      });
    }
    let last = false;
    s.submit('b', { start: () => (last = true) });
    hold!();
    assert.equal(failedAtOnce, 5000);
    assert.equal(last, true);
    assert.equal(s.running, 1);
  });

  test('close(): later jobs are refused, waiting ones are handed back, running ones are left alone', () => {
    const s = new FairScheduler<Job>({ slots: 1, maxQueued: 10, maxQueuedPerClient: 10 });
    const first = { start: () => {} };
    const second = { start: () => assert.fail('must not start') };
    s.submit('a', first);
    s.submit('a', second);
    assert.deepEqual(s.close(), [second]);
    assert.equal(s.submit('a', { start: () => assert.fail('must not start') }), 'closed');
    assert.equal(s.running, 1);
  });
});
