/*
 * DPoP keys and proofs for the issue-13 regressions (made with jose, as a
 * client library makes them).
 */
import { generatePrimeSync, randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import { request } from 'undici';

export { dpopKey, proofFor as proof, type DpopKey } from '../helpers/dpop.js';

/** A GET on a new connection each time (`Connection: close`), so that a cluster's primary hands each to the next worker. */
export async function freshGet(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const res = await request(url, { headers: { ...headers, connection: 'close' } });
  return { status: res.statusCode, body: await res.body.text() };
}

const b64 = (x: bigint): string => {
  let h = x.toString(16);
  if (h.length % 2) h = `0${h}`;
  return Buffer.from(h, 'hex').toString('base64url');
};

function inverse(a: bigint, m: bigint): bigint | undefined {
  let [r0, r1, s0, s1] = [((a % m) + m) % m, m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return r0 === 1n ? ((s0 % m) + m) % m : undefined;
}

/**
 * A valid RSA key pair (private JWK) whose public exponent is as long as its
 * `bits`-bit modulus, instead of 65537: every signature check with it is a
 * full-length modular exponentiation.
 */
export function rsaKeyWithHugeExponent(bits = 2048): JWK {
  for (;;) {
    const p = generatePrimeSync(bits / 2, { bigint: true }) as bigint;
    const q = generatePrimeSync(bits / 2, { bigint: true }) as bigint;
    const n = p * q;
    if (n.toString(2).length !== bits) continue;
    const phi = (p - 1n) * (q - 1n);
    for (let i = 0; i < 50; i++) {
      const e = ((BigInt(`0x${randomBytes(bits / 8).toString('hex')}`) % n) | 1n) | (1n << BigInt(bits - 2));
      const d = inverse(e, phi);
      const qi = inverse(q, p);
      if (d === undefined || qi === undefined) continue;
      return { kty: 'RSA', n: b64(n), e: b64(e), d: b64(d), p: b64(p), q: b64(q), dp: b64(d % (p - 1n)), dq: b64(d % (q - 1n)), qi: b64(qi) };
    }
  }
}
