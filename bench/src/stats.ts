/** A percentile (0–100) of some samples by nearest rank; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** The median: the mean of the two middle samples of an even count; NaN when there are none. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** What one timed run of a scenario gave. */
export interface RunFigures {
  /** Operations completed per second of the run. */
  throughput: number;
  p50: number;
  p95: number;
  p99: number;
  /** CPU milliseconds per completed operation, per process (`secrets`, `postgres`, `bench`, …). */
  cpuMsPerOp: Record<string, number>;
  ops: number;
  errors: number;
}

/** The figures of one run from its latencies (ms), its length (ms) and the CPU each process spent (ms). */
export function runFigures(latencies: readonly number[], elapsedMs: number, cpuMs: Record<string, number>, errors = 0): RunFigures {
  const ops = latencies.length;
  const cpuMsPerOp = Object.fromEntries(Object.entries(cpuMs).map(([name, ms]) => [name, ops ? ms / ops : NaN]));
  return {
    throughput: elapsedMs > 0 ? (ops * 1000) / elapsedMs : NaN,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    cpuMsPerOp,
    ops,
    errors,
  };
}

/** The median of each figure over several rounds of one scenario (CPU per process as well). */
export function medianOfRounds(rounds: readonly RunFigures[]): RunFigures {
  const of = (pick: (r: RunFigures) => number) => median(rounds.map(pick));
  const processes = [...new Set(rounds.flatMap((r) => Object.keys(r.cpuMsPerOp)))];
  return {
    throughput: of((r) => r.throughput),
    p50: of((r) => r.p50),
    p95: of((r) => r.p95),
    p99: of((r) => r.p99),
    cpuMsPerOp: Object.fromEntries(processes.map((p) => [p, median(rounds.map((r) => r.cpuMsPerOp[p]).filter((v): v is number => v !== undefined))])),
    ops: rounds.reduce((n, r) => n + r.ops, 0),
    errors: rounds.reduce((n, r) => n + r.errors, 0),
  };
}
