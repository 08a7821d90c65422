import { describe, expect, it } from 'vitest';
import { latencyFigures, median, p99, timedSeries } from './latency';

describe('latency figures', () => {
  it('takes the nearest-rank p99 and the median of unsorted samples', () => {
    const xs = Array.from({ length: 200 }, (_, i) => 200 - i);
    expect(p99(xs)).toBe(198);
    expect(median(xs)).toBe(101);
    expect(p99([5])).toBe(5);
    expect(latencyFigures([1, 2, 3], [2, 4, 6])).toEqual({ idle: { median: 2, p99: 3 }, loaded: { median: 4, p99: 6 }, ratio: 2 });
  });

  it('times a bounded series and stops at its time bound', async () => {
    let calls = 0;
    const samples = await timedSeries(1_000, async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 5));
    }, 50);
    expect(samples.length).toBe(calls);
    expect(calls).toBeGreaterThan(0);
    expect(calls).toBeLessThan(1_000);
    expect(samples.every((ms) => ms >= 4)).toBe(true);
  });
});
