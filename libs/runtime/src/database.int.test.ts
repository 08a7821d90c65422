import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionLoss } from '@coffer/contracts';
import { createTestDatabase, type TestDatabase } from '@coffer/testing';
import { createDatabase } from './database';

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
