/** Options of {@link createRateLimiter}. */
export interface RateLimiterOptions {
  /** Calls per second a key may make on average. */
  perSecond: number;
  /** Calls a key may make at once (the bucket's size). */
  burst: number;
  /** Milliseconds since some epoch; tests pass their own. */
  now?: () => number;
  /** Keys kept at most; the longest idle are forgotten first (a forgotten key starts full). */
  maxKeys?: number;
}

/** A token bucket per key (a token's id, or a client address when there is no token). */
export interface RateLimiter {
  /** Takes one call from `key`'s bucket: `{ ok: true }`, or how many seconds until one is free again. */
  take(key: string): { ok: true } | { ok: false; retryAfterSeconds: number };
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Creates a per-process limiter: state is a cache of buckets, not shared between replicas. */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const now = options.now ?? (() => performance.now());
  const maxKeys = options.maxKeys ?? 100_000;
  const buckets = new Map<string, Bucket>();
  return {
    take(key) {
      const t = now();
      const b = buckets.get(key) ?? { tokens: options.burst, at: t };
      buckets.delete(key);
      b.tokens = Math.min(options.burst, b.tokens + ((t - b.at) / 1000) * options.perSecond);
      b.at = t;
      // Re-inserted last: the Map's first keys are the longest idle.
      buckets.set(key, b);
      if (buckets.size > maxKeys) buckets.delete(buckets.keys().next().value!);
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return { ok: true };
      }
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / options.perSecond)) };
    },
  };
}
