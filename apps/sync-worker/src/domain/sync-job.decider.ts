import { CofferError } from '@coffer/contracts';

/** Starts a job for a SyncRequested event. */
export interface StartSyncJob {
  type: 'StartSyncJob';
  jobId: string;
  connectionId: string;
  workspaceId: string;
  now: string;
}

/** Records that every record reached the destination. */
export interface CompleteSyncJob {
  type: 'CompleteSyncJob';
  recordsSynced: number;
  now: string;
}

/** Records why the job failed; the reason is already redacted and holds no record data. */
export interface FailSyncJob {
  type: 'FailSyncJob';
  reason: string;
  now: string;
}

export type SyncJobCommand = StartSyncJob | CompleteSyncJob | FailSyncJob;

export interface SyncJobStartedData {
  jobId: string;
  connectionId: string;
  workspaceId: string;
  startedAt: string;
}

export interface SyncJobSucceededData {
  jobId: string;
  connectionId: string;
  recordsSynced: number;
  endedAt: string;
}

export interface SyncJobFailedData {
  jobId: string;
  connectionId: string;
  reason: string;
  endedAt: string;
}

export type SyncJobEvent =
  | { type: 'SyncJobStarted'; data: SyncJobStartedData }
  | { type: 'SyncJobSucceeded'; data: SyncJobSucceededData }
  | { type: 'SyncJobFailed'; data: SyncJobFailedData };

export interface SyncJobState {
  status: 'absent' | 'running' | 'succeeded' | 'failed';
  jobId: string | null;
  connectionId: string | null;
}

/** The state of a job that has not started. */
export function initialState(): SyncJobState {
  return { status: 'absent', jobId: null, connectionId: null };
}

const MAX_REASON = 500;

/** Decides the events of a command, or refuses it: a job starts once and ends once. */
export function decide(command: SyncJobCommand, state: SyncJobState): SyncJobEvent[] {
  switch (command.type) {
    case 'StartSyncJob':
      if (state.status !== 'absent') throw new CofferError('failed_precondition', `job ${command.jobId} already started`);
      return [{ type: 'SyncJobStarted', data: { jobId: command.jobId, connectionId: command.connectionId, workspaceId: command.workspaceId, startedAt: command.now } }];
    case 'CompleteSyncJob':
      if (state.status !== 'running') throw new CofferError('failed_precondition', `job is ${state.status}, not running`);
      if (!Number.isInteger(command.recordsSynced) || command.recordsSynced < 0) {
        throw new CofferError('invalid_argument', 'records synced must be a non-negative integer');
      }
      return [{ type: 'SyncJobSucceeded', data: { jobId: state.jobId!, connectionId: state.connectionId!, recordsSynced: command.recordsSynced, endedAt: command.now } }];
    case 'FailSyncJob':
      if (state.status !== 'running') throw new CofferError('failed_precondition', `job is ${state.status}, not running`);
      return [{ type: 'SyncJobFailed', data: { jobId: state.jobId!, connectionId: state.connectionId!, reason: command.reason.slice(0, MAX_REASON), endedAt: command.now } }];
  }
}

/** Applies one event to the state. */
export function evolve(state: SyncJobState, event: SyncJobEvent): SyncJobState {
  switch (event.type) {
    case 'SyncJobStarted':
      return { status: 'running', jobId: event.data.jobId, connectionId: event.data.connectionId };
    case 'SyncJobSucceeded':
      return { ...state, status: 'succeeded' };
    case 'SyncJobFailed':
      return { ...state, status: 'failed' };
  }
}
