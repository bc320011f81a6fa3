import type { ActiveToken } from '../cache/entry.js';

/**
 * A claim value that may be sent as a header value: printable ASCII, spaces
 * only inside, at most 4096 characters. Anything else (CR, LF or another
 * control character, non-ASCII, an empty string) could split or corrupt the
 * header, or be read differently by the gateway and the API, and is not sent.
 */
const SAFE_VALUE = /^[\x21-\x7E](?:[\x20-\x7E]{0,4094}[\x21-\x7E])?$/;

/**
 * Identity headers of an allow (`forward_auth.identity_headers`): claim name
 * to header name. A claim that is a string of safe characters is sent as
 * is, a finite number in its decimal form; a missing claim, any other type
 * (object, array, boolean, null) or an unsafe string is not sent.
 */
export class IdentityHeaders {
  readonly #pairs: readonly (readonly [claim: string, header: string])[];
  /** Every configured header name, lower case. */
  readonly names: readonly string[];

  constructor(mapping: Readonly<Record<string, string>>) {
    this.#pairs = Object.entries(mapping).map(([claim, header]) => [claim, header.toLowerCase()] as const);
    this.names = this.#pairs.map(([, header]) => header);
  }

  /** Appends `name, value` pairs for `token`'s claims to `out`. */
  append(token: ActiveToken, out: string[]): void {
    let claims: Readonly<Record<string, unknown>>;
    try {
      claims = token.claims;
    } catch {
      return; // cannot happen for a cached JWT (checked on arrival); sends nothing rather than fail the allow
    }
    for (const [claim, header] of this.#pairs) {
      if (!Object.hasOwn(claims, claim)) continue;
      const v = claims[claim];
      if (typeof v === 'string') {
        if (SAFE_VALUE.test(v)) out.push(header, v);
      } else if (typeof v === 'number' && Number.isFinite(v)) {
        out.push(header, String(v));
      }
    }
  }
}
