/*
 * i13b regression (README): the Caddy instructions for DPoP let a client's
 * own `X-DPoP-Verified` reach the API on Caddy 2.9 and later (until the fix
 * of GHSA-7r4p-vjf4-gxv4, caddyserver/caddy#7545).
 *
 * "Behind your gateway" tells Caddy users `copy_headers Authorization DPoP
 * X-DPoP-Verified` and, only "Before Caddy 2.9", a clean-up of copied
 * headers the decision lacked. Since caddyserver/caddy#6608 (2.9), a header
 * listed in copy_headers that the auth answer lacks is skipped, so the
 * client's copy is kept: every allow without a verified proof (a Bearer
 * request, any request on a `dpop.forward: bearer` route, a CORS preflight)
 * reaches the API with the client's `X-DPoP-Verified: <any jkt>` as if the
 * gateway had set it (and its `DPoP`), against the README's own "Every front
 * door removes a client's X-DPoP-Verified and DPoP". The README knows this
 * for identity headers (its Caddy 2.9 row: `request_header -X-Subject`
 * before `forward_auth`) but not for X-DPoP-Verified; http.ts's comment
 * ("Traefik and Caddy drop a copied header the answer lacks") holds for
 * Traefik only.
 *
 * Fix (docs): in the Caddy bullet, `request_header -X-DPoP-Verified` before
 * `forward_auth` for every version (and `request_header -Client-Cert
 * -Client-Cert-Chain` there too, not only before 2.9), and say that a
 * Bearer request's client `DPoP` passes on 2.9+ (or copy the decision's
 * proof under another name).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ROOT } from '../helpers/cli.js';

test('i13b: the README tells Caddy users (every version) to remove a client X-DPoP-Verified before forward_auth', () => {
  const readme = readFileSync(`${ROOT}/README.md`, 'utf8');
  const start = readme.indexOf('## Sender-constrained tokens');
  assert.ok(start > 0, 'the README has its sender-constrained section');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 10));
  const bullet = section.split('\n').find((l) => l.startsWith('- **Caddy**'));
  assert.ok(bullet !== undefined, 'the section has a Caddy bullet');
  // Sentences of the bullet that are not limited to old Caddy versions.
  const everyVersion = bullet.split(/(?<=\.) (?=[A-Z])/).filter((s) => !/^Before Caddy 2\.9/.test(s));
  assert.ok(
    everyVersion.some((s) => s.includes('request_header -X-DPoP-Verified')),
    `Caddy 2.9+ keeps a client's copy of a copy_headers header the decision lacks; the bullet never removes it for those versions:\n${bullet}`,
  );
});
