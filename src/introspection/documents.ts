import { readFileSync } from 'node:fs';
import { Agent, type Dispatcher } from 'undici';
import { hasDuplicateKeys } from './parse.js';
import { isPlainObject } from './dialects/common.js';
import { isUndiciTimeout } from '../net/timeouts.js';

/*
 * GETs of the authorization server's JSON documents (discovery metadata, its
 * JWKS): one call at a time per document, a timer over the whole call, a
 * size bound, the route's TLS trust, no redirects followed, no cookies, no
 * credentials. The gateway's introspection calls have their own transport.
 */

/** Bound on a metadata document or a JWKS: both are a few KiB; many RSA keys with certificate chains stay far below. */
export const MAX_DOCUMENT_BYTES = 256 * 1024;

export interface DocumentFetcherOptions {
  /** Bound on one GET: connect, answer and body. */
  readonly timeoutMs: number;
  /** `false` turns off TLS certificate verification (development only). */
  readonly verifySsl: boolean;
  /** PEM file with the CA(s) to trust. */
  readonly caFile?: string | undefined;
  readonly maxBytes?: number | undefined;
  /** Dispatcher to use instead of own connections (tests). */
  readonly dispatcher?: Dispatcher | undefined;
}

/** Why a document could not be had; `detail` names the URL and the cause, never a body. */
export class DocumentError extends Error {
  override readonly name = 'DocumentError';
  /** `network`: nothing answered (or too late); `status`: an answer that is not 200; `invalid`: a 200 that is not a JSON object. */
  readonly kind: 'network' | 'status' | 'invalid';
  constructor(kind: DocumentError['kind'], detail: string) {
    super(detail);
    this.kind = kind;
  }
}

export class DocumentFetcher {
  readonly #opts: DocumentFetcherOptions;
  readonly #dispatcher: Dispatcher;
  readonly #own: Agent | undefined;

  constructor(opts: DocumentFetcherOptions) {
    this.#opts = opts;
    if (opts.dispatcher !== undefined) {
      this.#dispatcher = opts.dispatcher;
    } else {
      this.#own = new Agent({
        connections: 2,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs,
        connect: {
          timeout: opts.timeoutMs,
          ...(opts.verifySsl ? {} : { rejectUnauthorized: false }),
          ...(opts.caFile ? { ca: readFileSync(opts.caFile) } : {}),
        },
      });
      this.#dispatcher = this.#own;
    }
  }

  /** The JSON object at `url`; throws `DocumentError`. */
  async getJson(url: string): Promise<Record<string, unknown>> {
    const limit = this.#opts.maxBytes ?? MAX_DOCUMENT_BYTES;
    const signal = AbortSignal.timeout(this.#opts.timeoutMs);
    let text: string;
    let status: number;
    try {
      const u = new URL(url);
      const res = await this.#dispatcher.request({
        origin: u.origin,
        path: u.pathname + u.search,
        method: 'GET',
        headers: { accept: 'application/json' },
        // Rare calls (minutes apart): no idle connection is kept.
        reset: true,
        signal,
      });
      // A body given up on (an error status, too large) is destroyed: its abort is expected.
      res.body.on('error', () => {});
      status = res.statusCode;
      if (status !== 200) {
        res.body.destroy();
        throw new DocumentError('status', `GET ${url} answered ${status}`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > limit) {
          res.body.destroy();
          throw new DocumentError('invalid', `GET ${url} answered more than ${limit} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      text = Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      if (err instanceof DocumentError) throw err;
      const e = err as { name?: string; code?: string };
      if (signal.aborted || e.name === 'TimeoutError' || isUndiciTimeout(err)) {
        throw new DocumentError('network', `GET ${url} timed out after ${this.#opts.timeoutMs} ms`);
      }
      throw new DocumentError('network', `GET ${url} failed (${e.code ?? e.name ?? 'error'})`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new DocumentError('invalid', `GET ${url} answered something that is not JSON`);
    }
    if (!isPlainObject(parsed)) throw new DocumentError('invalid', `GET ${url} answered JSON that is not an object`);
    if (hasDuplicateKeys(text)) throw new DocumentError('invalid', `GET ${url} answered JSON with a duplicate member name`);
    return parsed;
  }

  close(): void {
    void this.#own?.close().catch(() => {});
  }
}
