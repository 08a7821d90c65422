import { CofferError } from '@coffer/contracts';

/** Why a job or an attempt failed: a closed set, recorded with the redacted reason. */
export type FailureCode = 'connector_error' | 'credential_rejected' | 'credential_needs_reauthorization' | 'credential_refresh_failed' | 'timeout' | 'worker_lost' | 'internal';

/**
 * Codes that no retry can cure: the job fails at once. A source that refuses a credential it cannot
 * refresh (HTTP 401 without OAuth) refuses it again on every attempt until someone stores another one.
 */
export const PERMANENT_FAILURES: readonly FailureCode[] = ['credential_needs_reauthorization', 'credential_rejected'];

/** What a job does: a connection's sync, or a check or discover of an unsaved config. */
export type JobKind = 'sync' | 'check' | 'discover';

/** What a check or discover job runs: a connector and a partial config (its secrets are ephemeral coordinates, never values). */
export interface CheckJobInput {
  connector: string;
  partialConfigJson: string;
}

/** Queues a job for a SyncRequested (or a CheckRequested) event. */
export interface RequestSyncJob {
  type: 'RequestSyncJob';
  jobId: string;
  /** Empty for a check or discover job, which has no connection. */
  connectionId: string;
  workspaceId: string;
  maxAttempts: number;
  /** `sync` when omitted. */
  kind?: JobKind;
  /** Required for a check or discover job. */
  check?: CheckJobInput;
  now: string;
}

/** A replica claims the job for its next attempt. */
export interface StartSyncJob {
  type: 'StartSyncJob';
  workerId: string;
  now: string;
}

/** Records that every record reached the destination. */
export interface CompleteSyncJob {
  type: 'CompleteSyncJob';
  recordsSynced: number;
  /** Records by stream (`namespace.name`, or the name alone); they add up to `recordsSynced`. */
  recordsPerStream?: Record<string, number>;
  /** A check or discover job's answer: the connector's verdict on the config, with its catalog for a discover. */
  result?: CheckJobResult;
  now: string;
}

/** What a check or discover job found: `succeeded` is the connector's verdict on the config, not the job's outcome. */
export interface CheckJobResult {
  succeeded: boolean;
  message: string;
  catalogJson: string;
}

/**
 * Records why the running attempt failed (the reason is already redacted and holds no record data);
 * the job is retried at `retryAt` unless the failure is permanent or the attempts are used up.
 */
export interface FailSyncJobAttempt {
  type: 'FailSyncJobAttempt';
  code: FailureCode;
  reason: string;
  /** When a retry would start: the caller's back-off for this attempt. */
  retryAt: string;
  now: string;
}

/** Cancels a queued or running job. */
export interface CancelSyncJob {
  type: 'CancelSyncJob';
  by: string;
  now: string;
}

export type SyncJobCommand = RequestSyncJob | StartSyncJob | CompleteSyncJob | FailSyncJobAttempt | CancelSyncJob;

export interface SyncJobRequestedData {
  jobId: string;
  connectionId: string;
  workspaceId: string;
  maxAttempts: number;
  requestedAt: string;
  /** Absent in the events of sync jobs recorded before jobs had kinds. */
  kind?: JobKind;
  check?: CheckJobInput;
}

export interface SyncJobStartedData {
  jobId: string;
  connectionId: string;
  workspaceId: string;
  attempt: number;
  workerId: string;
  startedAt: string;
}

export interface SyncJobSucceededData {
  jobId: string;
  connectionId: string;
  recordsSynced: number;
  recordsPerStream?: Record<string, number>;
  result?: CheckJobResult;
  endedAt: string;
}

export interface SyncJobAttemptFailedData {
  jobId: string;
  connectionId: string;
  attempt: number;
  code: FailureCode;
  reason: string;
  retryAt: string;
  failedAt: string;
}

export interface SyncJobFailedData {
  jobId: string;
  connectionId: string;
  attempt: number;
  code: FailureCode;
  reason: string;
  endedAt: string;
}

export interface SyncJobCancelledData {
  jobId: string;
  connectionId: string;
  cancelledBy: string;
  endedAt: string;
}

export type SyncJobEvent =
  | { type: 'SyncJobRequested'; data: SyncJobRequestedData }
  | { type: 'SyncJobStarted'; data: SyncJobStartedData }
  | { type: 'SyncJobSucceeded'; data: SyncJobSucceededData }
  | { type: 'SyncJobAttemptFailed'; data: SyncJobAttemptFailedData }
  | { type: 'SyncJobFailed'; data: SyncJobFailedData }
  | { type: 'SyncJobCancelled'; data: SyncJobCancelledData };

export interface SyncJobState {
  status: 'absent' | 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  jobId: string | null;
  connectionId: string | null;
  workspaceId: string | null;
  attempts: number;
  maxAttempts: number;
  kind: JobKind;
  check: CheckJobInput | null;
}

/** The state of a job that was never requested. */
export function initialState(): SyncJobState {
  return { status: 'absent', jobId: null, connectionId: null, workspaceId: null, attempts: 0, maxAttempts: 1, kind: 'sync', check: null };
}

const MAX_REASON = 500;

/** Decides the events of a command, or refuses it: queued → running → (queued again | succeeded | failed), cancelled from queued or running. */
export function decide(command: SyncJobCommand, state: SyncJobState): SyncJobEvent[] {
  switch (command.type) {
    case 'RequestSyncJob':
      if (state.status !== 'absent') throw new CofferError('failed_precondition', `job ${command.jobId} already requested`);
      if (!Number.isInteger(command.maxAttempts) || command.maxAttempts < 1) throw new CofferError('invalid_argument', 'max attempts must be a positive integer');
      if (command.kind && command.kind !== 'sync') {
        if (!command.check) throw new CofferError('invalid_argument', `a ${command.kind} job needs a connector and a partial config`);
        return [{ type: 'SyncJobRequested', data: { jobId: command.jobId, connectionId: '', workspaceId: command.workspaceId, maxAttempts: command.maxAttempts, requestedAt: command.now, kind: command.kind, check: { ...command.check } } }];
      }
      return [{ type: 'SyncJobRequested', data: { jobId: command.jobId, connectionId: command.connectionId, workspaceId: command.workspaceId, maxAttempts: command.maxAttempts, requestedAt: command.now } }];
    case 'StartSyncJob':
      if (state.status !== 'queued') throw new CofferError('failed_precondition', `job is ${state.status}, not queued`);
      return [{ type: 'SyncJobStarted', data: { jobId: state.jobId!, connectionId: state.connectionId!, workspaceId: state.workspaceId!, attempt: state.attempts + 1, workerId: command.workerId, startedAt: command.now } }];
    case 'CompleteSyncJob':
      if (state.status !== 'running') throw new CofferError('failed_precondition', `job is ${state.status}, not running`);
      if (!Number.isInteger(command.recordsSynced) || command.recordsSynced < 0) {
        throw new CofferError('invalid_argument', 'records synced must be a non-negative integer');
      }
      if (Object.values(command.recordsPerStream ?? {}).some((n) => !Number.isSafeInteger(n) || n < 0)) {
        throw new CofferError('invalid_argument', 'records per stream must be non-negative integers');
      }
      if (state.kind !== 'sync') {
        if (!command.result) throw new CofferError('invalid_argument', `a ${state.kind} job completes with its result`);
        return [{ type: 'SyncJobSucceeded', data: { jobId: state.jobId!, connectionId: state.connectionId!, recordsSynced: 0, result: { ...command.result }, endedAt: command.now } }];
      }
      return [
        {
          type: 'SyncJobSucceeded',
          data: { jobId: state.jobId!, connectionId: state.connectionId!, recordsSynced: command.recordsSynced, recordsPerStream: { ...command.recordsPerStream }, endedAt: command.now },
        },
      ];
    case 'FailSyncJobAttempt': {
      if (state.status !== 'running') throw new CofferError('failed_precondition', `job is ${state.status}, not running`);
      const reason = command.reason.slice(0, MAX_REASON);
      const base = { jobId: state.jobId!, connectionId: state.connectionId!, attempt: state.attempts, code: command.code, reason };
      if (PERMANENT_FAILURES.includes(command.code) || state.attempts >= state.maxAttempts) return [{ type: 'SyncJobFailed', data: { ...base, endedAt: command.now } }];
      return [{ type: 'SyncJobAttemptFailed', data: { ...base, retryAt: command.retryAt, failedAt: command.now } }];
    }
    case 'CancelSyncJob':
      if (state.status !== 'queued' && state.status !== 'running') throw new CofferError('failed_precondition', `job is ${state.status}: only a queued or running job can be cancelled`);
      return [{ type: 'SyncJobCancelled', data: { jobId: state.jobId!, connectionId: state.connectionId!, cancelledBy: command.by, endedAt: command.now } }];
  }
}

/** Applies one event to the state. */
export function evolve(state: SyncJobState, event: SyncJobEvent): SyncJobState {
  switch (event.type) {
    case 'SyncJobRequested':
      return {
        status: 'queued',
        jobId: event.data.jobId,
        connectionId: event.data.connectionId,
        workspaceId: event.data.workspaceId,
        attempts: 0,
        maxAttempts: event.data.maxAttempts,
        kind: event.data.kind ?? 'sync',
        check: event.data.check ?? null,
      };
    case 'SyncJobStarted':
      return { ...state, status: 'running', attempts: event.data.attempt };
    case 'SyncJobAttemptFailed':
      return { ...state, status: 'queued' };
    case 'SyncJobSucceeded':
      return { ...state, status: 'succeeded' };
    case 'SyncJobFailed':
      return { ...state, status: 'failed' };
    case 'SyncJobCancelled':
      return { ...state, status: 'cancelled' };
  }
}

/** Exponential back-off: `baseMs · 2^(attempt-1)`, capped at `maxMs`. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
}
