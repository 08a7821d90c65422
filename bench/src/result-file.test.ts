import { describe, expect, it } from 'vitest';
import { resultFileName, resultJson, resultProblems, type BenchResult } from './result-file';

const result: BenchResult = {
  version: 1,
  startedAt: '2025-12-01T13:54:00.000Z',
  durationSeconds: 600,
  commit: 'abc1234',
  machine: { cpuModel: 'x', cpus: 2, memoryGiB: 8, node: 'v20.19.0', platform: 'linux', loadAverageStart: [1, 2, 3], loadAverageEnd: [2, 2, 3] },
  method: { rounds: 3 },
  rows: [
    { id: 'echo', name: 'echo', kind: 'baseline', measured: true, figures: { throughput: 1, p50: NaN, p95: 1, p99: 1, cpuMsPerOp: {}, ops: 1, errors: 0 } },
    { id: 'rss', name: 'rss', kind: 'coffer', measured: true, value: 100, unit: 'MiB', baseline: 'echo', ratioOf: 'value' },
    { id: 'p6', name: 'P6', kind: 'coffer', measured: false },
  ],
};

describe('the result file', () => {
  it('is named after the day, or the second, of the run', () => {
    expect(resultFileName(new Date('2025-12-01T13:54:07Z'))).toBe('2025-12-01.json');
    expect(resultFileName(new Date('2025-12-01T13:54:07Z'), true)).toBe('2025-12-01T13-54-07.json');
  });

  it('round-trips through JSON with the shape the README and tools read; a figure that is not a number is null', () => {
    const text = resultJson(result);
    const parsed = JSON.parse(text) as BenchResult;
    expect(resultProblems(parsed)).toEqual([]);
    expect(parsed.rows[0]!.figures!.p50).toBeNull();
  });

  it('names each problem of a malformed file', () => {
    expect(resultProblems(null)).toEqual(['not an object']);
    const broken = { ...result, version: 2, machine: {}, rows: [result.rows[1], { ...result.rows[1], measured: 'yes' }, { id: 'x', name: 'x', measured: true }] };
    expect(resultProblems(broken)).toEqual([
      'version: not 1',
      'machine: cpus or load averages missing',
      'rows[0]: baseline echo is no row',
      'rows[1]: id rss twice',
      'rows[1]: measured not a boolean',
      'rows[1]: baseline echo is no row',
      'rows[2]: measured but no figures nor value',
    ]);
  });
});
