import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { commonEnv, parseEnv } from './env';

const schema = z.object({ ...commonEnv, APP_SECRET: z.string().min(1, 'required') });

describe('parseEnv', () => {
  it('lists every bad variable at once and never a value', () => {
    let message = '';
    try {
      parseEnv(schema, { DATABASE_URL: 'not a url with hunter2', LOG_LEVEL: 'loud' }, 'test');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('DATABASE_URL');
    expect(message).toContain('LOG_LEVEL');
    expect(message).toContain('APP_SECRET');
    expect(message).not.toContain('hunter2');
  });

  it('fills defaults', () => {
    const cfg = parseEnv(schema, { DATABASE_URL: 'postgres://127.0.0.1/x', APP_SECRET: 's' }, 'test');
    expect(cfg.NATS_URL).toBe('nats://127.0.0.1:4222');
    expect(cfg.COFFER_SUBJECT_ROOT).toBe('coffer');
  });
});
