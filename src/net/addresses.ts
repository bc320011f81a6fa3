import { BlockList, isIP, isIPv4 } from 'node:net';

/** An IPv4 address as itself rather than IPv4-mapped IPv6 (`::ffff:10.0.0.1`), so one client has one key. */
export function unmapped(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/**
 * `trusted_proxies`: the peers whose `X-Forwarded-For` (and the rest of the
 * proxy-header family) is believed. Built once from the validated entries
 * (addresses and CIDRs).
 */
export class TrustedProxies {
  readonly #list: BlockList;

  private constructor(list: BlockList) {
    this.#list = list;
  }

  /** The list for `entries`, or undefined when there are none (nobody is trusted). */
  static from(entries: readonly string[]): TrustedProxies | undefined {
    if (entries.length === 0) return undefined;
    const list = new BlockList();
    for (const entry of entries) {
      const [ip, bits] = entry.split('/') as [string, string | undefined];
      const type = isIPv4(ip) ? 'ipv4' : 'ipv6';
      if (bits === undefined) list.addAddress(ip, type);
      else list.addSubnet(ip, Number(bits), type);
    }
    return new TrustedProxies(list);
  }

  /** Whether `address` (IPv4, IPv6 or IPv4-mapped IPv6) is a trusted proxy; anything else is not. */
  has(address: string | undefined): boolean {
    if (address === undefined || isIP(address) === 0) return false;
    if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return this.#list.check(address.slice(7), 'ipv4');
    return this.#list.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }

  /**
   * The address a request's introspections are queued under: the peer, or,
   * when the peer is a trusted proxy, the right-most `X-Forwarded-For` entry
   * that is not itself a trusted proxy (entries left of it are the client's
   * own claims). When every entry is a trusted proxy, the left-most one.
   */
  clientAddress(peer: string | undefined, xff: string | undefined): string {
    const address = unmapped(peer ?? '');
    if (xff === undefined || !this.has(address)) return address;
    const hops = xff.split(',');
    let client = address;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!.trim();
      if (hop === '') continue;
      client = unmapped(hop);
      if (!this.has(hop)) break;
    }
    return client;
  }
}
