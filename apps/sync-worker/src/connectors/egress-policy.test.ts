import { describe, expect, it } from 'vitest';
import { ConnectorError } from './connector';
import { createEgressPolicy, deniedBy, parseEgressAllowList, type EgressLookup } from './egress-policy';

/** A resolver that answers from a table, so no test depends on real DNS. */
function table(entries: Record<string, string[]>): EgressLookup {
  return async (host) => {
    const found = entries[host];
    if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return found.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a refusal').toBeInstanceOf(ConnectorError);
  return (err as Error).message;
}

describe('egress policy: which addresses a connector may reach', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['169.254.1.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['febf::1', 'link-local'],
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['100.64.0.1', 'private'],
    ['100.127.255.255', 'private'],
    ['169.254.169.254', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['224.0.0.1', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.1.2.3', 'private'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::ffff:192.168.0.1', 'private'],
    ['64:ff9b::a9fe:a9fe', 'metadata'],
    ['64:ff9b::7f00:1', 'loopback'],
    ['2002:7f00:1::', 'loopback'],
    ['2002:c0a8:101::1', 'private'],
  ])('denies %s as %s', (address, rule) => {
    expect(deniedBy(address)?.name).toBe(rule);
  });

  it.each(['8.8.8.8', '93.184.216.34', '172.32.0.1', '172.15.255.255', '100.128.0.1', '11.0.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808'])(
    'lets the public address %s through',
    (address) => {
      expect(deniedBy(address)).toBeUndefined();
    },
  );

  it('refuses a denied literal, naming the rule and the connector, without resolving it', async () => {
    let lookups = 0;
    const policy = createEgressPolicy({ lookup: async () => (lookups++, [{ address: '8.8.8.8', family: 4 }]) });
    expect(await refusal(policy.resolve('127.0.0.1', 80, 'builtin:http-json'))).toMatch(
      /^builtin:http-json: egress to 127\.0\.0\.1:80 refused: loopback address \(127\.0\.0\.0\/8\).*SYNC_WORKER_EGRESS_ALLOW/,
    );
    expect(await refusal(policy.resolve('::ffff:127.0.0.1', 80, 'x'))).toMatch(/loopback/);
    expect(await refusal(policy.resolve('[::1]', 80, 'x'))).toMatch(/loopback/);
    expect(lookups).toBe(0);
  });

  it('reads odd encodings of an address as the address they mean: decimal, octal, hex, short forms', async () => {
    const policy = createEgressPolicy({ lookup: table({}) });
    for (const host of ['2130706433', '0177.0.0.1', '0x7f.0.0.1', '0x7f000001', '127.1', '017700000001', '0xA9FEA9FE', '0251.0376.0251.0376']) {
      expect(await refusal(policy.resolve(host, 80, 'x')), host).toMatch(/refused: (loopback|metadata)/);
    }
  });

  it('checks every address a name resolves to, and refuses the name if any one is denied (a rebinding answer)', async () => {
    const policy = createEgressPolicy({
      lookup: table({ 'api.example.test': ['93.184.216.34'], 'rebind.example.test': ['93.184.216.34', '127.0.0.1'], 'inside.example.test': ['10.0.0.7'], 'v6.example.test': ['::ffff:169.254.169.254'] }),
    });
    expect(await policy.resolve('api.example.test', 443, 'x')).toEqual({ host: 'api.example.test', address: '93.184.216.34', family: 4 });
    expect(await refusal(policy.resolve('rebind.example.test', 443, 'x'))).toMatch(/egress to rebind\.example\.test:443 refused: it resolves to a loopback address/);
    expect(await refusal(policy.resolve('inside.example.test', 443, 'x'))).toMatch(/private address \(10\.0\.0\.0\/8\)/);
    expect(await refusal(policy.resolve('v6.example.test', 443, 'x'))).toMatch(/metadata/);
    const message = await refusal(policy.resolve('inside.example.test', 443, 'x'));
    expect(message, 'the resolved address is not told').not.toContain('10.0.0.7');
  });

  it('refuses metadata host names before resolving them, and a name that does not resolve with a clear reason', async () => {
    const policy = createEgressPolicy({ lookup: table({ 'metadata.google.internal': ['8.8.8.8'] }) });
    expect(await refusal(policy.resolve('metadata.google.internal', 80, 'x'))).toMatch(/refused: metadata host name/);
    expect(await refusal(policy.resolve('METADATA.google.internal.', 80, 'x'))).toMatch(/refused: metadata host name/);
    expect(await refusal(policy.resolve('nowhere.example.test', 80, 'x'))).toMatch(/could not resolve nowhere\.example\.test/);
  });

  it('lets an operator allow a range by CIDR, with mapped forms of it too', async () => {
    const policy = createEgressPolicy({ allow: ['127.0.0.0/8', 'fd00::/8'], lookup: table({ localhost: ['127.0.0.1'] }) });
    expect(await policy.resolve('127.0.0.1', 5432, 'x')).toMatchObject({ address: '127.0.0.1' });
    expect(await policy.resolve('::ffff:127.0.0.1', 5432, 'x')).toMatchObject({ family: 6 });
    expect(await policy.resolve('localhost', 5432, 'x')).toMatchObject({ address: '127.0.0.1' });
    expect(await policy.resolve('fd00:ec2::254', 80, 'x')).toMatchObject({ address: 'fd00:ec2::254' });
    expect(await refusal(policy.resolve('10.0.0.1', 80, 'x'))).toMatch(/private/);
    expect(await refusal(policy.resolve('169.254.169.254', 80, 'x'))).toMatch(/metadata/);
  });

  it('lets an operator allow one address or one host name, on any port or on one port only', async () => {
    const policy = createEgressPolicy({
      allow: ['10.1.2.3', 'db.internal.test', 'cache.internal.test:6379', '127.0.0.1:5432', '[::1]:8080'],
      lookup: table({ 'db.internal.test': ['10.9.9.9'], 'cache.internal.test': ['10.8.8.8'], 'other.internal.test': ['10.9.9.9'] }),
    });
    expect(await policy.resolve('10.1.2.3', 1, 'x')).toMatchObject({ address: '10.1.2.3' });
    expect(await refusal(policy.resolve('10.1.2.4', 1, 'x'))).toMatch(/private/);
    expect(await policy.resolve('DB.internal.test.', 5432, 'x')).toMatchObject({ address: '10.9.9.9' });
    expect(await refusal(policy.resolve('other.internal.test', 5432, 'x')), 'a name is allowed, not what it resolves to').toMatch(/private/);
    expect(await policy.resolve('cache.internal.test', 6379, 'x')).toMatchObject({ address: '10.8.8.8' });
    expect(await refusal(policy.resolve('cache.internal.test', 6380, 'x'))).toMatch(/private/);
    expect(await policy.resolve('127.0.0.1', 5432, 'x')).toMatchObject({ address: '127.0.0.1' });
    expect(await refusal(policy.resolve('127.0.0.1', 5433, 'x'))).toMatch(/loopback/);
    expect(await policy.resolve('::1', 8080, 'x')).toMatchObject({ address: '::1' });
  });

  it('parses the allow-list, normalizing entries and listing every bad one', () => {
    expect(parseEgressAllowList(' 10.0.0.0/8, LocalHost. ,127.1:5432,[::1],fd00::/8 ,,')).toEqual({
      entries: ['10.0.0.0/8', 'localhost', '127.0.0.1:5432', '::1', 'fd00::/8'],
      errors: [],
    });
    expect(parseEgressAllowList('').entries).toEqual([]);
    const bad = parseEgressAllowList('10.0.0.0/33,::/129,bad host,http://x,a:99999,1.2.3.4/x');
    expect(bad.entries).toEqual([]);
    expect(bad.errors).toHaveLength(6);
    expect(bad.errors[0]).toMatch(/10\.0\.0\.0\/33/);
    expect(() => createEgressPolicy({ allow: ['not a host'] })).toThrow(/SYNC_WORKER_EGRESS_ALLOW/);
  });
});
