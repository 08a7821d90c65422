import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '@coffer/telemetry';
import { describeStartupError, failStartup, loadSettingsOrExit } from './lifecycle';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ service: 'test', level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
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
    const { logger, lines } = capture();
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
