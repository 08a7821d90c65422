import { describe, expect, it } from 'vitest';
import { median, medianOfRounds, percentile, runFigures } from './stats';

describe('statistics', () => {
  it('takes percentiles by nearest rank', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 95)).toBe(95);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('takes the median of odd and even counts without reordering its input', () => {
    const xs = [3, 1, 2];
    expect(median(xs)).toBe(2);
    expect(xs).toEqual([3, 1, 2]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('makes the figures of a run: throughput per second and CPU per operation', () => {
    const f = runFigures([1, 2, 3, 4], 2_000, { secrets: 8, postgres: 2 }, 1);
    expect(f).toMatchObject({ throughput: 2, p50: 2, p95: 4, p99: 4, ops: 4, errors: 1 });
    expect(f.cpuMsPerOp).toEqual({ secrets: 2, postgres: 0.5 });
    expect(runFigures([], 1_000, { secrets: 5 }).cpuMsPerOp.secrets).toBeNaN();
  });

  it('takes the median of every figure over rounds, and sums operations and errors', () => {
    const round = (t: number, cpu: number) => ({ throughput: t, p50: t, p95: t, p99: t, cpuMsPerOp: { secrets: cpu }, ops: 10, errors: 1 });
    const m = medianOfRounds([round(1, 3), round(5, 1), round(3, 2)]);
    expect(m).toEqual({ throughput: 3, p50: 3, p95: 3, p99: 3, cpuMsPerOp: { secrets: 2 }, ops: 30, errors: 3 });
  });
});
