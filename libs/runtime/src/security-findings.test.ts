import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createLogger } from '@coffer/telemetry';
import { commonEnv, parseEnv } from './env';
import { logSecurityFindings, securityFindings } from './security-findings';

const schema = z.object(commonEnv);
const base = { DATABASE_URL: 'postgres://127.0.0.1/x' };

describe('securityFindings', () => {
  it('reports nothing for the defaults: revocations fail closed', () => {
    const config = parseEnv(schema, base, 'test');
    expect(config.COFFER_REVOCATION_FAIL_OPEN).toBe(false);
    expect(securityFindings(config)).toEqual([]);
  });

  it('flags COFFER_REVOCATION_FAIL_OPEN=true, and logs it once at level warn', () => {
    const config = parseEnv(schema, { ...base, COFFER_REVOCATION_FAIL_OPEN: 'true' }, 'test');
    expect(securityFindings(config)).toEqual([expect.objectContaining({ id: 'revocation-fail-open', setting: 'COFFER_REVOCATION_FAIL_OPEN' })]);
    const lines: { level: number; finding?: string }[] = [];
    const logger = createLogger({ service: 'test', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
    logSecurityFindings(logger, config);
    expect(lines).toEqual([expect.objectContaining({ level: 40, finding: 'revocation-fail-open' })]);
  });

  it('takes only true or false for the setting, naming the variable', () => {
    expect(() => parseEnv(schema, { ...base, COFFER_REVOCATION_FAIL_OPEN: 'yes' }, 'test')).toThrow(/COFFER_REVOCATION_FAIL_OPEN/);
  });
});
