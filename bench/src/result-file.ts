import type { Row } from './rows';

/** The machine a run was made on, and how busy it was. */
export interface Machine {
  cpuModel: string;
  cpus: number;
  memoryGiB: number;
  node: string;
  platform: string;
  /** 1, 5 and 15 minute load averages when the run began and when it ended: other work on the machine shows here. */
  loadAverageStart: number[];
  loadAverageEnd: number[];
}

/** What `bench/results/<date>.json` holds. */
export interface BenchResult {
  version: 1;
  startedAt: string;
  durationSeconds: number;
  commit: string;
  machine: Machine;
  /** How it was measured: rounds, seconds per run, how writes were spread, the settings changed from the defaults. */
  method: Record<string, string | number>;
  rows: Row[];
}

/** The file name of a result: `<date>.json`, with the time of day when `withTime` (a second run the same day). */
export function resultFileName(startedAt: Date, withTime = false): string {
  const iso = startedAt.toISOString();
  return `${withTime ? iso.slice(0, 19).replace(/:/g, '-') : iso.slice(0, 10)}.json`;
}

/** What is wrong with a parsed result file, one line each; empty when it has the shape of {@link BenchResult}. */
export function resultProblems(value: unknown): string[] {
  const problems: string[] = [];
  if (typeof value !== 'object' || value === null) return ['not an object'];
  const r = value as Partial<BenchResult>;
  if (r.version !== 1) problems.push('version: not 1');
  if (typeof r.startedAt !== 'string' || Number.isNaN(Date.parse(r.startedAt))) problems.push('startedAt: not a date');
  if (typeof r.durationSeconds !== 'number') problems.push('durationSeconds: not a number');
  if (typeof r.commit !== 'string') problems.push('commit: not a string');
  const m = r.machine;
  if (!m || typeof m.cpus !== 'number' || !Array.isArray(m.loadAverageStart) || !Array.isArray(m.loadAverageEnd)) problems.push('machine: cpus or load averages missing');
  if (!Array.isArray(r.rows) || r.rows.length === 0) return [...problems, 'rows: none'];
  const ids = new Set<string>();
  r.rows.forEach((row, i) => {
    const at = `rows[${i}]`;
    if (typeof row.id !== 'string' || typeof row.name !== 'string') problems.push(`${at}: id or name missing`);
    if (ids.has(row.id)) problems.push(`${at}: id ${row.id} twice`);
    ids.add(row.id);
    if (typeof row.measured !== 'boolean') problems.push(`${at}: measured not a boolean`);
    if (row.measured && !row.figures && typeof row.value !== 'number') problems.push(`${at}: measured but no figures nor value`);
    if (row.baseline !== undefined && !r.rows!.some((b) => b.id === row.baseline)) problems.push(`${at}: baseline ${row.baseline} is no row`);
  });
  return problems;
}

/** JSON text of a result; NaN and infinities (a figure that could not be computed) become null. */
export function resultJson(result: BenchResult): string {
  return `${JSON.stringify(result, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`;
}
