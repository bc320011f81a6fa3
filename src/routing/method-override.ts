/**
 * Headers that change the method an upstream acts on (Express's
 * method-override, ASP.NET, Symfony, Google's APIs). Every front door decides
 * on the method it sees (a CORS preflight passes without a token), so a
 * request must not mean one method to the gateway and another to the
 * upstream: such a request is refused (405) wherever it arrives.
 */
export const METHOD_OVERRIDE_HEADERS: readonly string[] = Object.freeze(['x-http-method-override', 'x-http-method', 'x-method-override']);

/** Whether the header asks the upstream to act on another method (any case, `_` or `-`: CGI-style upstreams read both alike). */
export function isMethodOverride(name: string): boolean {
  const lower = name.toLowerCase();
  return METHOD_OVERRIDE_HEADERS.includes(lower.includes('_') ? lower.replaceAll('_', '-') : lower);
}
