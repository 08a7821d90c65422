import type { RunFigures } from './stats';

/** A bound a row is held to: on its ratio to its baseline, its throughput, its p99, or its single value. */
export interface Target {
  of: 'ratio' | 'throughput' | 'p99' | 'value';
  atLeast?: number;
  atMost?: number;
}

/** One line of the table and of the result file. */
export interface Row {
  id: string;
  name: string;
  /** `coffer`: a figure of Coffer; `baseline`: what its parts do alone; `reference`: a cost for scale, no target. */
  kind: 'coffer' | 'baseline' | 'reference';
  measured: boolean;
  /** Throughput and latency rows: the median over the rounds. */
  figures?: RunFigures;
  /** Rows of one value (idle RSS, cold start): the median over the rounds, in `unit`. */
  value?: number;
  unit?: 'MiB' | 's';
  /** The id of the row this one is compared with. */
  baseline?: string;
  /** What the ratio compares: throughput (higher is better), p50, p99 or the value (lower is better). */
  ratioOf?: 'throughput' | 'p50' | 'p99' | 'value';
  ratio?: number;
  target?: Target;
  met?: boolean;
  note?: string;
}

function pick(row: Row, of: 'throughput' | 'p50' | 'p99' | 'value'): number | undefined {
  return of === 'value' ? row.value : row.figures?.[of];
}

/** The row's ratio to its baseline (Coffer ÷ baseline), undefined when either side is missing. */
export function ratioOf(row: Row, baseline: Row | undefined): number | undefined {
  if (!row.ratioOf || !baseline?.measured || !row.measured) return undefined;
  const mine = pick(row, row.ratioOf);
  const theirs = pick(baseline, row.ratioOf);
  if (mine === undefined || theirs === undefined || !Number.isFinite(mine) || !Number.isFinite(theirs) || theirs === 0) return undefined;
  return mine / theirs;
}

/** Whether a row meets its target; undefined when it has none or the figure is missing. */
export function meets(row: Row): boolean | undefined {
  const t = row.target;
  if (!t || !row.measured) return undefined;
  const figure = t.of === 'ratio' ? row.ratio : pick(row, t.of);
  if (figure === undefined || !Number.isFinite(figure)) return undefined;
  return (t.atLeast === undefined || figure >= t.atLeast) && (t.atMost === undefined || figure <= t.atMost);
}

/** The rows with each ratio and verdict filled in from the rows they name as baseline. */
export function settle(rows: readonly Row[]): Row[] {
  const byId = new Map(rows.map((r) => [r.id, r]));
  return rows.map((r) => {
    const ratio = ratioOf(r, r.baseline ? byId.get(r.baseline) : undefined);
    const withRatio = { ...r, ratio };
    return { ...withRatio, met: meets(withRatio) };
  });
}

/** A target as the table shows it, e.g. `≥ 0.6×`, `p99 ≤ 50 ms`, `≥ 1,000/s`. */
export function targetText(row: Row): string {
  const t = row.target;
  if (!t) return '';
  const bound = t.atLeast !== undefined ? `≥ ${fmt(t.atLeast)}` : `≤ ${fmt(t.atMost!)}`;
  if (t.of === 'ratio') return `${bound}×`;
  if (t.of === 'throughput') return `${bound}/s`;
  if (t.of === 'p99') return `p99 ${bound} ms`;
  return `${bound} ${row.unit ?? ''}`.trim();
}

/** A number rounded for reading: thousands grouped, about three significant digits. */
export function fmt(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  const abs = Math.abs(n);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return n.toLocaleString('en-US', { minimumFractionDigits: 0, maximumFractionDigits: digits });
}
