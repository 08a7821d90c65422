import { CofferError } from '@coffer/contracts';

/** Options of {@link createKeyedLimiter}. */
export interface KeyedLimiterOptions {
  /** Calls of one key that run at once. */
  concurrent: number;
  /** Calls of one key that may wait for a turn; beyond that a call is refused at once. */
  queued: number;
  /** Says what is limited, in the refusal message (e.g. `workspace`). */
  per: string;
}

/** Bounds concurrent work per key (e.g. per workspace) so one key cannot take every turn. */
export interface KeyedLimiter {
  /**
   * Runs `work` when the key has a free turn; waits in a short queue otherwise, and refuses with
   * `unavailable` when that queue is full or `signal` aborts while waiting.
   */
  run<T>(key: string, work: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Calls running and waiting for one key (for tests and metrics). */
  load(key: string): { running: number; waiting: number };
}

interface Lane {
  running: number;
  waiting: Array<() => void>;
}

/** Creates a per-key semaphore with a bounded queue; state is per process (a cache of turns, not shared state). */
export function createKeyedLimiter(options: KeyedLimiterOptions): KeyedLimiter {
  if (!Number.isInteger(options.concurrent) || options.concurrent < 1) throw new Error('createKeyedLimiter: concurrent must be a positive integer');
  if (!Number.isInteger(options.queued) || options.queued < 0) throw new Error('createKeyedLimiter: queued must be a non-negative integer');
  const lanes = new Map<string, Lane>();
  const busy = () => new CofferError('unavailable', `too many concurrent calls for this ${options.per}; retry later`);

  function release(key: string, lane: Lane): void {
    const next = lane.waiting.shift();
    if (next) return next();
    lane.running--;
    if (lane.running === 0) lanes.delete(key);
  }

  async function acquire(key: string, signal?: AbortSignal): Promise<Lane> {
    if (signal?.aborted) throw signal.reason ?? busy();
    let lane = lanes.get(key);
    if (!lane) {
      lane = { running: 0, waiting: [] };
      lanes.set(key, lane);
    }
    if (lane.running < options.concurrent) {
      lane.running++;
      return lane;
    }
    if (lane.waiting.length >= options.queued) throw busy();
    const l = lane;
    await new Promise<void>((resolve, reject) => {
      const turn = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = l.waiting.indexOf(turn);
        if (i >= 0) l.waiting.splice(i, 1);
        reject(signal?.reason ?? busy());
      };
      l.waiting.push(turn);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    // The turn is handed over by release(): `running` already counts this call.
    return l;
  }

  return {
    async run(key, work, signal) {
      const lane = await acquire(key, signal);
      try {
        return await work();
      } finally {
        release(key, lane);
      }
    },
    load(key) {
      const lane = lanes.get(key);
      return { running: lane?.running ?? 0, waiting: lane?.waiting.length ?? 0 };
    },
  };
}
