import { describe, expect, it } from 'vitest';
import { decide, evolve, initialState, type StartSyncJob, type SyncJobEvent } from './sync-job.decider';

const now = '2026-01-01T00:00:00.000Z';
const start: StartSyncJob = { type: 'StartSyncJob', jobId: 'j1', connectionId: 'c1', workspaceId: 'w1', now };
const given = (events: SyncJobEvent[]) => events.reduce(evolve, initialState());

describe('sync job decider', () => {
  it('given nothing, when starting, then SyncJobStarted', () => {
    expect(decide(start, initialState())).toEqual([{ type: 'SyncJobStarted', data: { jobId: 'j1', connectionId: 'c1', workspaceId: 'w1', startedAt: now } }]);
  });

  it('given a started job, when starting again, then failed_precondition', () => {
    expect(() => decide(start, given(decide(start, initialState())))).toThrow(/already started/);
  });

  it('given a running job, when completing, then SyncJobSucceeded with the count only', () => {
    const events = decide({ type: 'CompleteSyncJob', recordsSynced: 3, now }, given(decide(start, initialState())));
    expect(events).toEqual([{ type: 'SyncJobSucceeded', data: { jobId: 'j1', connectionId: 'c1', recordsSynced: 3, endedAt: now } }]);
  });

  it('given an ended job, when completing or failing, then failed_precondition', () => {
    const started = decide(start, initialState());
    const done = given([...started, ...decide({ type: 'FailSyncJob', reason: 'source returned HTTP 401', now }, given(started))]);
    expect(done.status).toBe('failed');
    expect(() => decide({ type: 'CompleteSyncJob', recordsSynced: 1, now }, done)).toThrow(/failed, not running/);
    expect(() => decide({ type: 'FailSyncJob', reason: 'x', now }, done)).toThrow(/failed, not running/);
  });

  it('given nothing, when completing or failing, then failed_precondition: a job ends only after it started', () => {
    expect(() => decide({ type: 'CompleteSyncJob', recordsSynced: 1, now }, initialState())).toThrow(/absent, not running/);
    expect(() => decide({ type: 'FailSyncJob', reason: 'x', now }, initialState())).toThrow(/absent, not running/);
  });

  it('given a succeeded job, when completing again, then failed_precondition', () => {
    const started = decide(start, initialState());
    const done = given([...started, ...decide({ type: 'CompleteSyncJob', recordsSynced: 2, now }, given(started))]);
    expect(done.status).toBe('succeeded');
    expect(() => decide({ type: 'CompleteSyncJob', recordsSynced: 2, now }, done)).toThrow(/succeeded, not running/);
  });

  it('given a running job, when completing with a negative or fractional count, then invalid_argument', () => {
    const running = given(decide(start, initialState()));
    for (const recordsSynced of [-1, 1.5, Number.NaN]) {
      expect(() => decide({ type: 'CompleteSyncJob', recordsSynced, now }, running)).toThrow(expect.objectContaining({ code: 'invalid_argument' }));
    }
  });

  it('bounds the failure reason', () => {
    const [event] = decide({ type: 'FailSyncJob', reason: 'x'.repeat(5000), now }, given(decide(start, initialState())));
    expect((event!.data as { reason: string }).reason).toHaveLength(500);
  });
});
