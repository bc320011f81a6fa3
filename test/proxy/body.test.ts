/*
 * The body module on its own: readBody() keeps every byte in order whatever
 * the chunking, spills past the memory bound to a file that is never left in
 * the directory, and refuses past the size bound; transferCoding() accepts
 * only `chunked` alone.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { BODY_ABORTED, BODY_TOO_LARGE, BODY_TOO_SLOW, readBody, transferCoding, type BodyLimits, type BufferedBody } from '../../src/proxy/body.js';

/** A stand-in for IncomingMessage: `complete` turns true just before the end, as with Node's parser. */
function fakeRequest(chunks: Buffer[], opts: { stallAfter?: number } = {}): IncomingMessage {
  let i = 0;
  const req = new Readable({
    read() {
      if (opts.stallAfter !== undefined && i >= opts.stallAfter) return; // the client goes quiet
      if (i < chunks.length) {
        this.push(chunks[i++]);
        return;
      }
      (this as unknown as { complete: boolean }).complete = true;
      this.push(null);
    },
  });
  return Object.assign(req, { complete: false }) as unknown as IncomingMessage;
}

/** readBody() as a promise. */
function bufferBody(req: IncomingMessage, l: BodyLimits): Promise<BufferedBody> {
  return new Promise((resolve, reject) => readBody(req, l, resolve, reject));
}

async function collect(data: Buffer | Readable): Promise<Buffer> {
  if (Buffer.isBuffer(data)) return data;
  const parts: Buffer[] = [];
  for await (const c of data) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('readBody', () => {
  let dir: string;
  // The module's timers are unref'd (a server's listening socket keeps the
  // process alive); here nothing else would.
  let alive: NodeJS.Timeout;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'h3-body-unit-'));
    alive = setInterval(() => {}, 1000);
  });
  after(async () => {
    clearInterval(alive);
    await rm(dir, { recursive: true, force: true });
  });
  const limits = (over: Partial<BodyLimits> = {}): BodyLimits => ({ maxBytes: 1 << 20, memoryBytes: 4096, tempDir: dir, minRate: 0, windowMs: 1000, ...over });

  test('property: any body within the bound comes back byte for byte, from memory or a temporary file, and no file is left', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 20_000 }), { maxLength: 12 }),
        fc.integer({ min: 1024, max: 30_000 }),
        async (arrays, memoryBytes) => {
          const chunks = arrays.map((a) => Buffer.from(a));
          const whole = Buffer.concat(chunks);
          const body = await bufferBody(fakeRequest(chunks), limits({ memoryBytes }));
          try {
            assert.equal(body.length, whole.length);
            assert.equal(Buffer.isBuffer(body.data), whole.length <= memoryBytes, 'kept in memory exactly when within memoryBytes');
            assert.ok((await collect(body.data)).equals(whole));
            assert.deepEqual(await readdir(dir), []);
          } finally {
            body.dispose();
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  test('property: a body past maxBytes is refused with BODY_TOO_LARGE, whatever the chunking, and no file is left', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 10 }), fc.integer({ min: 0, max: 20_000 }), async (sizes, maxBytes) => {
        const total = sizes.reduce((a, b) => a + b, 0);
        fc.pre(total > maxBytes);
        await assert.rejects(bufferBody(fakeRequest(sizes.map((n) => Buffer.alloc(n, 1))), limits({ maxBytes })), (err) => err === BODY_TOO_LARGE);
        await new Promise((r) => setTimeout(r, 5));
        assert.deepEqual(await readdir(dir), []);
      }),
      { numRuns: 30 },
    );
  });

  test('a client that goes quiet under min rate is refused with BODY_TOO_SLOW after a window', async () => {
    const started = Date.now();
    await assert.rejects(bufferBody(fakeRequest([Buffer.alloc(10)], { stallAfter: 1 }), limits({ minRate: 1000, windowMs: 150 })), (err) => err === BODY_TOO_SLOW);
    assert.ok(Date.now() - started >= 100);
  });

  test('a request destroyed mid-body is BODY_ABORTED', async () => {
    const req = fakeRequest([Buffer.alloc(10_000)], { stallAfter: 1 });
    const pending = bufferBody(req, limits());
    setTimeout(() => req.destroy(), 20);
    await assert.rejects(pending, (err) => err === BODY_ABORTED);
    assert.deepEqual(await readdir(dir), []);
  });

  test('property: temp-file descriptor leak on an aborted read: whenever abort() comes (before, during or after the spill), the read fails with its error and the descriptor is closed', { skip: !existsSync('/proc/self/fd') }, async () => {
    const openFds = async (): Promise<number> => {
      let n = 0;
      for (const fd of await readdir('/proc/self/fd')) if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')).startsWith(dir)) n++;
      return n;
    };
    const baseline = await openFds();
    const REASON = new Error('ended early');
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 15 }), async (delay) => {
        // A client that sent past the memory bound, then went quiet (its request detached, never closing).
        const req = fakeRequest([Buffer.alloc(10_000, 1)], { stallAfter: 1 });
        const settled = new Promise<Error>((resolve, reject) => {
          const read = readBody(req, limits(), () => reject(new Error('completed')), resolve);
          setTimeout(() => read.abort(REASON), delay);
        });
        assert.equal(await settled, REASON);
        for (let i = 0; i < 50 && (await openFds()) !== baseline; i++) await new Promise((r) => setTimeout(r, 10));
        assert.equal(await openFds(), baseline);
      }),
      { numRuns: 20 },
    );
  });
});

describe('transferCoding', () => {
  test('chunked alone, in any case and with surrounding whitespace: chunked; none: none', () => {
    for (const v of ['chunked', 'CHUNKED', ' Chunked\t']) assert.equal(transferCoding(['Host', 'x', 'Transfer-Encoding', v]), 'chunked');
    assert.equal(transferCoding(['Host', 'x', 'Content-Length', '3']), 'none');
  });

  test('property: any list with another coding, on one line or several, is other', () => {
    const coding = fc.constantFrom('gzip', 'deflate', 'identity', 'br', 'chunked', 'x-y', 'Chunked');
    fc.assert(
      fc.property(fc.array(coding, { minLength: 1, maxLength: 4 }), fc.boolean(), (list, split) => {
        const raw = split ? list.flatMap((c) => ['transfer-encoding', c]) : ['Transfer-Encoding', list.join(', ')];
        const expected = list.length === 1 && list[0]!.toLowerCase() === 'chunked' ? 'chunked' : 'other';
        assert.equal(transferCoding(raw), expected);
      }),
    );
  });
});
