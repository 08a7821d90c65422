import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionLoss } from '@coffer/contracts';
import { createTestDatabase, type TestDatabase } from '@coffer/testing';
import { createDatabase } from './database';
import { prepareRepeatedStatements } from './prepared-statements';

describe('createDatabase: a dropped connection is an error to retry, never a process exit', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  const seen: Error[] = [];

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_pool');
    db = createDatabase(tdb.url, { max: 4, onConnectionError: (err) => seen.push(err) });
  });

  afterAll(async () => {
    await db?.destroy();
    await tdb?.drop();
  });

  it('survives the server terminating every idle pooled connection, and the next query reconnects', async () => {
    // Open several connections so the pool holds idle ones.
    await Promise.all([1, 2, 3, 4].map(() => sql`select pg_sleep(0.05)`.execute(db)));
    const admin = new pg.Client({ connectionString: tdb.url.replace(/\/[^/]+$/, '/postgres') });
    await admin.connect();
    let killed = 0;
    try {
      const result = await admin.query<{ n: string }>(
        'select count(pg_terminate_backend(pid)) as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
        [tdb.name],
      );
      killed = Number(result.rows[0]!.n);
      expect(killed).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
    // Each idle client notices its own termination when its socket closes: wait for all of them, or
    // the next query may still be handed one that has not noticed yet (and fail, as a retryable loss).
    const deadline = Date.now() + 5_000;
    while (seen.length < killed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // Without a listener these 'error' events would be unhandled and end the process (and this run).
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((e) => (e as { code?: string }).code === '57P01')).toBe(true);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    expect(rows[0]!.one).toBe(1);
  });

  async function terminate(pid: number): Promise<void> {
    const admin = new pg.Client({ connectionString: tdb.url.replace(/\/[^/]+$/, '/postgres') });
    await admin.connect();
    try {
      await admin.query('select pg_terminate_backend($1)', [pid]);
    } finally {
      await admin.end();
    }
  }

  it('survives losing the connection a transaction holds between two statements; the failure is a connection loss', async () => {
    // A checked-out client is not covered by the pool's 'error' listener: without its own, this ends the process.
    const before = seen.length;
    const err = await db
      .transaction()
      .execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
        await terminate(rows[0]!.pid);
        await new Promise((r) => setTimeout(r, 200));
        await sql`select 1`.execute(trx);
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(connectionLoss(err)).toMatch(/^postgres:/);
    expect(seen.length).toBeGreaterThan(before);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    expect(rows[0]!.one).toBe(1);
  });

  it('fails a query in flight on a terminated connection as a connection loss, and the next query works', async () => {
    const err = await db
      .transaction()
      .execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
        // Settled as a value at once: it fails while the termination is still being sent.
        const slow = sql`select pg_sleep(5)`.execute(trx).then(
          () => undefined,
          (e: unknown) => e,
        );
        await new Promise((r) => setTimeout(r, 100));
        await terminate(rows[0]!.pid);
        const failed = await slow;
        if (failed) throw failed;
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(connectionLoss(err)).toMatch(/^postgres:/);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    expect(rows[0]!.one).toBe(1);
  });

  it('reports a server that is not there as a connection loss, not a bug', async () => {
    const nowhere = createDatabase('postgres://postgres@127.0.0.1:1/none', { max: 1 });
    try {
      const err = await sql`select 1`.execute(nowhere).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(connectionLoss(err)).toBe('network:ECONNREFUSED');
    } finally {
      await nowhere.destroy();
    }
  });
});

describe('createDatabase: parameterised statements are prepared once per connection', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_prepared');
    // One connection: every query below runs on it, and pg_prepared_statements shows its statements.
    db = createDatabase(tdb.url, { max: 1 });
    await sql`create table items (id integer primary key, name text not null)`.execute(db);
    await sql`insert into items select g, 'item ' || g from generate_series(1, 10) g`.execute(db);
  });

  afterAll(async () => {
    await db?.destroy();
    await tdb?.drop();
  });

  const preparedTexts = async () =>
    (await sql<{ statement: string }>`select statement from pg_prepared_statements order by prepare_time`.execute(db)).rows.map((r) => r.statement);

  it('runs a repeated statement from one preparation, with the right rows each time; statements without parameters are not prepared', async () => {
    for (const id of [1, 2, 3, 2, 1]) {
      const rows = await db.selectFrom('items').select(['id', 'name']).where('id', '=', id).execute();
      expect(rows).toEqual([{ id, name: `item ${id}` }]);
    }
    await db.transaction().execute(async (trx) => {
      await trx.selectFrom('items').select('id').where('id', '=', 4).execute();
    });
    const texts = await preparedTexts();
    expect(texts.filter((t) => t.includes('select "id", "name" from "items"'))).toHaveLength(1);
    expect(texts.filter((t) => t.includes('select "id" from "items"'))).toHaveLength(1);
    // The check itself has no parameters: it is not among them, nor are begin and commit.
    expect(texts.some((t) => /pg_prepared_statements|^begin|^commit/i.test(t))).toBe(false);
  });

  it('a statement whose cached plan a schema change made wrong fails once, then runs unprepared with the new shape', async () => {
    const all = (id: number) => sql<Record<string, unknown>>`select * from items where id = ${id}`.execute(db);
    expect((await all(5)).rows).toEqual([{ id: 5, name: 'item 5' }]);
    await sql`alter table items add column note text not null default 'n'`.execute(db);
    await expect(all(5)).rejects.toMatchObject({ code: '0A000' });
    expect((await all(5)).rows).toEqual([{ id: 5, name: 'item 5', note: 'n' }]);
    expect((await all(6)).rows).toEqual([{ id: 6, name: 'item 6', note: 'n' }]);
  });
});

describe('statements prepared: turned off, and bounded per connection', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_prepared_bound');
  });
  afterAll(async () => {
    await tdb?.drop();
  });

  it('prepares nothing (for a pooler that cannot carry prepared statements)', async () => {
    const db = createDatabase<any>(tdb.url, { max: 1, preparedStatements: false });
    try {
      for (const n of [1, 2, 3]) expect((await sql<{ n: number }>`select ${n}::int as n`.execute(db)).rows).toEqual([{ n }]);
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_prepared_statements`.execute(db);
      expect(rows[0]!.n).toBe(0);
    } finally {
      await db.destroy();
    }
  });

  it('prepares at most `limit` distinct statements; the rest run unprepared and still answer', async () => {
    const pool = new pg.Pool({ connectionString: tdb.url, max: 1 });
    pool.on('connect', (client) => prepareRepeatedStatements(client, 3));
    // As kysely runs queries: a checked-out connection, text and values, a promise.
    const client = await pool.connect();
    try {
      for (let k = 1; k <= 6; k++) {
        const text = `select $1::int + ${k} as n`;
        expect((await client.query(text, [1])).rows).toEqual([{ n: 1 + k }]);
        expect((await client.query(text, [2])).rows).toEqual([{ n: 2 + k }]);
      }
      const { rows } = await client.query<{ n: number }>('select count(*)::int as n from pg_prepared_statements');
      expect(rows[0]!.n).toBe(3);
    } finally {
      client.release();
      await pool.end();
    }
  });
});
