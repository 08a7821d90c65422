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

/** Background jobs that run now and then every interval, one run at a time each; `stop` waits for runs in flight. */
export function startBackgroundJobs(logger: Logger, jobs: Array<[string, number, () => Promise<unknown>]>): { stop(): Promise<void> } {
  let stopped = false;
  const timers: NodeJS.Timeout[] = [];
  const running = new Set<Promise<void>>();
  for (const [name, intervalMs, run] of jobs) {
    let busy = false;
    const tick = () => {
      if (stopped || busy) return;
      busy = true;
      const p = run()
        .then((result) => logger.debug({ job: name, result }, 'background job ran'))
        .catch((err: unknown) => logger.error({ err, job: name }, 'background job failed; it runs again at the next interval'))
        .finally(() => {
          busy = false;
          running.delete(p);
        });
      running.add(p);
    };
    timers.push(setInterval(tick, intervalMs));
    setImmediate(tick);
  }
  return {
    async stop() {
      stopped = true;
      for (const t of timers) clearInterval(t);
      await Promise.all(running);
    },
  };
}
