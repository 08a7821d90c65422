import { describe, expect, it } from 'vitest';
import { fmt, settle, targetText, type Row } from './rows';
import { cpuText, formatTable, rowCells } from './table';

const figures = (throughput: number, p99: number) => ({ throughput, p50: p99 / 2, p95: p99 * 0.9, p99, cpuMsPerOp: { secrets: 1.234, postgres: 0.5, auth: 0.001 }, ops: 100, errors: 0 });
const rows: Row[] = [
  { id: 'echo-c64', name: 'grpc-js echo c64', kind: 'baseline', measured: true, figures: figures(4000, 10) },
  { id: 'hydrate-c64', name: 'HydrateConfig c64', kind: 'coffer', measured: true, figures: figures(1000, 80), baseline: 'echo-c64', ratioOf: 'throughput', target: { of: 'ratio', atLeast: 0.6 } },
  { id: 'hydrate-c1', name: 'HydrateConfig c1', kind: 'coffer', measured: true, figures: figures(500, 3), baseline: 'echo-c64', ratioOf: 'p99', target: { of: 'ratio', atMost: 2 } },
  { id: 'rss-secrets', name: 'idle RSS secrets', kind: 'coffer', measured: true, value: 110, unit: 'MiB', target: { of: 'value', atMost: 120 } },
  { id: 'p6', name: 'P6 rebuild', kind: 'coffer', measured: false, target: { of: 'value', atMost: 60 }, unit: 's' },
];

describe('rows and the table', () => {
  it('fills in each ratio from the baseline and says whether the target is met', () => {
    const [, c64, c1, rss, p6] = settle(rows);
    expect(c64).toMatchObject({ ratio: 0.25, met: false });
    expect(c1).toMatchObject({ ratio: 0.3, met: true });
    expect(rss).toMatchObject({ ratio: undefined, met: true });
    expect(p6).toMatchObject({ ratio: undefined, met: undefined });
  });

  it('writes targets and numbers for reading', () => {
    expect(targetText(rows[1]!)).toBe('≥ 0.6×');
    expect(targetText({ ...rows[1]!, target: { of: 'p99', atMost: 50 } })).toBe('p99 ≤ 50 ms');
    expect(targetText({ ...rows[1]!, target: { of: 'throughput', atLeast: 1000 } })).toBe('≥ 1,000/s');
    expect(targetText(rows[3]!)).toBe('≤ 120 MiB');
    expect(fmt(8333.4)).toBe('8,333');
    expect(fmt(19.23)).toBe('19.2');
    expect(fmt(0.0456)).toBe('0.046');
    expect(fmt(NaN)).toBe('–');
  });

  it('shows CPU per operation per process, leaving out what is negligible', () => {
    expect(cpuText({ secrets: 1.234, postgres: 0.5, auth: 0.001, bench: 0.25 })).toBe('sec 1.23 · pg 0.5 · client 0.25');
  });

  it('prints one aligned Markdown line per row, with the verdict last', () => {
    const settled = settle(rows);
    const table = formatTable(settled).split('\n');
    expect(table).toHaveLength(rows.length + 2);
    expect(new Set(table.map((l) => l.length)).size).toBe(1);
    expect(table[0]).toMatch(/^\| scenario +\| throughput/);
    expect(rowCells(settled[1]!)).toEqual(['HydrateConfig c64', '1,000/s', '40', '72', '80', 'sec 1.23 · pg 0.5', '0.25×', '≥ 0.6×', 'MISSED']);
    expect(rowCells(settled[3]!).slice(1, 2)).toEqual(['110 MiB']);
    expect(rowCells(settled[4]!).at(-1)).toBe('not measured');
  });
});
