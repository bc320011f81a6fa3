import type { Worker } from 'node:cluster';
import { MemoryReplayStore, type FirstUse, type SharedFirstUse } from './proof.js';

/*
 * One DPoP replay memory for the workers of one instance without Redis: the
 * primary holds it, each worker asks it over IPC before it accepts a proof.
 * Without it a proof would be accepted once per worker.
 */

const ASK = 'phantom-gateway:dpop-proof?';
const ANSWER = 'phantom-gateway:dpop-proof';
/** An answer slower than this (a primary stuck or gone) leaves the worker's own memory to decide. */
const ANSWER_MS = 500;

interface Ask {
  type: typeof ASK;
  id: number;
  key: string;
  until: number;
  iat: number;
}

/** In the primary: answers a worker's questions about proofs from one memory. */
export class PrimaryReplayMemory {
  readonly #store: MemoryReplayStore;
  #windowMs: number;

  /** `windowMs`: the longest a proof of the configuration may be accepted for (`dpopWindowMs`). */
  constructor(max: number, windowMs: number) {
    this.#store = new MemoryReplayStore(max);
    this.#windowMs = windowMs;
  }

  /**
   * A reload: the new bound, and the new longest window. A longer window
   * extends what is remembered and refuses proofs that may have been
   * forgotten already (as each worker's own memory does).
   */
  reconfigure(max: number, windowMs: number): void {
    this.#store.max = max;
    if (windowMs > this.#windowMs) {
      this.#store.forgetBefore(Date.now() - this.#windowMs);
      this.#store.extend(windowMs - this.#windowMs);
    }
    this.#windowMs = windowMs;
  }

  /** Answers `message` when it is a worker's question; whether it was one. */
  handle(worker: Worker, message: unknown): boolean {
    const m = message as Partial<Ask> | null;
    if (m?.type !== ASK || typeof m.key !== 'string' || typeof m.until !== 'number' || typeof m.iat !== 'number' || typeof m.id !== 'number') return false;
    const first = this.#store.firstUse(m.key, m.until, m.iat);
    if (worker.isConnected()) worker.send({ type: ANSWER, id: m.id, first });
    return true;
  }
}

/** In a worker: the primary's memory, asked over IPC. */
export class WorkerReplayMemory implements SharedFirstUse {
  #next = 0;
  readonly #pending = new Map<number, (first: FirstUse | undefined) => void>();

  constructor() {
    process.on('message', (message: unknown) => {
      const m = message as { type?: unknown; id?: unknown; first?: unknown } | null;
      if (m?.type !== ANSWER || typeof m.id !== 'number') return;
      const resolve = this.#pending.get(m.id);
      if (resolve === undefined) return;
      this.#pending.delete(m.id);
      resolve(m.first === true || m.first === false || m.first === 'full' ? m.first : undefined);
    });
  }

  firstUse(key: string, untilMs: number, iatMs: number): Promise<FirstUse | undefined> {
    if (process.send === undefined || !process.connected) return Promise.resolve(undefined);
    const id = this.#next++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(undefined);
      }, ANSWER_MS);
      this.#pending.set(id, (first) => {
        clearTimeout(timer);
        resolve(first);
      });
      process.send!({ type: ASK, id, key, until: untilMs, iat: iatMs } satisfies Ask);
    });
  }
}
