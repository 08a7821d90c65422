import { sql, type Kysely, type QueryExecutorProvider, type Transaction } from 'kysely';
import type { SyncDatabase } from './sync.database';
import type {
  SyncJobAttemptFailedData,
  SyncJobCancelledData,
  SyncJobFailedData,
  SyncJobRequestedData,
  SyncJobStartedData,
  SyncJobSucceededData,
} from './domain/sync-job.decider';

type Db = Kysely<SyncDatabase> | Transaction<SyncDatabase>;

/** Creates the sync_jobs read model, the job leases and the OAuth credential state (idempotent: part of migration 0001). */
export async function migrateSyncReadModel(db: QueryExecutorProvider, schema: string): Promise<void> {
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
  // Scheduling: attempts, when the next may start, who runs it and when it last said so.
  for (const column of [
    sql`attempts int not null default 0`,
    sql`max_attempts int not null default 1`,
    sql`next_attempt_at timestamptz`,
    sql`worker_id text`,
    sql`heartbeat_at timestamptz`,
    sql`failure_code text`,
  ]) {
    await sql`alter table ${sql.id(schema)}.sync_jobs add column if not exists ${column}`.execute(db);
  }
  await sql`create index if not exists sync_jobs_due on ${sql.id(schema)}.sync_jobs (next_attempt_at) where status = 'queued'`.execute(db);
  await sql`create index if not exists sync_jobs_running on ${sql.id(schema)}.sync_jobs (connection_id) where status = 'running'`.execute(db);
  // The coordinates an OAuth credential's fields were last refreshed to (metadata only, never a value),
  // its expiry, whether the provider refused its refresh token, and the refresh lease.
  await sql`create table if not exists ${sql.id(schema)}.oauth_credentials (
    actor_id uuid primary key,
    workspace_id uuid not null,
    coordinates jsonb not null default '{}',
    expires_at timestamptz,
    refused_refresh_coordinate text,
    lease_holder text,
    lease_until timestamptz,
    refreshes int not null default 0
  )`.execute(db);
}

/**
 * Migration 0002: check and discover jobs in sync_jobs (a kind, no connection), records per stream,
 * and the committed state of each stream of a connection (incremental syncs).
 */
export async function migrateJobKindsAndStreamState(db: QueryExecutorProvider, schema: string): Promise<void> {
  // sync, check or discover; a check or discover job has no connection.
  await sql`alter table ${sql.id(schema)}.sync_jobs add column if not exists kind text not null default 'sync', add column if not exists records_per_stream jsonb`.execute(db);
  await sql`alter table ${sql.id(schema)}.sync_jobs alter column connection_id drop not null`.execute(db);
  // The last committed state of each stream of a connection (projection of StreamStateCommitted), and
  // the version of the connection's state stream, which each commit appends at.
  await sql`create table if not exists ${sql.id(schema)}.stream_states (
    connection_id uuid not null,
    namespace text not null,
    stream text not null,
    state jsonb not null,
    job_id uuid not null,
    attempt int not null,
    committed_at timestamptz not null,
    primary key (connection_id, namespace, stream)
  )`.execute(db);
  await sql`create table if not exists ${sql.id(schema)}.connection_state_heads (
    connection_id uuid primary key,
    version int not null
  )`.execute(db);
}

/** A stream's state as a StreamStateCommitted event carries it. */
export interface StreamStateCommittedData {
  connectionId: string;
  jobId: string;
  attempt: number;
  namespace: string;
  stream: string;
  state: unknown;
  committedAt: string;
}

/**
 * Whether `workerId` still runs attempt `attempt` of the job, locking the job's row for the caller's
 * transaction: a state is committed only by the attempt the job belongs to (not by a replica that
 * was failed over while it ran on).
 */
export async function holdsJob(trx: Transaction<SyncDatabase>, schema: string, jobId: string, workerId: string, attempt: number): Promise<boolean> {
  const r = await sql`select 1 from ${sql.id(schema)}.sync_jobs where job_id = ${jobId} and worker_id = ${workerId} and attempts = ${attempt} and status = 'running' for update`.execute(trx);
  return r.rows.length > 0;
}

/** The version the connection's state stream is at (0 before its first commit). */
export async function stateVersion(trx: Db, schema: string, connectionId: string): Promise<number> {
  const row = await trx.withSchema(schema).selectFrom('connection_state_heads').select('version').where('connection_id', '=', connectionId).executeTakeFirst();
  return (row?.version as number | undefined) ?? 0;
}

/** Projects StreamStateCommitted: the stream's state replaced, the connection's head moved on. */
export async function projectStreamStateCommitted(trx: Db, schema: string, e: StreamStateCommittedData, version: number): Promise<void> {
  await trx
    .withSchema(schema)
    .insertInto('stream_states')
    .values({ connection_id: e.connectionId, namespace: e.namespace, stream: e.stream, state: JSON.stringify(e.state), job_id: e.jobId, attempt: e.attempt, committed_at: e.committedAt })
    .onConflict((oc) => oc.columns(['connection_id', 'namespace', 'stream']).doUpdateSet({ state: JSON.stringify(e.state), job_id: e.jobId, attempt: e.attempt, committed_at: e.committedAt }))
    .execute();
  await trx
    .withSchema(schema)
    .insertInto('connection_state_heads')
    .values({ connection_id: e.connectionId, version })
    .onConflict((oc) => oc.column('connection_id').doUpdateSet({ version }))
    .execute();
}

/** The last committed state of every stream of a connection. */
export async function committedStates(db: Db, schema: string, connectionId: string): Promise<unknown[]> {
  const rows = await db.withSchema(schema).selectFrom('stream_states').select('state').where('connection_id', '=', connectionId).orderBy('namespace').orderBy('stream').execute();
  return rows.map((r) => r.state);
}

/** One row of sync_jobs. */
export interface SyncJobRow {
  job_id: string;
  kind: 'sync' | 'check' | 'discover';
  /** Null for a check or discover job. */
  connection_id: string | null;
  workspace_id: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  records_synced: string;
  records_per_stream: Record<string, number> | null;
  failure_reason: string | null;
  failure_code: string | null;
  attempts: number;
  worker_id: string | null;
  started_at: Date;
  ended_at: Date | null;
}

const columns = ['job_id', 'kind', 'connection_id', 'records_per_stream', 'workspace_id', 'status', 'records_synced', 'failure_reason', 'failure_code', 'attempts', 'worker_id', 'started_at', 'ended_at'] as const;

/** Projects SyncJobRequested: queued, due now. `started_at` is when the job was requested; a check or discover job has no connection. */
export async function projectJobRequested(trx: Db, schema: string, e: SyncJobRequestedData): Promise<void> {
  await trx
    .withSchema(schema)
    .insertInto('sync_jobs')
    .values({ job_id: e.jobId, kind: e.kind ?? 'sync', connection_id: e.connectionId || null, workspace_id: e.workspaceId, status: 'queued', started_at: e.requestedAt, max_attempts: e.maxAttempts, next_attempt_at: e.requestedAt })
    .execute();
}

/** Projects SyncJobStarted: running on `workerId`, heartbeat now. */
export async function projectJobStarted(trx: Db, schema: string, e: SyncJobStartedData): Promise<void> {
  await trx
    .withSchema(schema)
    .updateTable('sync_jobs')
    .set({ status: 'running', attempts: e.attempt, worker_id: e.workerId, heartbeat_at: sql`now()`, next_attempt_at: null })
    .where('job_id', '=', e.jobId)
    .execute();
}

/** Projects SyncJobAttemptFailed: queued again, due at the retry time. */
export async function projectJobAttemptFailed(trx: Db, schema: string, e: SyncJobAttemptFailedData): Promise<void> {
  await trx.withSchema(schema).updateTable('sync_jobs').set({ status: 'queued', failure_reason: e.reason, failure_code: e.code, next_attempt_at: e.retryAt }).where('job_id', '=', e.jobId).execute();
}

/** Projects SyncJobSucceeded. */
export async function projectJobSucceeded(trx: Db, schema: string, e: SyncJobSucceededData): Promise<void> {
  await trx
    .withSchema(schema)
    .updateTable('sync_jobs')
    .set({ status: 'succeeded', records_synced: e.recordsSynced, records_per_stream: e.recordsPerStream ? JSON.stringify(e.recordsPerStream) : null, ended_at: e.endedAt, failure_reason: null, failure_code: null })
    .where('job_id', '=', e.jobId)
    .execute();
}

/** Projects SyncJobFailed. */
export async function projectJobFailed(trx: Db, schema: string, e: SyncJobFailedData): Promise<void> {
  await trx.withSchema(schema).updateTable('sync_jobs').set({ status: 'failed', failure_reason: e.reason, failure_code: e.code, ended_at: e.endedAt }).where('job_id', '=', e.jobId).execute();
}

/** Projects SyncJobCancelled. */
export async function projectJobCancelled(trx: Db, schema: string, e: SyncJobCancelledData): Promise<void> {
  await trx.withSchema(schema).updateTable('sync_jobs').set({ status: 'cancelled', ended_at: e.endedAt, next_attempt_at: null }).where('job_id', '=', e.jobId).execute();
}

/**
 * A due queued job whose connection has no running job, locked for the caller's transaction (other
 * replicas skip it). A transaction-scoped advisory lock on the connection makes the "no running job"
 * check and the start one step across replicas: one job at a time per connection.
 */
export async function claimDueJob(trx: Transaction<SyncDatabase>, schema: string): Promise<{ job_id: string } | undefined> {
  const candidates = await sql<{ job_id: string; connection_id: string | null }>`
    select job_id, connection_id from ${sql.id(schema)}.sync_jobs
    where status = 'queued' and next_attempt_at <= now()
    order by next_attempt_at, job_id
    limit 20
    for update skip locked`.execute(trx);
  for (const c of candidates.rows) {
    // A check or discover job has no connection to wait for.
    if (!c.connection_id) return { job_id: c.job_id };
    const locked = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(hashtextextended(${`sync-connection:${c.connection_id}`}, 0)) as ok`.execute(trx);
    if (!locked.rows[0]?.ok) continue;
    const busy = await sql`select 1 from ${sql.id(schema)}.sync_jobs where connection_id = ${c.connection_id} and status = 'running' limit 1`.execute(trx);
    if (busy.rows.length === 0) return { job_id: c.job_id };
  }
  return undefined;
}

/** Renews the heartbeat of a job this worker runs; false when it no longer runs it (cancelled, reaped). */
export async function heartbeat(db: Db, schema: string, jobId: string, workerId: string): Promise<boolean> {
  const r = await db.withSchema(schema).updateTable('sync_jobs').set({ heartbeat_at: sql`now()` }).where('job_id', '=', jobId).where('worker_id', '=', workerId).where('status', '=', 'running').executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Running jobs whose worker has not heartbeated for `timeoutMs`. */
export async function staleJobs(db: Db, schema: string, timeoutMs: number): Promise<{ job_id: string; worker_id: string }[]> {
  const r = await sql<{ job_id: string; worker_id: string }>`
    select job_id, worker_id from ${sql.id(schema)}.sync_jobs
    where status = 'running' and heartbeat_at < now() - make_interval(secs => ${timeoutMs / 1000})
    limit 50`.execute(db);
  return r.rows;
}

/** One job, or undefined. */
export async function findJob(db: Db, schema: string, jobId: string): Promise<SyncJobRow | undefined> {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(jobId)) return undefined;
  return db.withSchema(schema).selectFrom('sync_jobs').select([...columns]).where('job_id', '=', jobId).executeTakeFirst() as Promise<SyncJobRow | undefined>;
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
    .select([...columns, sql<string>`started_at::text`.as('started_at_text')]);
  if (filter.workspaceId) query = query.where('workspace_id', '=', filter.workspaceId);
  if (filter.connectionId) query = query.where('connection_id', '=', filter.connectionId);
  if (filter.after) query = query.where(sql<boolean>`(started_at, job_id) < (${filter.after.startedAt}::timestamptz, ${filter.after.jobId}::uuid)`);
  const rows = (await query.orderBy('started_at', 'desc').orderBy('job_id', 'desc').limit(filter.limit).execute()) as (SyncJobRow & { started_at_text: string })[];
  return rows.map(({ started_at_text, ...row }) => ({ ...row, cursor: { startedAt: started_at_text, jobId: row.job_id } }));
}
