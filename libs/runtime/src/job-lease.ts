import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
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

/** `background_job_runs`: each background job's last successful turn. */
export interface BackgroundJobRunsTable {
  job: string;
  started_at: Date;
  finished_at: Date;
  holder: string;
}

/** The job lease's table, in every service's own schema; each service's `Database` extends it. */
export interface JobLeaseDatabase {
  background_job_runs: BackgroundJobRunsTable;
}

/**
 * Creates the table of the lease's last runs within the caller's transaction (idempotent: the job
 * lease's part of each service's migration 0001, adopting a table earlier releases made at start-up).
 */
export async function createJobLeaseTable(trx: QueryExecutorProvider, schema: string): Promise<void> {
  const s = sql.id(sqlIdentifier.parse(schema));
  await sql`select pg_advisory_xact_lock(hashtextextended(${`coffer-migrate:${schema}:jobs`}, 0))`.execute(trx);
  await sql`create table if not exists ${s}.background_job_runs (
    job text primary key,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    holder text not null
  )`.execute(trx);
}

/** Creates the table of the lease's last runs in a transaction of its own (idempotent). */
export async function migrateJobLease(db: Kysely<JobLeaseDatabase>, schema: string): Promise<void> {
  await db.transaction().execute((trx) => createJobLeaseTable(trx, schema));
}

/**
 * A lease over Postgres: a turn takes a transaction-scoped advisory lock named after the service's
 * schema and the job (`pg_try_advisory_xact_lock`, so a replica that dies mid-run frees it with its
 * connection), skips when another replica holds it or ran the job less than an interval ago (by the
 * database's clock, shared by every replica), and otherwise runs the job while holding it. Only a
 * turn that succeeds is recorded: after a failure the next replica to try runs it again.
 */
export function createJobLease(db: Kysely<JobLeaseDatabase>, schema: string, holder: string): JobLease {
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
