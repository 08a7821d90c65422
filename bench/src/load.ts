import { setTimeout as sleep } from 'node:timers/promises';

/** What a timed run collected: one latency (ms) per completed operation, its length and its failures. */
export interface Collected {
  latencies: number[];
  elapsedMs: number;
  errors: number;
  /** The first failure's message (never a secret: the bench writes only its own test values). */
  firstError?: string;
}

/** Runs `op` from `concurrency` callers, each starting its next call when its last one ends, for `ms`. */
export async function closedLoop(op: (i: number) => Promise<unknown>, concurrency: number, ms: number): Promise<Collected> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const began = performance.now();
  const end = began + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await op(next++);
          latencies.push(performance.now() - t0);
        } catch (err) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        }
      }
    }),
  );
  return { latencies, elapsedMs: performance.now() - began, errors, firstError };
}

/**
 * Starts `op` at a fixed rate for `ms`, not waiting for one to end before the next (an open loop),
 * then waits up to `drainMs` for the latencies it reports through `arrived`: each op returns a key,
 * and `arrived(key)` gives the latency of the event it caused.
 */
export async function pacedEvents(
  op: (i: number) => Promise<unknown>,
  perSecond: number,
  ms: number,
  pending: () => number,
  drainMs = 5_000,
): Promise<{ began: number; elapsedMs: number; errors: number; firstError?: string }> {
  let errors = 0;
  let firstError: string | undefined;
  const began = performance.now();
  const calls: Promise<unknown>[] = [];
  const count = Math.round((perSecond * ms) / 1000);
  for (let i = 0; i < count; i++) {
    const due = began + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    calls.push(
      op(i).catch((err: unknown) => {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }),
    );
  }
  await Promise.all(calls);
  const elapsedMs = performance.now() - began;
  const drainEnd = performance.now() + drainMs;
  while (pending() > 0 && performance.now() < drainEnd) await sleep(20);
  return { began, elapsedMs, errors, firstError };
}
