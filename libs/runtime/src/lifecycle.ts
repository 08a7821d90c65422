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
  logger.fatal({ err }, 'start-up failed');
  process.exit(1);
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
