import type { IncomingMessage } from 'node:http';
import type { PurgeRequest } from '../cache/purge.js';

/*
 * The body of `POST /cache/purge`: read with a size bound and a deadline,
 * then parsed (form or JSON) into a `PurgeRequest`. Every refusal says what
 * is wrong and never repeats what was sent: a token pasted into the wrong
 * field must not come back in a response or a log line.
 */

/** Bounds of a purge request's body. */
export const PURGE_BODY = Object.freeze({
  /** Bytes; more is a 413 (a token of `maxToken` characters, percent-encoded in a form at worst three bytes each, fits). */
  maxBytes: 256 * 1024,
  /** Milliseconds to receive the whole body; slower is a 408 (below the listener's own request timeout, so this answers first). */
  timeoutMs: 5000,
  /** Characters of a token: the largest `max_token_length` a route may have (a longer token is never cached). */
  maxToken: 65536,
  /** Characters of a `sub` or `client_id`. */
  maxName: 1024,
});

/** A refusal: status and the message of the `invalid_request`-style body. */
export interface BodyProblem {
  readonly status: 400 | 408 | 413 | 415;
  readonly message: string;
}

const FIELDS = Object.freeze({ token: PURGE_BODY.maxToken, sub: PURGE_BODY.maxName, client_id: PURGE_BODY.maxName });
type Field = keyof typeof FIELDS;
const ONE_OF = 'exactly one of token, sub or client_id is required';

type Kind = 'form' | 'json';

/** The body's syntax from its `Content-Type` (UTF-8 only), or undefined when it is not one this endpoint takes. */
export function purgeBodyKind(contentType: string | undefined): Kind | undefined {
  if (contentType === undefined) return undefined;
  const [type, ...params] = contentType.split(';');
  const media = type!.trim().toLowerCase();
  const kind = media === 'application/x-www-form-urlencoded' ? 'form' : media === 'application/json' ? 'json' : undefined;
  for (const p of params) {
    const eq = p.indexOf('=');
    const name = p.slice(0, eq === -1 ? p.length : eq).trim().toLowerCase();
    const value = eq === -1 ? '' : p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase();
    if (name === 'charset' && value !== 'utf-8' && value !== 'utf8') return undefined;
  }
  return kind;
}

/** Whether the request announces a body (a length other than 0, or chunks). */
export function announcesBody(req: IncomingMessage): boolean {
  return (req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding'] !== undefined;
}

/**
 * Reads the whole body, at most `PURGE_BODY.maxBytes` within
 * `PURGE_BODY.timeoutMs`. `aborted`: the client went away (nothing to
 * answer). On a refusal the rest of the body is left unread (the caller
 * answers with `connection: close`).
 */
export function readPurgeBody(req: IncomingMessage, limits: { maxBytes: number; timeoutMs: number } = PURGE_BODY): Promise<Buffer | BodyProblem | 'aborted'> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limits.maxBytes) return Promise.resolve(tooLarge(limits.maxBytes));
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: Buffer | BodyProblem | 'aborted') => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('error', onGone).off('close', onGone);
      if (result !== 'aborted' && !(result instanceof Buffer)) req.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limits.maxBytes) return finish(tooLarge(limits.maxBytes));
      chunks.push(chunk);
    };
    const onEnd = () => finish(Buffer.concat(chunks, size));
    const onGone = () => finish('aborted');
    const timer = setTimeout(() => finish({ status: 408, message: `The request body did not arrive within ${limits.timeoutMs} ms` }), limits.timeoutMs);
    timer.unref();
    req.on('data', onData).once('end', onEnd).once('error', onGone).once('close', onGone);
  });
}

function tooLarge(maxBytes: number): BodyProblem {
  return { status: 413, message: `The request body is larger than ${maxBytes} bytes` };
}

/**
 * The purge a body asks for: `token=...`, `sub=...` or `client_id=...` as a
 * form, or `{"token": "..."}` etc. as JSON; exactly one field, a non-empty
 * string within its length bound, nothing else.
 */
export function parsePurgeBody(kind: Kind, body: Buffer): PurgeRequest | BodyProblem {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(body);
  } catch {
    return invalid('the body is not valid UTF-8');
  }
  if (text.trim() === '') return invalid(`the body is empty: ${ONE_OF}`);
  const fields: Array<[string, unknown]> = [];
  if (kind === 'json') {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return invalid('the body is not valid JSON');
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return invalid(`the body must be a JSON object: ${ONE_OF}`);
    fields.push(...Object.entries(value));
  } else {
    fields.push(...new URLSearchParams(text));
  }
  // Unknown names are not repeated either: a token sent as a name would be.
  if (fields.some(([name]) => !Object.hasOwn(FIELDS, name))) return invalid(`only token, sub or client_id may be sent: ${ONE_OF}`);
  if (fields.length !== 1) {
    const names = [...new Set(fields.map(([name]) => name))];
    if (names.length === 1 && fields.length > 1) return invalid(`${names[0]} is given more than once`);
    return invalid(fields.length === 0 ? `the body has no field: ${ONE_OF}` : `${names.join(' and ')} are given together: ${ONE_OF}`);
  }
  const [name, value] = fields[0] as [Field, unknown];
  if (typeof value !== 'string' || value === '') return invalid(`${name} must be a non-empty string`);
  if (value.length > FIELDS[name]) return invalid(`${name} is longer than ${FIELDS[name]} characters`);
  return name === 'token' ? { token: value } : name === 'sub' ? { sub: value } : { client_id: value };
}

function invalid(message: string): BodyProblem {
  return { status: 400, message: `Invalid purge request: ${message}` };
}

/** Whether `x` is a refusal rather than a request. */
export function isBodyProblem(x: PurgeRequest | BodyProblem | Buffer | 'aborted'): x is BodyProblem {
  return typeof x === 'object' && !(x instanceof Buffer) && 'status' in x;
}
