import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@coffer/testing';
import { createLogger } from '@coffer/telemetry';
import { createDatabase } from './database';
import { createJobLease, migrateJobLease } from './job-lease';
import { startBackgroundJobs } from './lifecycle';

const schema = 'lease_test';
const logger = createLogger({ service: 'test', level: 'silent' });

describe('job lease: background jobs run on one replica at a time, once per interval across replicas', () => {
  let tdb: TestDatabase;
  // Two pools: two replicas of one service sharing one database.
  let replicaA: Kysely<any>;
  let replicaB: Kysely<any>;

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_lease');
    replicaA = createDatabase(tdb.url);
    replicaB = createDatabase(tdb.url);
    await sql`create schema ${sql.id(schema)}`.execute(replicaA);
    await Promise.all([migrateJobLease(replicaA, schema), migrateJobLease(replicaB, schema)]);
  });

  afterAll(async () => {
    await replicaA?.destroy();
    await replicaB?.destroy();
    await tdb?.drop();
  });

  it('refuses a turn while another replica holds the job, and one less than an interval after its run', async () => {
    const a = createJobLease(replicaA, schema, 'a');
    const b = createJobLease(replicaB, schema, 'b');
    let release!: () => void;
    const holding = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const first = a('sweep', 60_000, async () => {
      entered();
      await holding;
      return 'swept';
    });
    await inside;
    expect(await b('sweep', 60_000, async () => 'never')).toEqual({ ran: false, reason: 'held' });
    release();
    expect(await first).toEqual({ ran: true, result: 'swept' });
    expect(await b('sweep', 60_000, async () => 'never')).toEqual({ ran: false, reason: 'not_due' });
    expect(await a('sweep', 60_000, async () => 'never')).toEqual({ ran: false, reason: 'not_due' });
    // Another job has a lease of its own.
    expect(await b('rotation', 60_000, async () => 'rotated')).toEqual({ ran: true, result: 'rotated' });
    const { rows } = await sql<{ job: string; holder: string }>`select job, holder from ${sql.id(schema)}.background_job_runs order by job`.execute(replicaA);
    expect(rows).toEqual([
      { job: 'rotation', holder: 'b' },
      { job: 'sweep', holder: 'a' },
    ]);
  });

  it('does not record a failed turn: the next replica to try runs the job again', async () => {
    const a = createJobLease(replicaA, schema, 'a');
    const b = createJobLease(replicaB, schema, 'b');
    await expect(a('flaky', 60_000, async () => Promise.reject(new Error('peer down')))).rejects.toThrow('peer down');
    expect(await b('flaky', 60_000, async () => 'done')).toEqual({ ran: true, result: 'done' });
  });

  it('two replicas running the same job loops never overlap; when one stops, the other takes the job over', async () => {
    const intervalMs = 150;
    const runs: Array<{ replica: string; start: number; end: number }> = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const job = (replica: string, db: Kysely<any>) => async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        const start = await sql<{ t: number }>`select extract(epoch from clock_timestamp()) * 1000 as t`.execute(db);
        await sql`select pg_sleep(0.03)`.execute(db);
        const end = await sql<{ t: number }>`select extract(epoch from clock_timestamp()) * 1000 as t`.execute(db);
        runs.push({ replica, start: Number(start.rows[0]!.t), end: Number(end.rows[0]!.t) });
      } finally {
        inFlight--;
      }
    };
    const loopA = startBackgroundJobs(logger, [['orphan shredding', intervalMs, job('a', replicaA)]], { lease: createJobLease(replicaA, schema, 'a') });
    const loopB = startBackgroundJobs(logger, [['orphan shredding', intervalMs, job('b', replicaB)]], { lease: createJobLease(replicaB, schema, 'b') });
    await until(() => runs.length >= 6);
    await loopA.stop();
    const afterStop = runs.length;
    await until(() => runs.slice(afterStop).some((r) => r.replica === 'b'));
    await loopB.stop();

    expect(maxInFlight).toBe(1);
    const sorted = [...runs].sort((x, y) => x.start - y.start);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.start, `run ${i} starts after run ${i - 1} ended`).toBeGreaterThanOrEqual(sorted[i - 1]!.end);
    expect(runs.slice(afterStop).every((r) => r.replica === 'b')).toBe(true);
  }, 60_000);
});

async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
