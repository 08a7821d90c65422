import { setTimeout as sleep } from 'node:timers/promises';
import { CofferError } from '@coffer/contracts';

/** Options of {@link createKeyedRateBudget}. */
export interface KeyedRateBudgetOptions {
  /** Units (e.g. secret versions) one key may use per second, sustained. */
  perSecond: number;
  /** Units one key may use at once after a quiet period; at least the largest single request. */
  burst: number;
  /** Says what is limited, in the refusal message (e.g. `workspace`). */
  per: string;
  /** Says what the units are, in the refusal message (e.g. `secret versions`). */
  units: string;
  /** Milliseconds clock; `performance.now` unless a test gives another. */
  now?: () => number;
  /** Waits `ms` (abortable); a timer unless a test gives another. */
  wait?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** Spreads one key's work over time so that one key cannot take every turn of a shared machine. */
export interface KeyedRateBudget {
  /**
   * Takes `amount` units of `key`'s budget: at once while the key has them, otherwise after the
   * wait that pays them back. Refuses with `unavailable` (and takes nothing) when that wait would
   * end after `deadline`, and rethrows the abort reason when `signal` aborts while waiting.
   */
  take(key: string, amount: number, options?: { deadline?: Date; signal?: AbortSignal }): Promise<void>;
  /** Units `key` has now (negative while calls are waiting on it), for tests and metrics. */
  available(key: string): number;
}

interface Bucket {
  units: number;
  at: number;
}

// Buckets that have refilled are dropped once this many keys are held, so idle keys cost nothing.
const PRUNE_ABOVE = 1_000;

/**
 * A token bucket per key that shapes rather than refuses: a call waits for the units it needs (a
 * debt later calls of the key pay as well), and only a call that could not be served before its
 * deadline is refused. State is per process, like {@link createKeyedLimiter}'s.
 */
export function createKeyedRateBudget(options: KeyedRateBudgetOptions): KeyedRateBudget {
  if (!(options.perSecond > 0)) throw new Error('createKeyedRateBudget: perSecond must be positive');
  if (!(options.burst >= 1)) throw new Error('createKeyedRateBudget: burst must be at least 1');
  const now = options.now ?? (() => performance.now());
  const wait = options.wait ?? ((ms: number, signal?: AbortSignal) => sleep(ms, undefined, { signal }));
  const buckets = new Map<string, Bucket>();

  function refilled(key: string, t: number): Bucket {
    let bucket = buckets.get(key);
    if (!bucket) {
      if (buckets.size >= PRUNE_ABOVE) prune(t);
      bucket = { units: options.burst, at: t };
      buckets.set(key, bucket);
      return bucket;
    }
    bucket.units = Math.min(options.burst, bucket.units + ((t - bucket.at) * options.perSecond) / 1000);
    bucket.at = t;
    return bucket;
  }

  function prune(t: number): void {
    for (const [key, bucket] of buckets) {
      if (bucket.units + ((t - bucket.at) * options.perSecond) / 1000 >= options.burst) buckets.delete(key);
    }
  }

  return {
    async take(key, amount, { deadline, signal } = {}) {
      if (!(amount > 0)) return;
      if (signal?.aborted) throw signal.reason;
      const t = now();
      const bucket = refilled(key, t);
      const waitMs = bucket.units >= amount ? 0 : ((amount - bucket.units) * 1000) / options.perSecond;
      if (deadline && Date.now() + waitMs > deadline.getTime()) {
        const seconds = Math.max(1, Math.ceil(waitMs / 1000));
        throw new CofferError(
          'unavailable',
          `this ${options.per} is over its rate of ${options.perSecond} ${options.units} per second; retry in ${seconds} s`,
        );
      }
      bucket.units -= amount;
      if (waitMs === 0) return;
      try {
        await wait(waitMs, signal);
      } catch (err) {
        // Not served: the units go back to the key (calls queued behind it were charged after it, and keep their turn).
        refilled(key, now()).units += amount;
        throw signal?.reason ?? err;
      }
    },
    available(key) {
      return buckets.has(key) ? refilled(key, now()).units : options.burst;
    },
  };
}
