import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { checkCommonSettings, commonEnv, inTheSamePass, parseEnv, SettingsError } from './env';

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
    expect(cfg.COFFER_DB_PREPARED_STATEMENTS).toBe(true);
  });

  it('takes COFFER_DB_PREPARED_STATEMENTS as true or false, and names it when it is neither', () => {
    const base = { DATABASE_URL: 'postgres://127.0.0.1/x', APP_SECRET: 's' };
    expect(parseEnv(schema, { ...base, COFFER_DB_PREPARED_STATEMENTS: 'false' }, 'test').COFFER_DB_PREPARED_STATEMENTS).toBe(false);
    expect(() => parseEnv(schema, { ...base, COFFER_DB_PREPARED_STATEMENTS: 'no' }, 'test')).toThrow(/COFFER_DB_PREPARED_STATEMENTS.*must be true or false/);
  });
});

describe('cross-setting checks run in the same pass as every other setting', () => {
  const checked = z.object(commonEnv).superRefine(checkCommonSettings, inTheSamePass);

  it('names the missing TLS files next to an unrelated bad setting, in one error', () => {
    let err: unknown;
    try {
      parseEnv(checked, { COFFER_TLS_CERT_FILE: '/tls/cert.pem', LOG_LEVEL: 'loud' }, 'test');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SettingsError);
    const problems = (err as SettingsError).problems.map((p) => p.setting);
    expect(problems).toEqual(expect.arrayContaining(['DATABASE_URL', 'LOG_LEVEL', 'COFFER_TLS_CA_FILE', 'COFFER_TLS_KEY_FILE']));
    expect(problems).not.toContain('COFFER_TLS_CERT_FILE');
    expect((err as Error).message).toMatch(/^invalid test configuration \(4 settings to fix\):\n/);
    expect((err as Error).message).not.toContain('/tls/cert.pem');
  });

  it('takes all three TLS files or none', () => {
    expect(parseEnv(checked, { DATABASE_URL: 'postgres://127.0.0.1/x' }, 'test').COFFER_TLS_CA_FILE).toBeUndefined();
    const all = { DATABASE_URL: 'postgres://127.0.0.1/x', COFFER_TLS_CA_FILE: 'a', COFFER_TLS_CERT_FILE: 'b', COFFER_TLS_KEY_FILE: 'c' };
    expect(parseEnv(checked, all, 'test').COFFER_TLS_KEY_FILE).toBe('c');
  });

  it('knows development only when COFFER_ENV says so', () => {
    expect(parseEnv(checked, { DATABASE_URL: 'postgres://127.0.0.1/x' }, 'test').COFFER_ENV).toBe('production');
    expect(parseEnv(checked, { DATABASE_URL: 'postgres://127.0.0.1/x', COFFER_ENV: 'development' }, 'test').COFFER_ENV).toBe('development');
    expect(() => parseEnv(checked, { DATABASE_URL: 'postgres://127.0.0.1/x', COFFER_ENV: 'dev' }, 'test')).toThrow(/COFFER_ENV: must be development or production/);
  });

  it('describes every shared setting, for the configuration reference', () => {
    for (const [name, schema] of Object.entries(commonEnv)) expect(schema.description, name).toBeTruthy();
  });
});
