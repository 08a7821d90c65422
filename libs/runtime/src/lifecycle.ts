import { connectionLoss } from '@coffer/contracts';
import { StartupWaitError } from './startup-wait';
import type { Logger } from '@coffer/telemetry';

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

/** Logs a start-up failure (already redacted by the logger) and exits non-zero. */
export function failStartup(logger: Logger, err: unknown): never {
  // A dependency that never answered: the line itself says which setting to check.
  logger.fatal({ err }, err instanceof StartupWaitError ? `start-up failed: ${err.message}` : 'start-up failed');
  process.exit(1);
}

/** Options of {@link startBackgroundJobs}. */
export interface BackgroundJobsOptions {
  /** First pause after a failed run; it doubles with each failure in a row, up to the job's interval. Default 1 s. */
  firstRetryMs?: number;
}

/**
 * Background jobs that run now and then every interval, one run at a time each; `stop` waits for runs
 * in flight. A run that throws (a lost database connection, a peer down) is logged and the job tries
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
  for (const [name, intervalMs, run] of jobs) {
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
