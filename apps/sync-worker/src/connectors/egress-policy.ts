import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { ConnectorError } from './connector';

/** One address a name resolves to. */
export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a host name to every address it has (the default asks the system resolver, as a connect would). */
export type EgressLookup = (host: string) => Promise<ResolvedAddress[]>;

/** Where a connector may connect: the host it was given and the one checked address to connect to. */
export interface EgressTarget {
  host: string;
  address: string;
  family: 4 | 6;
}

/** Decides, once per connection, whether a connector may reach `host:port`. */
export interface EgressPolicy {
  /**
   * Resolves `host` once, checks every address it resolves to, and returns the address to connect
   * to; throws a ConnectorError naming the rule that refuses it. Connect to `address` and nothing
   * else, so that a second resolution cannot answer differently (DNS rebinding).
   */
  resolve(host: string, port: number, connector: string): Promise<EgressTarget>;
}

/** A range that a connector may not reach unless the operator allows it. */
export interface EgressRule {
  name: string;
  cidr: string;
}

const v4Rules: [string, string, number][] = [
  ['metadata', '169.254.169.254', 32],
  ['unspecified', '0.0.0.0', 8],
  ['loopback', '127.0.0.0', 8],
  ['link-local', '169.254.0.0', 16],
  ['private', '10.0.0.0', 8],
  ['private', '172.16.0.0', 12],
  ['private', '192.168.0.0', 16],
  ['private', '100.64.0.0', 10],
  ['private', '192.0.0.0', 24],
  ['private', '198.18.0.0', 15],
  ['multicast', '224.0.0.0', 4],
  ['reserved', '240.0.0.0', 4],
];

const v6Rules: [string, string, number][] = [
  ['metadata', 'fd00:ec2::254', 128],
  ['unspecified', '::', 128],
  ['loopback', '::1', 128],
  // IPv4-compatible addresses (deprecated) and the local-use NAT64 prefix: no public address needs them.
  ['reserved', '::', 96],
  ['reserved', '64:ff9b:1::', 48],
  ['reserved', '100::', 64],
  ['link-local', 'fe80::', 10],
  ['private', 'fec0::', 10],
  ['private', 'fc00::', 7],
  ['multicast', 'ff00::', 8],
];

const metadataHostNames = new Set(['metadata.google.internal', 'metadata.goog', 'metadata']);

interface CompiledRule extends EgressRule {
  list: BlockList;
}

function hex(a: number, b: number): string {
  return ((a << 8) | b).toString(16);
}

/**
 * Every IPv4 rule also applies to the IPv6 forms that carry that IPv4 address: IPv4-mapped
 * (::ffff:a.b.c.d, which node's BlockList already matches against IPv4 rules), NAT64
 * (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::).
 */
function compileRules(): CompiledRule[] {
  const rules: CompiledRule[] = [];
  for (const [name, network, prefix] of v4Rules) {
    const list = new BlockList();
    list.addSubnet(network, prefix, 'ipv4');
    const [a, b, c, d] = network.split('.').map(Number) as [number, number, number, number];
    list.addSubnet(`64:ff9b::${hex(a, b)}:${hex(c, d)}`, 96 + prefix, 'ipv6');
    list.addSubnet(`2002:${hex(a, b)}:${hex(c, d)}::`, 16 + prefix, 'ipv6');
    rules.push({ name, cidr: `${network}/${prefix}`, list });
  }
  for (const [name, network, prefix] of v6Rules) {
    const list = new BlockList();
    list.addSubnet(network, prefix, 'ipv6');
    rules.push({ name, cidr: `${network}/${prefix}`, list });
  }
  return rules;
}

const rules = compileRules();

function familyOf(address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 6 ? 'ipv6' : 'ipv4';
}

/** The first rule that refuses an IP address, or undefined for an address connectors may reach. */
export function deniedBy(address: string): EgressRule | undefined {
  const family = familyOf(address);
  const hit = rules.find((r) => r.list.check(address, family));
  return hit && { name: hit.name, cidr: hit.cidr };
}

/**
 * Normalizes a host the way a URL parser does: lower case, no trailing dot, no brackets, and an IPv4
 * address in any spelling (decimal `2130706433`, octal `0177.0.0.1`, hex `0x7f.1`, short `127.1`)
 * as its dotted form. Undefined when it is neither a host name nor an IP address.
 */
export function normalizeHost(host: string): string | undefined {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) === 6) return bare.toLowerCase();
  if (!/^[A-Za-z0-9._-]+$/.test(bare)) return undefined;
  let hostname: string;
  try {
    hostname = new URL(`http://${bare}/`).hostname;
  } catch {
    return undefined;
  }
  if (isIP(hostname)) return hostname;
  const name = hostname.replace(/\.$/, '');
  return name === '' ? undefined : name;
}

type AllowEntry = { kind: 'address'; list: BlockList; port?: number } | { kind: 'name'; name: string; port?: number };

/**
 * Parses `SYNC_WORKER_EGRESS_ALLOW`: comma-separated CIDRs (`10.0.0.0/8`, `fd00::/8`), IP addresses
 * and host names, each of the last two optionally with `:port` (`[::1]:5432` for IPv6). Returns the
 * entries normalized and one error per bad entry.
 */
export function parseEgressAllowList(text: string): { entries: string[]; errors: string[] } {
  const entries: string[] = [];
  const errors: string[] = [];
  for (const raw of text.split(',').map((e) => e.trim()).filter((e) => e !== '')) {
    const parsed = parseEntry(raw);
    if (typeof parsed === 'string') entries.push(parsed);
    else errors.push(`${JSON.stringify(raw.slice(0, 100))}: ${parsed.error}`);
  }
  return { entries, errors };
}

function parseEntry(raw: string): string | { error: string } {
  const slash = raw.indexOf('/');
  if (slash >= 0) {
    const network = raw.slice(0, slash);
    const prefixText = raw.slice(slash + 1);
    const version = isIP(network);
    const prefix = Number(prefixText);
    if (!version || !/^\d{1,3}$/.test(prefixText) || prefix > (version === 4 ? 32 : 128)) {
      return { error: 'not a CIDR (an IP address, a slash and a prefix length)' };
    }
    return `${network.toLowerCase()}/${prefix}`;
  }
  if (isIP(raw) === 6) return raw.toLowerCase();
  const m = /^(\[[^\]]*\]|[^:[\]]*)(?::(\d{1,5}))?$/.exec(raw);
  const host = m && normalizeHost(m[1]!);
  if (!m || !host) return { error: 'not a CIDR, an IP address or a host name (with an optional :port)' };
  if (m[2] === undefined) return host;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return { error: 'port out of range' };
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

function compileAllow(entries: readonly string[]): AllowEntry[] {
  const { entries: normalized, errors } = parseEgressAllowList(entries.join(','));
  if (errors.length) throw new Error(`SYNC_WORKER_EGRESS_ALLOW: ${errors.join('; ')}`);
  return normalized.map((entry): AllowEntry => {
    const slash = entry.indexOf('/');
    if (slash >= 0 || isIP(entry)) {
      const network = slash >= 0 ? entry.slice(0, slash) : entry;
      const version = isIP(network);
      const prefix = slash >= 0 ? Number(entry.slice(slash + 1)) : version === 4 ? 32 : 128;
      const list = new BlockList();
      list.addSubnet(network, prefix, version === 4 ? 'ipv4' : 'ipv6');
      return { kind: 'address', list };
    }
    const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(entry)!;
    const host = m[1]!.replace(/^\[|\]$/g, '');
    const port = m[2] === undefined ? undefined : Number(m[2]);
    if (isIP(host)) {
      const list = new BlockList();
      list.addAddress(host, familyOf(host));
      return { kind: 'address', list, port };
    }
    return { kind: 'name', name: host, port };
  });
}

const defaultLookup: EgressLookup = async (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * The connectors' egress policy: loopback, unspecified, link-local, private (RFC 1918, CGNAT, ULA),
 * multicast, reserved and cloud metadata addresses are refused, in every IPv6 form that carries an
 * IPv4 address, unless an `allow` entry (CIDR, address or host name, optionally with a port)
 * permits them. With no `allow` it denies every private destination, as production should.
 */
export function createEgressPolicy(options: { allow?: readonly string[]; lookup?: EgressLookup } = {}): EgressPolicy {
  const allow = compileAllow(options.allow ?? []);
  const lookup = options.lookup ?? defaultLookup;
  const portMatches = (entry: AllowEntry, port: number) => entry.port === undefined || entry.port === port;
  const addressAllowed = (address: string, port: number) =>
    allow.some((e) => e.kind === 'address' && portMatches(e, port) && e.list.check(address, familyOf(address)));

  return {
    async resolve(host, port, connector) {
      const name = normalizeHost(host);
      if (!name) throw new ConnectorError(`${connector}: host must be a host name or an IP address`);
      const shown = `${isIP(name) === 6 ? `[${name}]` : name}:${port}`;
      const refuse = (why: string) =>
        new ConnectorError(`${connector}: egress to ${shown} refused: ${why}; an operator may allow it with SYNC_WORKER_EGRESS_ALLOW`);
      if (isIP(name)) {
        const rule = deniedBy(name);
        if (rule && !addressAllowed(name, port)) throw refuse(`${rule.name} address (${rule.cidr})`);
        return { host: name, address: name, family: isIP(name) as 4 | 6 };
      }
      const nameAllowed = allow.some((e) => e.kind === 'name' && e.name === name && portMatches(e, port));
      if (metadataHostNames.has(name) && !nameAllowed) throw refuse('metadata host name');
      let addresses: ResolvedAddress[];
      try {
        addresses = await lookup(name);
      } catch {
        throw new ConnectorError(`${connector}: could not resolve ${name}`);
      }
      const usable = addresses.filter((a) => isIP(a.address));
      if (usable.length === 0) throw new ConnectorError(`${connector}: could not resolve ${name}`);
      if (!nameAllowed) {
        // Every answer must pass: a name that answers with a public and a private address is refused.
        for (const { address } of usable) {
          const rule = deniedBy(address);
          if (rule && !addressAllowed(address, port)) throw refuse(`it resolves to a ${rule.name} address (${rule.cidr})`);
        }
      }
      const first = usable[0]!;
      return { host: name, address: first.address, family: isIP(first.address) as 4 | 6 };
    },
  };
}
