import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@coffer/testing';
import { ConnectorError, type SyncRecord } from './connector';
import { httpJsonSource } from './http-json-source';
import { postgresDestination } from './postgres-destination';

const token = `canary-token-${Math.random().toString(36).slice(2)}`;
const signal = new AbortController().signal;

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
    const source = httpJsonSource();
    expect(await collect(source.read({ url: `${base}/records`, api_token: token }, signal))).toEqual([{ id: 1, name: 'alpha' }, { id: 2, name: 'beta' }]);
    expect(await collect(source.read({ url: `${base}/wrapped`, api_token: token }, signal))).toEqual([{ id: 1 }]);
  });

  it('the HTTP JSON source fails with a reason that names the status, never the token', async () => {
    const source = httpJsonSource();
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
    expect(await postgresDestination().write(destination, from(records), signal)).toBe(records.length);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ data: SyncRecord }>('select data from dest.rows order by id');
      expect(rows.map((r) => r.data)).toEqual(records);
      async function* failing(): AsyncIterable<SyncRecord> {
        yield { id: 'partial' };
        throw new ConnectorError('source broke');
      }
      await expect(postgresDestination().write(destination, failing(), signal)).rejects.toThrow('source broke');
      const count = await client.query<{ n: string }>('select count(*) as n from dest.rows');
      expect(Number(count.rows[0]!.n)).toBe(records.length);
    } finally {
      await client.end();
    }
  });

  it('the Postgres destination refuses a bad config and reports a failed login without the password', async () => {
    await expect(postgresDestination().write({ ...destination, port: 'x' }, from([]), signal)).rejects.toThrow(/port must be a port number/);
    await expect(postgresDestination().write({ ...destination, table: '' }, from([]), signal)).rejects.toThrow(/table must be a non-empty string/);
    const wrongDb = (await postgresDestination().write({ ...destination, database: 'no_such_database_here' }, from([]), signal).catch((e: unknown) => e)) as Error;
    expect(wrongDb).toBeInstanceOf(ConnectorError);
    expect(wrongDb.message).toMatch(/could not connect/);
  });
});
