import { describe, expect, it } from 'vitest';
import { backoffMs, decide, evolve, initialState, type SyncJobCommand, type SyncJobEvent, type SyncJobState } from './sync-job.decider';

const now = '2025-01-01T00:00:00.000Z';
const ids = { jobId: '00000000-0000-4000-8000-000000000001', connectionId: '00000000-0000-4000-8000-000000000002', workspaceId: '00000000-0000-4000-8000-000000000003' };
const given = (...commands: SyncJobCommand[]): SyncJobState =>
  commands.reduce((state, c) => decide(c, state).reduce(evolve, state), initialState());
const request = (maxAttempts = 3): SyncJobCommand => ({ type: 'RequestSyncJob', ...ids, maxAttempts, now });
const start: SyncJobCommand = { type: 'StartSyncJob', workerId: 'w1', now };
const fail = (code: 'connector_error' | 'credential_needs_reauthorization' = 'connector_error'): SyncJobCommand => ({ type: 'FailSyncJobAttempt', code, reason: 'boom', retryAt: now, now });
const types = (events: SyncJobEvent[]) => events.map((e) => e.type);

describe('sync job decider', () => {
  it('queues a requested job once, then starts attempt 1', () => {
    expect(types(decide(request(), initialState()))).toEqual(['SyncJobRequested']);
    expect(() => decide(request(), given(request()))).toThrow(/already requested/);
    const [started] = decide(start, given(request()));
    expect(started).toMatchObject({ type: 'SyncJobStarted', data: { attempt: 1, workerId: 'w1' } });
  });

  it('retries a failed attempt until the attempts are used up, then fails the job', () => {
    expect(types(decide(fail(), given(request(2), start)))).toEqual(['SyncJobAttemptFailed']);
    const second = given(request(2), start, fail(), start);
    expect(second.attempts).toBe(2);
    expect(decide(fail(), second)[0]).toMatchObject({ type: 'SyncJobFailed', data: { attempt: 2, code: 'connector_error' } });
  });

  it('fails at once, without retry, when the credential needs reauthorization', () => {
    expect(types(decide(fail('credential_needs_reauthorization'), given(request(5), start)))).toEqual(['SyncJobFailed']);
  });

  it('succeeds only while running, with a non-negative count', () => {
    expect(() => decide({ type: 'CompleteSyncJob', recordsSynced: 1, now }, given(request()))).toThrow(/queued, not running/);
    expect(() => decide({ type: 'CompleteSyncJob', recordsSynced: -1, now }, given(request(), start))).toThrow(/non-negative/);
    expect(types(decide({ type: 'CompleteSyncJob', recordsSynced: 3, now }, given(request(), start)))).toEqual(['SyncJobSucceeded']);
  });

  it('cancels a queued or running job, and nothing that has ended', () => {
    expect(types(decide({ type: 'CancelSyncJob', by: 'op', now }, given(request())))).toEqual(['SyncJobCancelled']);
    expect(types(decide({ type: 'CancelSyncJob', by: 'op', now }, given(request(), start)))).toEqual(['SyncJobCancelled']);
    const done = given(request(), start, { type: 'CompleteSyncJob', recordsSynced: 0, now });
    expect(() => decide({ type: 'CancelSyncJob', by: 'op', now }, done)).toThrow(/succeeded/);
    const cancelled = given(request(), { type: 'CancelSyncJob', by: 'op', now });
    expect(() => decide(start, cancelled)).toThrow(/cancelled, not queued/);
  });

  it('keeps the records per stream of a sync, refusing a negative count', () => {
    const [done] = decide({ type: 'CompleteSyncJob', recordsSynced: 5, recordsPerStream: { a: 2, 'ns.b': 3 }, now }, given(request(), start));
    expect(done).toMatchObject({ type: 'SyncJobSucceeded', data: { recordsSynced: 5, recordsPerStream: { a: 2, 'ns.b': 3 } } });
    expect(() => decide({ type: 'CompleteSyncJob', recordsSynced: 1, recordsPerStream: { a: -1 }, now }, given(request(), start))).toThrow(/per stream/);
  });

  it('runs a check or discover job through the same lifecycle, without a connection, completing with its result', () => {
    const check: SyncJobCommand = { type: 'RequestSyncJob', ...ids, kind: 'check', check: { connector: 'c', partialConfigJson: '{}' }, maxAttempts: 2, now };
    expect(() => decide({ ...check, check: undefined } as SyncJobCommand, initialState())).toThrow(/needs a connector/);
    const [requested] = decide(check, initialState());
    expect(requested).toMatchObject({ type: 'SyncJobRequested', data: { kind: 'check', connectionId: '', check: { connector: 'c' } } });
    const running = given(check, start);
    expect(running).toMatchObject({ status: 'running', kind: 'check', attempts: 1 });
    expect(() => decide({ type: 'CompleteSyncJob', recordsSynced: 0, now }, running)).toThrow(/completes with its result/);
    const result = { succeeded: false, message: 'refused', catalogJson: '' };
    expect(decide({ type: 'CompleteSyncJob', recordsSynced: 0, result, now }, running)[0]).toMatchObject({ type: 'SyncJobSucceeded', data: { result } });
    expect(types(decide({ type: 'FailSyncJobAttempt', code: 'timeout', reason: 'slow', retryAt: now, now }, running))).toEqual(['SyncJobAttemptFailed']);
    expect(types(decide(fail(), given(check, start, fail(), start)))).toEqual(['SyncJobFailed']);
  });

  it('backs off exponentially up to a cap', () => {
    expect([1, 2, 3, 4, 10].map((a) => backoffMs(a, 1000, 10_000))).toEqual([1000, 2000, 4000, 8000, 10_000]);
  });
});
