import { describe, expect, it } from 'vitest';
import { createKeyedRateBudget } from './keyed-rate-budget';

// A clock the test moves by hand; `wait` advances it as a timer would have.
function manualClock() {
  let t = 0;
  const waits: number[] = [];
  return {
    now: () => t,
    wait: async (ms: number, signal?: AbortSignal) => {
      if (signal?.aborted) throw signal.reason;
      waits.push(ms);
      t += ms;
    },
    advance: (ms: number) => (t += ms),
    waits,
  };
}

describe('createKeyedRateBudget', () => {
  it('serves a burst at once, then spreads the rest at the sustained rate; other keys keep their own budget', async () => {
    const clock = manualClock();
    const budget = createKeyedRateBudget({ perSecond: 100, burst: 100, per: 'workspace', units: 'secret versions', now: clock.now, wait: clock.wait });
    await budget.take('a', 100);
    expect(clock.waits).toEqual([]);
    expect(budget.available('a')).toBe(0);
    await budget.take('a', 50);
    expect(clock.waits).toEqual([500]);
    await budget.take('b', 100);
    expect(clock.waits).toEqual([500]);
    clock.advance(10_000);
    expect(budget.available('a')).toBe(100);
  });

  it('charges calls that wait at the same time one after the other', async () => {
    const clock = manualClock();
    const pending: Array<() => void> = [];
    const budget = createKeyedRateBudget({
      perSecond: 10,
      burst: 10,
      per: 'workspace',
      units: 'secret versions',
      now: clock.now,
      wait: (ms) => new Promise<void>((resolve) => pending.push(() => (clock.waits.push(ms), resolve()))),
    });
    await budget.take('a', 10);
    const second = budget.take('a', 10);
    const third = budget.take('a', 10);
    expect(budget.available('a')).toBe(-20);
    pending.forEach((go) => go());
    await Promise.all([second, third]);
    expect(clock.waits).toEqual([1000, 2000]);
  });

  it('refuses at once, taking nothing, a call whose wait would outlast its deadline', async () => {
    const clock = manualClock();
    const budget = createKeyedRateBudget({ perSecond: 10, burst: 10, per: 'workspace', units: 'secret versions', now: clock.now, wait: clock.wait });
    await budget.take('a', 10);
    await expect(budget.take('a', 10, { deadline: new Date(Date.now() + 200) })).rejects.toMatchObject({
      code: 'unavailable',
      message: 'this workspace is over its rate of 10 secret versions per second; retry in 1 s',
    });
    expect(budget.available('a')).toBe(0);
    await budget.take('a', 10, { deadline: new Date(Date.now() + 60_000) });
    expect(clock.waits).toEqual([1000]);
  });

  it('gives the units back when the caller cancels while waiting', async () => {
    const clock = manualClock();
    const budget = createKeyedRateBudget({ perSecond: 10, burst: 10, per: 'workspace', units: 'secret versions', now: clock.now, wait: clock.wait });
    await budget.take('a', 10);
    const abort = new AbortController();
    abort.abort(new Error('cancelled'));
    await expect(budget.take('a', 5, { signal: abort.signal })).rejects.toThrow('cancelled');
    expect(budget.available('a')).toBe(0);
  });

  it('waits on a real timer when no clock is given', async () => {
    const budget = createKeyedRateBudget({ perSecond: 1000, burst: 10, per: 'workspace', units: 'secret versions' });
    const started = performance.now();
    await budget.take('a', 10);
    await budget.take('a', 20);
    expect(performance.now() - started).toBeGreaterThanOrEqual(15);
  });
});
