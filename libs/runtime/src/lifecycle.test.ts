import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '@coffer/telemetry';
import { describeStartupError, failStartup, loadSettingsOrExit, startBackgroundJobs } from './lifecycle';

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

function captureAt(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ service: 'test', level, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { logger, lines };
}

describe('start-up errors open with a clear message, not a stack trace', () => {
  it('says why, even for an error without a message (a connection refused on every address)', () => {
    const refused = Object.assign(new AggregateError([Object.assign(new Error('connect ECONNREFUSED ::1:5432'), { code: 'ECONNREFUSED' }), new Error('connect ECONNREFUSED 127.0.0.1:5432')], ''), { code: 'ECONNREFUSED' });
    expect(describeStartupError(refused)).toBe('connect ECONNREFUSED ::1:5432');
    expect(describeStartupError(Object.assign(new Error(''), { code: 'ETIMEDOUT' }))).toBe('ETIMEDOUT');
    expect(describeStartupError(Object.assign(new Error('no such file'), { code: 'ENOENT' }))).toBe('no such file (ENOENT)');
    expect(describeStartupError('plain')).toBe('plain');
  });

  it('logs one fatal line that opens with the reason and holds no stack, then exits 1', () => {
    const { logger, lines } = captureAt('info');
    const exit = vi.fn();
    expect(() => failStartup(logger, Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }), exit)).toThrow();
    expect(exit).toHaveBeenCalledWith(1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 60, event: 'startup_failed', code: 'ECONNREFUSED', msg: 'start-up failed: connect ECONNREFUSED 127.0.0.1:5432' });
    expect(JSON.stringify(lines[0])).not.toMatch(/\n\s+at |"stack"/);
  });

  it('prints bad settings as they are, one per line, and exits 1', () => {
    const exit = vi.fn();
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(() =>
        loadSettingsOrExit(() => {
          throw new Error('invalid test configuration (1 setting to fix):\n  DATABASE_URL: required');
        }, exit),
      ).toThrow();
      expect(write).toHaveBeenCalledWith('invalid test configuration (1 setting to fix):\n  DATABASE_URL: required\n');
      expect(exit).toHaveBeenCalledWith(1);
    } finally {
      write.mockRestore();
    }
    expect(loadSettingsOrExit(() => 42, exit)).toBe(42);
  });
});
