import { describe, expect, it } from 'vitest';
import { decide, evolve, failureDelayMs, initialState, isLocked, type ClientLockoutEvent, type LockoutPolicy } from './client-lockout.decider';

const policy: LockoutPolicy = { maxFailures: 3, windowMs: 60_000, lockMs: 300_000 };
const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
const fail = (state = initialState(), s = 0) => decide({ type: 'RecordFailedLogin', clientId: 'c', now: at(s), policy }, state);
const given = (events: ClientLockoutEvent[]) => events.reduce(evolve, initialState());

describe('client lockout decider', () => {
  it('given two failures, when a third comes within the window, then the client is locked for the lock period', () => {
    let events = [...fail(), ...fail(given(fail()), 1)];
    const third = fail(given(events), 2);
    expect(third.map((e) => e.type)).toEqual(['LoginFailed', 'ClientLocked']);
    events = [...events, ...third];
    expect(isLocked(given(events), new Date(at(3)))).toBe(true);
    expect(isLocked(given(events), new Date(Date.parse(at(2)) + 300_001))).toBe(false);
  });

  it('given failures outside the window, when another comes, then no lock', () => {
    const old = given([...fail(initialState(), 0), ...fail(given(fail()), 1)]);
    expect(fail(old, 120).map((e) => e.type)).toEqual(['LoginFailed']);
  });

  it('given failures, when the right secret comes, then they are cleared; while locked even the right secret is refused', () => {
    const state = given(fail());
    expect(decide({ type: 'RecordSuccessfulLogin', clientId: 'c', now: at(1) }, state).map((e) => e.type)).toEqual(['FailedLoginsCleared']);
    expect(decide({ type: 'RecordSuccessfulLogin', clientId: 'c', now: at(1) }, initialState())).toEqual([]);
    const locked = given([{ type: 'ClientLocked', data: { clientId: 'c', lockedUntil: at(100), lockedAt: at(0) } }]);
    expect(() => decide({ type: 'RecordSuccessfulLogin', clientId: 'c', now: at(1) }, locked)).toThrow(/invalid client credentials/);
  });

  it('slows failed answers down, doubling up to a bound', () => {
    expect([1, 2, 3, 5, 10].map(failureDelayMs)).toEqual([250, 500, 1000, 4000, 4000]);
  });
});
