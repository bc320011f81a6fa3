import type { Logger } from './logger.js';

/**
 * Rate-limited warnings about one thing that fails repeatedly (an upstream,
 * an introspection endpoint): one line when it starts failing (or fails in
 * a new way), then at most one line per window with the count of failures
 * since the last line, then one line when it next succeeds. A dead upstream
 * hit 10,000 times a minute costs two or three lines a minute, not 10,000.
 *
 * Each line carries `fields` (what the warnings concern: origin and path,
 * never a query) and, after the first, `repeated` (failures not logged
 * since the last line).
 *
 * The success path is a field check (`if (channel.failing) channel.ok()`).
 *
 * @example
 * const upstream = new WarnChannel(logger, { upstream: 'http://10.0.0.5:8080', route: '/api' }, 'upstream');
 * upstream.fail('ECONNREFUSED', 'upstream unreachable');  // logged
 * upstream.fail('ECONNREFUSED', 'upstream unreachable');  // counted
 * if (upstream.failing) upstream.ok();                    // "upstream recovered", with the count
 */
export class WarnChannel {
  /** Some failure was logged and no success followed yet. */
  failing = false;
  #code = '';
  #message = '';
  /** What makes a failure "another kind": code, message and status. */
  #kind = '';
  /** Failures since the last line. */
  #suppressed = 0;
  /** When the last line was written (clock ms). */
  #lineAt = 0;
  /** When the current failure began. */
  #since = 0;

  constructor(
    readonly logger: Logger,
    readonly fields: Readonly<Record<string, unknown>>,
    /** What fails, for the recovery line: `${what} recovered`. */
    readonly what: string,
    readonly windowMs = 60_000,
    readonly now: () => number = Date.now,
  ) {}

  /**
   * One failure. Logged when it is the first since a success or a failure of
   * another kind (another `code`, message or `extra.status`); else counted, and the count logged once a window
   * has passed since the last line.
   */
  fail(code: string, message: string, extra?: Record<string, unknown>): void {
    const now = this.now();
    const kind = `${code}\n${message}\n${String(extra?.status ?? '')}`;
    if (!this.failing || kind !== this.#kind) {
      const repeated = this.#suppressed;
      if (!this.failing) this.#since = now;
      this.failing = true;
      this.#code = code;
      this.#message = message;
      this.#kind = kind;
      this.#suppressed = 0;
      this.#lineAt = now;
      this.logger.warn({ ...this.fields, code, ...extra, ...(repeated > 0 ? { repeated } : {}) }, message);
      return;
    }
    this.#suppressed++;
    if (now - this.#lineAt < this.windowMs) return;
    const seconds = Math.round((now - this.#lineAt) / 1000);
    this.logger.warn(
      { ...this.fields, code, ...extra, repeated: this.#suppressed, failing_for_ms: now - this.#since },
      `${message}: still failing, ${this.#suppressed} more in the last ${seconds} s`,
    );
    this.#suppressed = 0;
    this.#lineAt = now;
  }

  /** A success after failures: one line, with the failures not logged yet. */
  ok(): void {
    if (!this.failing) return;
    const now = this.now();
    this.failing = false;
    this.logger.info(
      { ...this.fields, code: this.#code, repeated: this.#suppressed, failing_for_ms: now - this.#since },
      `${this.what} recovered (after "${this.#message}")`,
    );
    this.#suppressed = 0;
    this.#code = '';
    this.#kind = '';
  }
}
