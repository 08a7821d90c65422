/** The 99th percentile of some samples (nearest rank). */
export function p99(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
}

/** The median of some samples (the upper one of an even count). */
export function median(samples: readonly number[]): number {
  return [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
}

/**
 * Times `call` up to `count` times in a row, stopping early after `withinMs`: bounded by count and
 * by time, so a stall shows up as figures rather than a hung test. Milliseconds per call.
 */
export async function timedSeries(count: number, call: () => Promise<unknown>, withinMs = 60_000): Promise<number[]> {
  const samples: number[] = [];
  const end = performance.now() + withinMs;
  for (let i = 0; i < count && performance.now() < end; i++) {
    const t0 = performance.now();
    await call();
    samples.push(performance.now() - t0);
  }
  return samples;
}

/** Median and p99 of an idle and a loaded series, rounded for a log line, and the p99 ratio loaded / idle. */
export function latencyFigures(idle: readonly number[], loaded: readonly number[]) {
  const of = (xs: readonly number[]) => ({ median: +median(xs).toFixed(1), p99: +p99(xs).toFixed(1) });
  return { idle: of(idle), loaded: of(loaded), ratio: +(p99(loaded) / p99(idle)).toFixed(2) };
}
