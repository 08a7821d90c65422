import { describe, expect, it } from 'vitest';
import { decide, delayOf, failureDelayMs, type LockoutPolicy } from './client-lockout.decider';

const policy: LockoutPolicy = { maxFailures: 3, windowMs: 60_000, lockMs: 300_000 };
const now = '2026-01-01T00:00:00.000Z';

describe('client lockout decider', () => {
  it('given a failure that reached the limit, then it is recorded and the client is locked', () => {
    expect(decide('c', { type: 'failed', failuresInWindow: 3, lockedUntil: '2026-01-01T00:05:00.000Z' }, now).map((e) => e.type)).toEqual(['LoginFailed', 'ClientLocked']);
    expect(decide('c', { type: 'failed', failuresInWindow: 1, lockedUntil: null }, now)).toEqual([{ type: 'LoginFailed', data: { clientId: 'c', failuresInWindow: 1, failedAt: now } }]);
  });

  it('given earlier failures, when the right secret comes, then they are cleared; a refused attempt leaves nothing', () => {
    expect(decide('c', { type: 'succeeded', clearedFailures: 2 }, now).map((e) => e.type)).toEqual(['FailedLoginsCleared']);
    expect(decide('c', { type: 'succeeded', clearedFailures: 0 }, now)).toEqual([]);
    expect(decide('c', { type: 'refused' }, now)).toEqual([]);
  });

  it('slows failed answers down, doubling up to a bound; a refused attempt waits as long as the one that locked', () => {
    expect([1, 2, 3, 5, 10].map(failureDelayMs)).toEqual([250, 500, 1000, 4000, 4000]);
    expect(delayOf({ type: 'refused' }, policy)).toBe(1000);
    expect(delayOf({ type: 'failed', failuresInWindow: 2, lockedUntil: null }, policy)).toBe(500);
  });
});
