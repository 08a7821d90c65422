import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    try {
      const killed = await admin.query<{ n: string }>(
        'select count(pg_terminate_backend(pid)) as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
        [tdb.name],
      );
      expect(Number(killed.rows[0]!.n)).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
    const deadline = Date.now() + 5_000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // Without a listener these 'error' events would be unhandled and end the process (and this run).
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((e) => (e as { code?: string }).code === '57P01')).toBe(true);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    expect(rows[0]!.one).toBe(1);
  });
});
