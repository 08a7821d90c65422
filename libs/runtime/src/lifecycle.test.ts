import { describe, expect, it } from 'vitest';
import { createLogger } from '@coffer/telemetry';
import { startBackgroundJobs } from './lifecycle';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ service: 'test', level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  return { logger, lines };
}

async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('startBackgroundJobs', () => {
  it('retries a run that lost its connection sooner than its interval, with growing pauses, and keeps the job going', async () => {
    const { logger, lines } = capture();
    const at: number[] = [];
    const jobs = startBackgroundJobs(
      logger,
      [
        [
          'sweeper',
          60_000,
          async () => {
            at.push(Date.now());
            if (at.length <= 3) throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
            return 'swept';
          },
        ],
      ],
      { firstRetryMs: 20 },
    );
    try {
      await until(() => at.length === 4);
      console.log(`pauses measured after failures: ${at.slice(1).map((t, i) => t - at[i]!).join(', ')} ms`);
      // The schedule, as logged: 20, 40, 80 ms, sooner than the 60 s interval and each twice the last.
      const warnings = lines.filter((l) => l.msg === 'background job lost a connection; retrying');
      expect(warnings.map((l) => [l.connection, l.failures, l.retryInMs])).toEqual([
        ['postgres:57P01', 1, 20],
        ['postgres:57P01', 2, 40],
        ['postgres:57P01', 3, 80],
      ]);
      await until(() => lines.some((l) => l.msg === 'background job ran again after failing'));
    } finally {
      await jobs.stop();
    }
  });

  it('keeps running a job whose run throws anything else, at most every interval', async () => {
    const { logger, lines } = capture();
    let runs = 0;
    const jobs = startBackgroundJobs(
      logger,
      [
        [
          'broken',
          30,
          async () => {
            runs += 1;
            throw new TypeError('a bug');
          },
        ],
      ],
      { firstRetryMs: 1_000 },
    );
    try {
      await until(() => runs >= 3);
      expect(lines.filter((l) => l.msg === 'background job failed; retrying').every((l) => l.retryInMs === 30)).toBe(true);
    } finally {
      await jobs.stop();
    }
    const after = runs;
    await new Promise((r) => setTimeout(r, 100));
    expect(runs).toBe(after);
  });

  it('stop waits for the run in flight and schedules no more', async () => {
    const { logger } = capture();
    let release!: () => void;
    let finished = false;
    const jobs = startBackgroundJobs(logger, [
      [
        'slow',
        10,
        () =>
          new Promise<void>((resolve) => {
            release = () => {
              finished = true;
              resolve();
            };
          }),
      ],
    ]);
    await until(() => release !== undefined);
    const stopped = jobs.stop();
    setTimeout(() => release(), 50);
    await stopped;
    expect(finished).toBe(true);
  });
});
