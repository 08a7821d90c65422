import { connectionLoss } from '@coffer/contracts';
import type { Logger } from '@coffer/telemetry';
import type { JobLease } from './job-lease';

/** Logs the line the e2e test and the CLI read the bound port from. */
export function announceListening(logger: Logger, service: string, port: number): void {
  logger.info({ event: 'listening', service, port }, 'listening');
}

/** On SIGTERM or SIGINT, runs the steps in order (stop gRPC, drain NATS, close the pool), then exits. */
export function onShutdown(logger: Logger, steps: Array<[string, () => Promise<void>]>, exit: (code: number) => void = process.exit): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    let code = 0;
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        code = 1;
        logger.error({ err, step: name }, 'shutdown step failed');
      }
    }
    logger.info('stopped');
    exit(code);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

/**
 * One line that says why start-up failed: the error's message, or for errors that carry none (a
 * connection refused on every address is an AggregateError with an empty message) the first inner
 * error's message or the error code.
 */
export function describeStartupError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const inner = err instanceof AggregateError ? err.errors.find((e): e is Error => e instanceof Error && e.message !== '') : undefined;
  const text = err.message || inner?.message || (typeof code === 'string' ? code : '') || err.name;
  return typeof code === 'string' && code !== '' && !text.includes(code) ? `${text} (${code})` : text;
}

/**
 * Logs a start-up failure and exits non-zero. The fatal line opens with the reason and carries no
 * stack trace (an operator reads it first); the stack goes to a debug line for developers. Both pass
 * through the logger's redaction.
 */
export function failStartup(logger: Logger, err: unknown, exit: (code: number) => void = process.exit): never {
  const reason = describeStartupError(err);
  const code = (err as { code?: unknown } | undefined)?.code;
  logger.fatal({ event: 'startup_failed', reason, ...(typeof code === 'string' && { code }) }, `start-up failed: ${reason}`);
  logger.debug({ err }, 'start-up failure, with its stack');
  exit(1);
  throw err;
}

/**
 * Loads the settings with `load` (an app's `loadXConfig(process.env)`); when they are bad, prints
 * every problem to stderr, one per line and without a stack trace, and exits 1. Runs before the logger
 * exists, since the log level is one of the settings.
 */
export function loadSettingsOrExit<T>(load: () => T, exit: (code: number) => void = process.exit): T {
  try {
    return load();
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    exit(1);
    throw err;
  }
}

/** Options of {@link startBackgroundJobs}. */
export interface BackgroundJobsOptions {
  /** First pause after a failed run; it doubles with each failure in a row, up to the job's interval. Default 1 s. */
  firstRetryMs?: number;
  /**
   * Runs each turn under a lease shared with the service's other replicas (`runtime.jobLease`): one
   * replica at a time, once per interval across them. Without it every replica runs every job.
   */
  lease?: JobLease;
}

/**
 * Background jobs that run now and then every interval, one run at a time each (with `lease`, one
 * run at a time across replicas too); `stop` waits for runs in flight. A run that throws (a lost database connection, a peer down) is logged and the job tries
 * again sooner, after 1 s, 2 s, 4 s … up to its interval; a job never stops until `stop`.
 */
export function startBackgroundJobs(
  logger: Logger,
  jobs: Array<[string, number, () => Promise<unknown>]>,
  options: BackgroundJobsOptions = {},
): { stop(): Promise<void> } {
  const firstRetryMs = options.firstRetryMs ?? 1_000;
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const running = new Set<Promise<void>>();
  for (const [name, intervalMs, job] of jobs) {
    const lease = options.lease;
    const run = lease ? () => lease(name, intervalMs, job) : job;
    let failures = 0;
    const schedule = (ms: number) => {
      if (stopped) return;
      const t = setTimeout(() => {
        timers.delete(t);
        tick();
      }, ms);
      timers.add(t);
    };
    const tick = () => {
      if (stopped) return;
      const p = run()
        .then(
          (result) => {
            if (failures > 0) logger.info({ job: name, failures }, 'background job ran again after failing');
            else logger.debug({ job: name, result }, 'background job ran');
            failures = 0;
            return intervalMs;
          },
          (err: unknown) => {
            failures += 1;
            const retryInMs = Math.min(intervalMs, firstRetryMs * 2 ** Math.min(failures - 1, 30));
            const lost = connectionLoss(err);
            if (lost) logger.warn({ job: name, connection: lost, failures, retryInMs }, 'background job lost a connection; retrying');
            else logger.error({ err, job: name, failures, retryInMs }, 'background job failed; retrying');
            return retryInMs;
          },
        )
        .then((next) => {
          running.delete(p);
          schedule(next);
        });
      running.add(p);
    };
    setImmediate(tick);
  }
  return {
    async stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await Promise.all(running);
    },
  };
}
