import { sql, type Kysely, type Transaction } from 'kysely';
import type { SyncJobFailedData, SyncJobStartedData, SyncJobSucceededData } from './domain/sync-job.decider';

type Db = Kysely<any> | Transaction<any>;

/** Creates the sync_jobs read model (idempotent). */
export async function migrateSyncReadModel(db: Kysely<any>, schema: string): Promise<void> {
  await sql`create table if not exists ${sql.id(schema)}.sync_jobs (
    job_id uuid primary key,
    connection_id uuid not null,
    workspace_id uuid not null,
    status text not null,
    records_synced bigint not null default 0,
    failure_reason text,
    started_at timestamptz not null,
    ended_at timestamptz
  )`.execute(db);
}

/** One row of sync_jobs. */
export interface SyncJobRow {
  job_id: string;
  connection_id: string;
  status: 'running' | 'succeeded' | 'failed';
  records_synced: string;
  failure_reason: string | null;
  started_at: Date;
  ended_at: Date | null;
}

/** Projects SyncJobStarted. */
export async function projectJobStarted(trx: Db, schema: string, e: SyncJobStartedData): Promise<void> {
  await trx
    .withSchema(schema)
    .insertInto('sync_jobs')
    .values({ job_id: e.jobId, connection_id: e.connectionId, workspace_id: e.workspaceId, status: 'running', started_at: e.startedAt })
    .execute();
}

/** Projects SyncJobSucceeded. */
export async function projectJobSucceeded(trx: Db, schema: string, e: SyncJobSucceededData): Promise<void> {
  await trx.withSchema(schema).updateTable('sync_jobs').set({ status: 'succeeded', records_synced: e.recordsSynced, ended_at: e.endedAt }).where('job_id', '=', e.jobId).execute();
}

/** Projects SyncJobFailed. */
export async function projectJobFailed(trx: Db, schema: string, e: SyncJobFailedData): Promise<void> {
  await trx.withSchema(schema).updateTable('sync_jobs').set({ status: 'failed', failure_reason: e.reason, ended_at: e.endedAt }).where('job_id', '=', e.jobId).execute();
}

/** One job, or undefined. */
export async function findJob(db: Db, schema: string, jobId: string): Promise<SyncJobRow | undefined> {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(jobId)) return undefined;
  return db
    .withSchema(schema)
    .selectFrom('sync_jobs')
    .select(['job_id', 'connection_id', 'status', 'records_synced', 'failure_reason', 'started_at', 'ended_at'])
    .where('job_id', '=', jobId)
    .executeTakeFirst() as Promise<SyncJobRow | undefined>;
}

/** Where a page of jobs starts: after this job (newest first). `startedAt` is Postgres' own text of the timestamp, exact to the microsecond. */
export interface JobCursor {
  startedAt: string;
  jobId: string;
}

/** The jobs of a workspace and/or connection, newest first, `limit` of them after `after`; each with its cursor. */
export async function listJobs(
  db: Db,
  schema: string,
  filter: { workspaceId?: string; connectionId?: string; limit: number; after?: JobCursor },
): Promise<(SyncJobRow & { cursor: JobCursor })[]> {
  let query = db
    .withSchema(schema)
    .selectFrom('sync_jobs')
    .select(['job_id', 'connection_id', 'status', 'records_synced', 'failure_reason', 'started_at', 'ended_at', sql<string>`started_at::text`.as('started_at_text')]);
  if (filter.workspaceId) query = query.where('workspace_id', '=', filter.workspaceId);
  if (filter.connectionId) query = query.where('connection_id', '=', filter.connectionId);
  if (filter.after) query = query.where(sql<boolean>`(started_at, job_id) < (${filter.after.startedAt}::timestamptz, ${filter.after.jobId}::uuid)`);
  const rows = (await query.orderBy('started_at', 'desc').orderBy('job_id', 'desc').limit(filter.limit).execute()) as (SyncJobRow & { started_at_text: string })[];
  return rows.map(({ started_at_text, ...row }) => ({ ...row, cursor: { startedAt: started_at_text, jobId: row.job_id } }));
}
