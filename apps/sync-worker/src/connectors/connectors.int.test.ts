import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@coffer/testing';
import { ConnectorError, type SyncRecord } from './connector';
import { createEgressPolicy, type EgressLookup } from './egress-policy';
import { httpJsonSource } from './http-json-source';
import { postgresDestination } from './postgres-destination';

const token = `canary-token-${Math.random().toString(36).slice(2)}`;
const signal = new AbortController().signal;
// The test servers are on loopback, which the default policy refuses: these tests reach them through
// the operator allow-list, as a deployment that syncs from an internal service would.
const local = createEgressPolicy({ allow: ['127.0.0.0/8', '::1'] });

async function collect(it: AsyncIterable<SyncRecord>): Promise<SyncRecord[]> {
  const out: SyncRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

async function* from(records: SyncRecord[]): AsyncIterable<SyncRecord> {
  yield* records;
}

describe('built-in connectors against a real HTTP server and a real Postgres', () => {
  let http: Server;
  let base: string;
  let db: TestDatabase;
  let destination: Record<string, unknown>;

  beforeAll(async () => {
    http = createServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${token}`) return void res.writeHead(401).end();
      if (req.url === '/wrapped') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: [{ id: 1 }] }));
      if (req.url === '/not-json') return void res.writeHead(200).end('<html>');
      if (req.url === '/scalars') return void res.writeHead(200).end('[1, 2]');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ id: 1, name: 'alpha' }, { id: 2, name: 'beta' }]));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    db = await createTestDatabase('coffer_connectors');
    const u = new URL(db.url);
    destination = { host: u.hostname, port: Number(u.port || 5432), database: db.name, username: decodeURIComponent(u.username || 'postgres'), password: decodeURIComponent(u.password), schema: 'dest', table: 'rows' };
  });

  afterAll(async () => {
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
    await db?.drop();
  });

  it('the HTTP JSON source sends the bearer token and yields the records of an array or a data array', async () => {
    const source = httpJsonSource({ egress: local });
    expect(await collect(source.read({ url: `${base}/records`, api_token: token }, signal))).toEqual([{ id: 1, name: 'alpha' }, { id: 2, name: 'beta' }]);
    expect(await collect(source.read({ url: `${base}/wrapped`, api_token: token }, signal))).toEqual([{ id: 1 }]);
  });

  it('the HTTP JSON source fails with a reason that names the status, never the token', async () => {
    const source = httpJsonSource({ egress: local });
    const denied = await collect(source.read({ url: `${base}/records`, api_token: 'wrong-token' }, signal)).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(ConnectorError);
    expect((denied as Error).message).toMatch(/HTTP 401/);
    await expect(collect(source.read({ url: `${base}/not-json`, api_token: token }, signal))).rejects.toThrow(/not JSON/);
    await expect(collect(source.read({ url: `${base}/scalars`, api_token: token }, signal))).rejects.toThrow(/record 0 is not a JSON object/);
    await expect(collect(source.read({ url: 'file:///etc/passwd', api_token: token }, signal))).rejects.toThrow(/http or https/);
    const refused = await collect(source.read({ url: 'http://127.0.0.1:1/x', api_token: token }, signal)).catch((e: unknown) => e as Error);
    expect((refused as Error).message).not.toContain(token);
  });

  it('the Postgres destination writes every record in order as jsonb, in one transaction', async () => {
    const records = Array.from({ length: 1203 }, (_, i) => ({ id: i, name: `n${i}` }));
    expect(await postgresDestination({ egress: local }).write(destination, from(records), signal)).toBe(records.length);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ data: SyncRecord }>('select data from dest.rows order by id');
      expect(rows.map((r) => r.data)).toEqual(records);
      async function* failing(): AsyncIterable<SyncRecord> {
        yield { id: 'partial' };
        throw new ConnectorError('source broke');
      }
      await expect(postgresDestination({ egress: local }).write(destination, failing(), signal)).rejects.toThrow('source broke');
      const count = await client.query<{ n: string }>('select count(*) as n from dest.rows');
      expect(Number(count.rows[0]!.n)).toBe(records.length);
    } finally {
      await client.end();
    }
  });

  it('the Postgres destination refuses a bad config and reports a failed login without the password', async () => {
    await expect(postgresDestination({ egress: local }).write({ ...destination, port: 'x' }, from([]), signal)).rejects.toThrow(/port must be a port number/);
    await expect(postgresDestination({ egress: local }).write({ ...destination, table: '' }, from([]), signal)).rejects.toThrow(/table must be a non-empty string/);
    const wrongDb = (await postgresDestination({ egress: local }).write({ ...destination, database: 'no_such_database_here' }, from([]), signal).catch((e: unknown) => e)) as Error;
    expect(wrongDb).toBeInstanceOf(ConnectorError);
    expect(wrongDb.message).toMatch(/could not connect/);
  });
});

describe('connector egress: loopback, private and metadata addresses are refused unless allowed', () => {
  let dbUrl: URL;
  let db: TestDatabase;
  const hits = { a: 0, b: 0, bAuthorized: 0 };
  let a: Server;
  let b: Server;
  let portA = 0;
  let portB = 0;

  const listen = async (server: Server) => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as AddressInfo).port;
  };

  beforeAll(async () => {
    b = createServer((req, res) => {
      hits.b++;
      if (req.headers.authorization === `Bearer ${token}`) hits.bAuthorized++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ from: 'b' }]));
    });
    portB = await listen(b);
    a = createServer((req, res) => {
      hits.a++;
      if (req.url === '/to-b') return void res.writeHead(302, { location: `http://127.0.0.1:${portB}/records` }).end();
      if (req.url === '/to-b-by-name') return void res.writeHead(307, { location: `http://other.example.test:${portB}/records` }).end();
      if (req.url === '/to-metadata') return void res.writeHead(301, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
      if (req.url === '/same-origin') return void res.writeHead(302, { location: '/records' }).end();
      if (req.url === '/loop') return void res.writeHead(302, { location: '/loop' }).end();
      if (req.headers.authorization !== `Bearer ${token}`) return void res.writeHead(401).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ from: 'a' }]));
    });
    portA = await listen(a);
    db = await createTestDatabase('coffer_egress');
    dbUrl = new URL(db.url);
  });

  afterAll(async () => {
    await new Promise<void>((r) => (a ? a.close(() => r()) : r()));
    await new Promise<void>((r) => (b ? b.close(() => r()) : r()));
    await db?.drop();
  });

  // Names that only this table knows: an "allowed" host stands for a public one, since a test cannot reach the internet.
  const names: EgressLookup = async (host) => {
    const table: Record<string, string> = { 'api.example.test': '127.0.0.1', 'other.example.test': '127.0.0.1', 'warehouse.example.test': '127.0.0.1' };
    if (!table[host]) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return [{ address: table[host]!, family: 4 }];
  };

  it('without an allow-list the HTTP JSON source refuses a loopback server in every spelling, and the server receives nothing', async () => {
    const source = httpJsonSource();
    const before = hits.b;
    for (const host of ['127.0.0.1', 'localhost', '2130706433', '0177.0.0.1', '0x7f.0.0.1', '127.1', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]']) {
      const err = (await collect(source.read({ url: `http://${host}:${portB}/records`, api_token: token }, signal)).catch((e: unknown) => e)) as Error;
      expect(err, host).toBeInstanceOf(ConnectorError);
      expect(err.message, host).toMatch(/^builtin:http-json: egress to .+ refused: (it resolves to a )?loopback address/);
      expect(err.message).not.toContain(token);
    }
    await expect(source.check({ url: `http://127.0.0.1:${portB}/`, api_token: token }, signal)).rejects.toThrow(/loopback/);
    await expect(source.discover({ url: `http://127.0.0.1:${portB}/`, api_token: token }, signal)).rejects.toThrow(/loopback/);
    await expect(collect(source.read({ url: 'http://169.254.169.254/latest/meta-data/', api_token: token }, signal))).rejects.toThrow(/refused: metadata address/);
    await expect(collect(source.read({ url: 'http://metadata.google.internal/computeMetadata/v1/', api_token: token }, signal))).rejects.toThrow(/refused: metadata host name/);
    await expect(collect(source.read({ url: 'http://10.0.0.1/', api_token: token }, signal))).rejects.toThrow(/refused: private address/);
    expect(hits.b).toBe(before);
  });

  it('checks every redirect: an allowed host that redirects to a loopback address that is not allowed is refused before the second request', async () => {
    const source = httpJsonSource({ egress: createEgressPolicy({ allow: [`api.example.test:${portA}`], lookup: names }) });
    expect(await collect(source.read({ url: `http://api.example.test:${portA}/records`, api_token: token }, signal))).toEqual([{ from: 'a' }]);
    expect(await collect(source.read({ url: `http://api.example.test:${portA}/same-origin`, api_token: token }, signal))).toEqual([{ from: 'a' }]);
    const before = hits.b;
    await expect(collect(source.read({ url: `http://api.example.test:${portA}/to-b`, api_token: token }, signal))).rejects.toThrow(
      new RegExp(`egress to 127\\.0\\.0\\.1:${portB} refused: loopback address`),
    );
    await expect(collect(source.read({ url: `http://api.example.test:${portA}/to-b-by-name`, api_token: token }, signal))).rejects.toThrow(
      /egress to other\.example\.test:\d+ refused: it resolves to a loopback address/,
    );
    await expect(collect(source.read({ url: `http://api.example.test:${portA}/to-metadata`, api_token: token }, signal))).rejects.toThrow(/refused: metadata address/);
    expect(hits.b).toBe(before);
    await expect(collect(source.read({ url: `http://api.example.test:${portA}/loop`, api_token: token }, signal))).rejects.toThrow(/more than 5 redirects/);
  });

  it('sends the bearer token only to the origin it was given for, not to the target of a cross-origin redirect', async () => {
    const source = httpJsonSource({ egress: createEgressPolicy({ allow: [`api.example.test:${portA}`, `other.example.test:${portB}`], lookup: names }) });
    const before = { ...hits };
    expect(await collect(source.read({ url: `http://api.example.test:${portA}/to-b-by-name`, api_token: token }, signal))).toEqual([{ from: 'b' }]);
    expect(hits.b).toBe(before.b + 1);
    expect(hits.bAuthorized).toBe(before.bAuthorized);
  });

  it('connects to the address it checked: a name allowed by the policy reaches the server its resolver chose', async () => {
    const destination = { host: 'warehouse.example.test', port: Number(dbUrl.port || 5432), database: db.name, username: decodeURIComponent(dbUrl.username || 'postgres'), password: decodeURIComponent(dbUrl.password), schema: 'egress', table: 'rows' };
    const egress = createEgressPolicy({ allow: ['warehouse.example.test'], lookup: names });
    expect(await postgresDestination({ egress }).write(destination, from([{ id: 1 }]), signal)).toBe(1);
    await postgresDestination({ egress }).check(destination, signal);
  });

  it('without an allow-list the Postgres destination refuses a loopback or private host, on write and on check, before connecting', async () => {
    const destination = { host: '127.0.0.1', port: Number(dbUrl.port || 5432), database: db.name, username: decodeURIComponent(dbUrl.username || 'postgres'), password: decodeURIComponent(dbUrl.password), schema: 'egress_denied', table: 'rows' };
    const dest = postgresDestination();
    await expect(dest.write(destination, from([{ id: 1 }]), signal)).rejects.toThrow(/^builtin:postgres: egress to 127\.0\.0\.1:\d+ refused: loopback address/);
    await expect(dest.check(destination, signal)).rejects.toThrow(/loopback/);
    await expect(dest.write({ ...destination, host: 'localhost' }, from([]), signal)).rejects.toThrow(/loopback/);
    await expect(dest.write({ ...destination, host: '2130706433' }, from([]), signal)).rejects.toThrow(/loopback/);
    await expect(dest.write({ ...destination, host: '::ffff:127.0.0.1' }, from([]), signal)).rejects.toThrow(/loopback/);
    await expect(dest.write({ ...destination, host: '10.0.0.5' }, from([]), signal)).rejects.toThrow(/private address \(10\.0\.0\.0\/8\)/);
    await expect(dest.write({ ...destination, host: '172.20.0.2' }, from([]), signal)).rejects.toThrow(/private address/);
    await expect(dest.write({ ...destination, host: '169.254.169.254' }, from([]), signal)).rejects.toThrow(/metadata address/);
    await expect(dest.write({ ...destination, host: '/var/run/postgresql' }, from([]), signal)).rejects.toThrow(/host must be a host name or an IP address/);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: number }>("select count(*)::int as n from information_schema.schemata where schema_name = 'egress_denied'");
      expect(rows[0]!.n).toBe(0);
    } finally {
      await client.end();
    }
  });
});
