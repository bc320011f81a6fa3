/**
 * Who may use the few connections to the authorization server next.
 *
 * At most `slots` jobs run at once. Others wait in one FIFO queue per client
 * address, and the queues are served round-robin: a client that sends 300
 * unknown tokens in a burst waits behind its own burst, while another
 * client's one new token is served after at most one job of each other
 * waiting client. Waiting is bounded per client and in total; past either
 * bound a job is refused at once, so a flood costs a refusal, not a timeout.
 *
 * A job holds its slot until it calls `release`, which the transport does
 * when the connection is really free again (the request finished, failed or
 * was cut), not when its caller got an answer: a caller answered 504 while
 * its request is still connecting must not let another connection open.
 */

/** One unit of work: told to start when a slot is free. */
export interface Job {
  /** Runs the job; `release` must be called exactly once, when its slot is free again. */
  start(release: () => void): void;
}

/** What `submit` did with a job. */
export type Admission = 'started' | 'queued' | 'client_full' | 'full' | 'closed';

export interface SchedulerOptions {
  /** Jobs running at once. */
  readonly slots: number;
  /** Jobs waiting, all clients together. */
  readonly maxQueued: number;
  /** Jobs waiting for one client address. */
  readonly maxQueuedPerClient: number;
}

export class FairScheduler<J extends Job = Job> {
  readonly #opts: SchedulerOptions;
  /**
   * Waiting jobs by client, oldest first; the Map's order is the round-robin
   * order. Arrays and a WeakMap, no long-lived Set or Map keyed by job: with
   * those, a fill of 100,000 new tokens promoted about twice as many bytes to
   * V8's old space (each call, its answer, headers and body, dying there) and
   * cost ~12 MiB more RSS than without (measured with --trace-gc-nvp and
   * heap snapshots; the likely cause is V8 keeping a grown table's old
   * backing store, with its entries, reachable from the new one).
   */
  readonly #queues = new Map<string, J[]>();
  /** Which client queue each waiting job is in (weak keys are not kept alive by stale tables). */
  readonly #clientOf = new WeakMap<J, string>();
  #queued = 0;
  #running = 0;
  #closed = false;
  #pumping = false;

  constructor(opts: SchedulerOptions) {
    if (!Number.isInteger(opts.slots) || opts.slots < 1) throw new TypeError('"slots" must be a positive integer');
    if (!Number.isInteger(opts.maxQueued) || opts.maxQueued < 0) throw new TypeError('"maxQueued" must be a non-negative integer');
    if (!Number.isInteger(opts.maxQueuedPerClient) || opts.maxQueuedPerClient < 0) throw new TypeError('"maxQueuedPerClient" must be a non-negative integer');
    this.#opts = opts;
  }

  /** Starts `job` now if a slot is free, else queues it for `client`, unless a bound is reached. */
  submit(client: string, job: J): Admission {
    if (this.#closed) return 'closed';
    if (this.#running < this.#opts.slots && this.#queued === 0) {
      this.#start(job);
      return 'started';
    }
    let queue = this.#queues.get(client);
    if ((queue?.length ?? 0) >= this.#opts.maxQueuedPerClient) return 'client_full';
    if (this.#queued >= this.#opts.maxQueued) return 'full';
    if (queue === undefined) {
      queue = [];
      this.#queues.set(client, queue);
    }
    queue.push(job);
    this.#clientOf.set(job, client);
    this.#queued++;
    return 'queued';
  }

  /** Removes a waiting job; false when it is not waiting (already started, or never queued). */
  cancel(job: J): boolean {
    const client = this.#clientOf.get(job);
    if (client === undefined) return false;
    this.#clientOf.delete(job);
    this.#queued--;
    const queue = this.#queues.get(client)!;
    queue.splice(queue.indexOf(job), 1);
    if (queue.length === 0) this.#queues.delete(client);
    return true;
  }

  /** Refuses every later job and returns the waiting ones, now removed (running jobs are left alone). */
  close(): J[] {
    this.#closed = true;
    const waiting = [...this.#queues.values()].flat();
    for (const job of waiting) this.#clientOf.delete(job);
    this.#queues.clear();
    this.#queued = 0;
    return waiting;
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queued;
  }

  /** Waiting jobs of one client. */
  queuedFor(client: string): number {
    return this.#queues.get(client)?.length ?? 0;
  }

  #start(job: J): void {
    this.#running++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#running--;
      this.#pump();
    };
    try {
      job.start(release);
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * Starts waiting jobs while slots are free, one per client in turn. A loop,
   * not recursion: a job that fails at once releases its slot inside start().
   */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#running < this.#opts.slots) {
        const next = this.#queues.entries().next();
        if (next.done) break;
        const [client, queue] = next.value;
        const job = queue.shift()!;
        this.#clientOf.delete(job);
        this.#queued--;
        // To the back of the round: re-inserting moves the key to the end.
        this.#queues.delete(client);
        if (queue.length > 0) this.#queues.set(client, queue);
        try {
          this.#start(job);
        } catch {
          // start() released the slot; a job must not stop the others.
        }
      }
    } finally {
      this.#pumping = false;
    }
  }
}
