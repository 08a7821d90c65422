import { fmt, targetText, type Row } from './rows';

const short: Record<string, string> = { secrets: 'sec', config: 'cfg', auth: 'auth', 'sync-worker': 'sync', postgres: 'pg', echo: 'echo', bench: 'client' };

/** CPU per operation per process, e.g. `sec 1.9 · pg 1.2 · client 0.4` (ms), leaving out processes under 0.01 ms. */
export function cpuText(cpuMsPerOp: Record<string, number> | undefined): string {
  if (!cpuMsPerOp) return '';
  return Object.entries(cpuMsPerOp)
    .filter(([, ms]) => Number.isFinite(ms) && ms >= 0.01)
    .map(([name, ms]) => `${short[name] ?? name} ${fmt(ms)}`)
    .join(' · ');
}

function verdict(row: Row): string {
  if (!row.measured) return 'not measured';
  if (row.met === undefined) return row.target ? '?' : '';
  return row.met ? 'met' : 'MISSED';
}

/** The cells of one row, in the order of {@link tableHeader}. */
export function rowCells(row: Row): string[] {
  const f = row.figures;
  const through = !row.measured ? '' : f ? `${fmt(f.throughput)}/s` : `${fmt(row.value)} ${row.unit ?? ''}`.trim();
  return [
    row.name,
    through,
    f ? fmt(f.p50) : '',
    f ? fmt(f.p95) : '',
    f ? fmt(f.p99) : '',
    cpuText(f?.cpuMsPerOp),
    row.ratio === undefined ? '' : `${fmt(row.ratio)}×`,
    targetText(row),
    verdict(row),
  ];
}

/** Column titles of the table. */
export const tableHeader = ['scenario', 'throughput / value', 'p50 ms', 'p95 ms', 'p99 ms', 'CPU ms per op', 'ratio', 'target', ''];

/** The rows as a Markdown table (readable in a terminal and pasteable into the README). */
export function formatTable(rows: readonly Row[]): string {
  const lines = [tableHeader, ...rows.map(rowCells)];
  const widths = tableHeader.map((_, i) => Math.max(...lines.map((cells) => cells[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(lines[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.slice(1).map(line)].join('\n');
}
