import { sql, type Kysely } from 'kysely';
import { sqlIdentifier } from './env';

/** What a lease did with one turn of a job. */
export type LeaseOutcome = { ran: true; result: unknown } | { ran: false; reason: 'held' | 'not_due' };

/**
 * Runs a background job's turn on one replica at a time, at most once per interval across them:
 * `lease(job, intervalMs, run)`.
 */
export type JobLease = (job: string, intervalMs: number, run: () => Promise<unknown>) => Promise<LeaseOutcome>;

/**
 * Turns closer together than this share of the interval are skipped: replicas' timers drift, and a
 * replica whose timer fires just after another replica's run must not run the job again.
 */
const DUE_SHARE = 0.9;

/** Creates the table of the lease's last runs (idempotent, replicas starting together take turns). */
export async function migrateJobLease(db: Kysely<any>, schema: string): Promise<void> {
  const s = sql.id(sqlIdentifier.parse(schema));
  await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`coffer-migrate:${schema}:jobs`}, 0))`.execute(trx);
    await sql`create table if not exists ${s}.background_job_runs (
      job text primary key,
      started_at timestamptz not null,
      finished_at timestamptz not null,
      holder text not null
    )`.execute(trx);
  });
}

/**
 * A lease over Postgres: a turn takes a transaction-scoped advisory lock named after the service's
 * schema and the job (`pg_try_advisory_xact_lock`, so a replica that dies mid-run frees it with its
 * connection), skips when another replica holds it or ran the job less than an interval ago (by the
 * database's clock, shared by every replica), and otherwise runs the job while holding it. Only a
 * turn that succeeds is recorded: after a failure the next replica to try runs it again.
 */
export function createJobLease(db: Kysely<any>, schema: string, holder: string): JobLease {
  const s = sql.id(sqlIdentifier.parse(schema));
  return (job, intervalMs, run) =>
    db
      .transaction()
      .execute(async (trx): Promise<LeaseOutcome> => {
        const lock = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(hashtextextended(${`coffer-job:${schema}:${job}`}, 0)) as locked`.execute(trx);
        if (!lock.rows[0]!.locked) return { ran: false, reason: 'held' };
        const dueAfterMs = Math.floor(intervalMs * DUE_SHARE);
        const last = await sql<{ due: boolean }>`
          select started_at <= clock_timestamp() - make_interval(secs => ${dueAfterMs / 1000}) as due
          from ${s}.background_job_runs where job = ${job}`.execute(trx);
        if (last.rows[0] && !last.rows[0].due) return { ran: false, reason: 'not_due' };
        const started = await sql<{ at: Date }>`select clock_timestamp() as at`.execute(trx);
        const result = await run();
        await sql`insert into ${s}.background_job_runs (job, started_at, finished_at, holder)
          values (${job}, ${started.rows[0]!.at}, clock_timestamp(), ${holder})
          on conflict (job) do update set started_at = excluded.started_at, finished_at = excluded.finished_at, holder = excluded.holder`.execute(trx);
        return { ran: true, result };
      });
}
