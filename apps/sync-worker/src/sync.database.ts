import type { ColumnType, Generated } from 'kysely';
import type { RuntimeDatabase, NullableTimestamp, Timestamp } from '@coffer/runtime';

export interface SyncJobsTable {
  job_id: string;
  /** Null for a check or discover job. */
  connection_id: string | null;
  workspace_id: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  /** bigint: read as a string. */
  records_synced: ColumnType<string, number | string | undefined, number | string>;
  failure_reason: string | null;
  started_at: Timestamp;
  ended_at: NullableTimestamp;
  attempts: Generated<number>;
  max_attempts: Generated<number>;
  next_attempt_at: NullableTimestamp;
  worker_id: string | null;
  heartbeat_at: NullableTimestamp;
  failure_code: string | null;
  kind: Generated<'sync' | 'check' | 'discover'>;
  /** jsonb: records per stream of a finished sync. */
  records_per_stream: unknown;
}

export interface OauthCredentialsTable {
  actor_id: string;
  workspace_id: string;
  /** jsonb: the coordinates of the credential's fields (never a value). */
  coordinates: Generated<unknown>;
  expires_at: NullableTimestamp;
  refused_refresh_coordinate: string | null;
  lease_holder: string | null;
  lease_until: NullableTimestamp;
  refreshes: Generated<number>;
}

export interface StreamStatesTable {
  connection_id: string;
  namespace: string;
  stream: string;
  /** jsonb: the stream's last committed state. */
  state: unknown;
  job_id: string;
  attempt: number;
  committed_at: Timestamp;
}

export interface ConnectionStateHeadsTable {
  connection_id: string;
  version: number;
}

/** The sync worker's schema: the event store, the job lease and its read models. */
export interface SyncDatabase extends RuntimeDatabase {
  sync_jobs: SyncJobsTable;
  oauth_credentials: OauthCredentialsTable;
  stream_states: StreamStatesTable;
  connection_state_heads: ConnectionStateHeadsTable;
}
