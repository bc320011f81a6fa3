import { randomBytes } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { GatewayError, refusal } from '../core/errors.js';

/*
 * Request bodies: read completely before an upstream connection is taken
 * (the default, as NGINX's proxy_request_buffering), or streamed through a
 * meter on routes that opt out. Both enforce the size bound and the minimum
 * rate, so a client dripping a body is cut off early instead of holding
 * gateway memory (buffered) or an upstream connection (streamed).
 */

export const BODY_TOO_LARGE = refusal('ERR_BODY_TOO_LARGE');
export const BODY_TOO_SLOW = refusal('ERR_BODY_TOO_SLOW');
const UNSUPPORTED_CODING = refusal('ERR_TRANSFER_CODING');
const FAULTY_FRAMING = refusal('ERR_MALFORMED_REQUEST');
/** The client went away (or its connection was cut) before the body ended: nobody to answer. */
export const BODY_ABORTED = new Error('the client closed the connection before its body ended');

export interface BodyLimits {
  /** Larger bodies are refused with 413. */
  readonly maxBytes: number;
  /** Kept in memory up to this; past it the body goes to a temporary file. */
  readonly memoryBytes: number;
  readonly tempDir: string;
  /** Bytes per second a client must send, measured over each window; 0 turns the check off. */
  readonly minRate: number;
  readonly windowMs: number;
}

/** A completely read body, ready to forward with `Content-Length: length`. */
export interface BufferedBody {
  readonly length: number;
  /** A Buffer, or a stream over the temporary file. */
  readonly data: Buffer | Readable;
  /** Releases the temporary file (already unlinked; this closes it). Idempotent. */
  dispose(): void;
}

/**
 * The refusal, if any, for how a request announces its body: a transfer
 * coding other than `chunked` alone (501), `Transfer-Encoding` on HTTP/1.0
 * (RFC 9112 §6.1: faulty framing, 400), or a `Content-Length` past the
 * bound (413, before a byte of the body is read).
 */
export function framingRefusal(req: IncomingMessage, maxBytes: number): GatewayError | undefined {
  const raw = req.rawHeaders;
  const coding = transferCoding(raw);
  if (coding !== 'none') {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return FAULTY_FRAMING;
    return coding === 'chunked' ? undefined : UNSUPPORTED_CODING;
  }
  for (let i = 0; i < raw.length; i += 2) {
    // Node's parser has checked it is digits and not repeated with another value.
    if (raw[i]!.length === 14 && raw[i]!.toLowerCase() === 'content-length') return Number(raw[i + 1]) > maxBytes ? BODY_TOO_LARGE : undefined;
  }
  return undefined;
}

/**
 * How a request's body is framed, from its raw headers: `chunked` only when
 * every `Transfer-Encoding` line together name exactly one coding, `chunked`
 * (any case, optional whitespace). Anything else (`gzip, chunked`...) would
 * reach the upstream with the coding silently dropped, so it is refused
 * (RFC 9112 §6.1: 501).
 */
export function transferCoding(raw: readonly string[]): 'none' | 'chunked' | 'other' {
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 17 && raw[i]!.toLowerCase() === 'transfer-encoding') value = value === undefined ? raw[i + 1]! : `${value},${raw[i + 1]!}`;
  }
  if (value === undefined) return 'none';
  return value.trim().toLowerCase() === 'chunked' ? 'chunked' : 'other';
}

/**
 * Counts a client's body bytes per window and calls `slow` when a window
 * ends with fewer than `minRate` bytes per second — unless the gateway itself
 * stopped reading during it (`excuse()`, or `paused()` at its end), which is
 * not the client's fault. Every window is judged at its end, the first one
 * included: no client is cut before one window has passed.
 */
class RateWatch {
  bytes = 0;
  #excused = false;
  readonly #timer: NodeJS.Timeout;
  readonly #floor: number;

  constructor(limits: BodyLimits, paused: () => boolean, slow: () => void) {
    this.#floor = (limits.minRate * limits.windowMs) / 1000;
    this.#timer = setTimeout(() => {
      if (this.bytes < this.#floor && !this.#excused && !paused()) {
        slow();
        return;
      }
      this.bytes = 0;
      this.#excused = false;
      this.#timer.refresh();
    }, limits.windowMs);
    this.#timer.unref();
  }

  /** The gateway paused the client during this window. */
  excuse(): void {
    this.#excused = true;
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}

/**
 * Reads `req`'s body completely: in memory up to `memoryBytes`, then into a
 * temporary file created with mode 0600 and unlinked at once, so it is gone
 * whatever happens to the process; only the descriptor is left, closed by
 * `dispose()`. Settles through `done`, or `failed` with BODY_TOO_LARGE,
 * BODY_TOO_SLOW, BODY_ABORTED, or the file system's error. The returned
 * handle's `abort(err)` stops the read early (fails it with `err`, closing
 * the temporary file). The request must be aborted by
 * whoever ends it before its body ended: after its response finished, Node
 * detaches a request from its connection, so it never emits 'close' or
 * 'error' and a read left waiting would hold its file until garbage collection.
 */
export function readBody(req: IncomingMessage, limits: BodyLimits, done: (b: BufferedBody) => void, failed: (err: Error) => void): BodyRead {
  return new BodyBuffer(req, limits, done, failed);
}

/** A body read under way. */
export interface BodyRead {
  /** Fails the read with `err` unless it has settled; idempotent. */
  abort(err: Error): void;
}

class BodyBuffer implements BodyRead {
  #chunks: Buffer[] = [];
  #size = 0;
  #file: FileHandle | undefined;
  /** Chunks are being written to the file (the request is paused meanwhile). */
  #writing = false;
  #ended = false;
  #settled = false;
  readonly #watch: RateWatch | undefined;
  readonly #unfollow: () => void;

  constructor(
    readonly req: IncomingMessage,
    readonly limits: BodyLimits,
    readonly resolve: (b: BufferedBody) => void,
    readonly reject: (err: Error) => void,
  ) {
    if (limits.minRate > 0) this.#watch = new RateWatch(limits, () => this.#writing, () => this.#fail(BODY_TOO_SLOW));
    this.#unfollow = followBody(req, this.#onData, this.#onEnd, () => this.#fail(BODY_ABORTED));
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#settled) return;
    this.#size += chunk.length;
    if (this.#watch !== undefined) this.#watch.bytes += chunk.length;
    if (this.#size > this.limits.maxBytes) return this.#fail(BODY_TOO_LARGE);
    this.#chunks.push(chunk);
    if (this.#file === undefined && this.#size <= this.limits.memoryBytes) return;
    if (!this.#writing) void this.#spill();
  };

  readonly #onEnd = (): void => {
    this.#ended = true;
    if (!this.#writing) this.#finish();
  };

  /** Writes what is in memory to the file (opening it first), pausing the client meanwhile. */
  async #spill(): Promise<void> {
    this.#writing = true;
    this.#watch?.excuse();
    this.req.pause();
    try {
      this.#file ??= await openTemp(this.limits.tempDir);
      while (this.#chunks.length > 0 && !this.#settled) {
        const batch = this.#chunks;
        this.#chunks = [];
        await this.#file.writev(batch);
      }
      this.#writing = false;
    } catch (err) {
      this.#writing = false;
      this.#fail(err as Error);
      this.#closeFile(); // when something else settled it meanwhile
      return;
    }
    if (this.#settled) return this.#closeFile();
    if (this.#ended) this.#finish();
    else this.req.resume();
  }

  #finish(): void {
    if (this.#settled) return;
    this.#stop();
    const file = this.#file;
    if (file === undefined) {
      const data = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#size);
      this.#chunks = [];
      this.resolve({ length: this.#size, data, dispose: noop });
      return;
    }
    let closed = false;
    this.resolve({
      length: this.#size,
      data: file.createReadStream({ start: 0, autoClose: false }),
      dispose: () => {
        if (closed) return;
        closed = true;
        file.close().catch(noop);
      },
    });
  }

  abort(err: Error): void {
    this.#fail(err);
  }

  #fail(err: Error): void {
    if (this.#settled) return;
    this.#stop();
    this.#chunks = [];
    // Without a 'data' listener the rest of the body is read and dropped
    // until the connection closes (the refusal sent for this says close).
    if (!this.#writing) this.#closeFile();
    this.reject(err);
  }

  #stop(): void {
    this.#settled = true;
    this.#watch?.stop();
    this.#unfollow();
  }

  #closeFile(): void {
    this.#file?.close().catch(noop);
    this.#file = undefined;
  }
}

/** Creates a 0600 file in `dir` and unlinks it at once: the descriptor is all that is left. */
async function openTemp(dir: string): Promise<FileHandle> {
  const path = join(dir, `phantom-gateway-body-${process.pid}-${randomBytes(8).toString('hex')}`);
  const file = await open(path, 'wx+', 0o600);
  try {
    await unlink(path);
  } catch (err) {
    await file.close().catch(noop);
    throw err;
  }
  return file;
}

export interface StreamLimits extends BodyLimits {
  /** Longest pause between two pieces of the body. */
  readonly idleMs: number;
}

/**
 * The body of a request on a streaming route, as undici reads it: bytes pass
 * as they come, but the size bound, the minimum rate and the idle bound are
 * enforced. Reading from the client starts only when undici first asks
 * (once it holds an upstream connection). On a violation `fail` is called
 * once and the stream is destroyed with the same error, which aborts the
 * upstream request.
 */
export class MeteredBody extends Readable {
  #size = 0;
  #started = false;
  #stopped = false;
  #watch: RateWatch | undefined;
  #idle: NodeJS.Timeout | undefined;
  #unfollow: (() => void) | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly limits: StreamLimits,
    readonly fail: (err: Error) => void,
  ) {
    super();
  }

  override _read(): void {
    if (this.#stopped) return;
    if (!this.#started) {
      this.#started = true;
      const { req, limits } = this;
      if (limits.minRate > 0) this.#watch = new RateWatch(limits, () => req.isPaused(), () => this.#violation(BODY_TOO_SLOW));
      // While the upstream is not reading (the client is paused), the client is not idle.
      this.#idle = setTimeout(() => (req.isPaused() ? this.#idle!.refresh() : this.#violation(BODY_TOO_SLOW)), limits.idleMs);
      this.#idle.unref();
      this.#unfollow = followBody(req, this.#onData, this.#onEnd, () => this.#violation(BODY_ABORTED));
    } else {
      this.#idle?.refresh();
    }
    this.req.resume();
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#size += chunk.length;
    if (this.#size > this.limits.maxBytes) return this.#violation(BODY_TOO_LARGE);
    if (this.#watch !== undefined) this.#watch.bytes += chunk.length;
    this.#idle?.refresh();
    if (!this.push(chunk)) {
      this.#watch?.excuse();
      this.req.pause();
    }
  };

  readonly #onEnd = (): void => {
    this.#stop();
    this.push(null);
  };

  #violation(err: Error): void {
    if (this.destroyed) return;
    this.#stop();
    this.fail(err);
    this.destroy(err);
  }

  #stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#watch?.stop();
    clearTimeout(this.#idle);
    this.#unfollow?.();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.#started) this.#stop();
    this.req.resume(); // whatever is left of the body is read and dropped until the connection closes
    cb(err);
  }
}

/**
 * Follows `req`'s body: `data` for each piece, `end` when it is complete,
 * `aborted` when the connection fails or closes before it is. Returns the
 * function that stops following; an error listener stays, so that a
 * connection cut later cannot crash the process.
 */
function followBody(req: IncomingMessage, data: (chunk: Buffer) => void, end: () => void, aborted: () => void): () => void {
  const onClose = (): void => {
    if (!req.complete) aborted();
  };
  req.on('data', data);
  req.on('end', end);
  req.on('close', onClose);
  req.on('error', aborted);
  return () => {
    req.off('data', data);
    req.off('end', end);
    req.off('close', onClose);
    req.off('error', aborted);
    req.on('error', noop);
  };
}

function noop(): void {}
