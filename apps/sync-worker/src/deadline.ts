/**
 * `signal` bounded by `ms`: aborted when `signal` is or when `ms` have passed, whichever comes first.
 * A timer of its own, cleared by `clear()`, rather than `AbortSignal.timeout`: a timeout signal held
 * only by `AbortSignal.any` can be collected before it fires (nodejs/node#57736), and the call would
 * then wait for ever.
 */
export function withDeadline(signal: AbortSignal | undefined, ms: number, message: string): { signal: AbortSignal; clear(): void } {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new Error(message)), ms);
  return { signal: signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal, clear: () => clearTimeout(timer) };
}
