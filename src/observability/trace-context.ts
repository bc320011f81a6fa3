/*
 * W3C Trace Context (level 1): the `traceparent` and `tracestate` headers a
 * request carries, checked before they are passed on to the upstream and to
 * the introspection call. The gateway forwards them unchanged when it records
 * no spans of its own (it is then no participant, only a carrier), and
 * replaces `traceparent` with its own span's when an OpenTelemetry SDK is
 * registered (see tracing.ts).
 */

/** `version-trace_id-parent_id-flags`, lower-case hex; a later version may append `-...` fields. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';
/**
 * Longest `tracestate` passed on. The specification asks vendors to pass on
 * at least 512 characters and lets them drop the header past that; one over
 * it is dropped whole (its entries are another vendor's to cut).
 */
export const MAX_TRACESTATE = 512;
/** Visible ASCII and space: anything else in a tracestate is not one. */
const TRACESTATE = /^[\x20-\x7e]*$/;

/** A request's trace context, once checked. */
export interface TraceHeaders {
  readonly traceparent: string;
  /** Present only beside a valid traceparent, and within MAX_TRACESTATE. */
  readonly tracestate: string | undefined;
}

/** The parts of a valid traceparent, or undefined. */
export function parseTraceparent(value: string): { traceId: string; spanId: string; flags: number } | undefined {
  const m = TRACEPARENT.exec(value);
  if (m === null) return undefined;
  const version = m[1]!;
  // ff is forbidden; version 00 has exactly four fields.
  if (version === 'ff' || (version === '00' && m[5] !== undefined)) return undefined;
  if (m[2] === ZERO_TRACE || m[3] === ZERO_SPAN) return undefined;
  return { traceId: m[2]!, spanId: m[3]!, flags: parseInt(m[4]!, 16) };
}

/**
 * The trace context to pass on: `traceparent` when valid (a repeated one is
 * not: the specification says to treat it as absent), with `tracestate` when
 * it is valid text within MAX_TRACESTATE characters. An invalid traceparent
 * takes its tracestate with it.
 */
export function traceHeaders(traceparent: string | undefined, tracestate: string | undefined): TraceHeaders | undefined {
  if (traceparent === undefined) return undefined;
  const parsed = parseTraceparent(traceparent);
  if (parsed === undefined) return undefined;
  const state = tracestate !== undefined && tracestate.length <= MAX_TRACESTATE && TRACESTATE.test(tracestate) && tracestate.trim() !== '' ? tracestate : undefined;
  // A later version is passed on as what this gateway understands of it (version 00, 55 characters):
  // never a client's text of any length in the calls the gateway makes.
  return { traceparent: traceparent.length === 55 && traceparent.startsWith('00-') ? traceparent : formatTraceparent(parsed.traceId, parsed.spanId, parsed.flags), tracestate: state };
}

/** A traceparent for a span context (version 00). */
export function formatTraceparent(traceId: string, spanId: string, flags: number): string {
  return `00-${traceId}-${spanId}-${flags & 0xff ? (flags & 0xff).toString(16).padStart(2, '0') : '00'}`;
}
