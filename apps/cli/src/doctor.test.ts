import { describe, expect, it } from 'vitest';
import { doctorCommand, formatReport, parseEnvFile, type DoctorReport } from './doctor';

describe('coffer doctor: arguments, env files and the report', () => {
  it('reads env files as compose and shells write them', () => {
    expect(parseEnvFile('# comment\nA=1\nexport B="two words"\nC=\'x=y\'\nJSON=[{"a":"b"}]\n\nnot a line\n')).toEqual({ A: '1', B: 'two words', C: 'x=y', JSON: '[{"a":"b"}]' });
  });

  it('exits 2, saying why, when it can read no service’s settings or is called wrongly', async () => {
    const out: string[] = [];
    expect(await doctorCommand([], { PATH: '/usr/bin' }, (t) => out.push(t), '/nonexistent/stack-env')).toBe(2);
    expect(out.join('\n')).toMatch(/could not read the settings of any service/);
    expect(out.join('\n')).toMatch(/SKIP +settings +auth: auth's settings are not in this environment \(DATABASE_URL, AUTH_SIGNING_KEY, AUTH_SERVICE_IDENTITIES\)/);
    expect(await doctorCommand(['--env', 'vault=x.env'], {}, (t) => out.push(t))).toBe(2);
    expect(await doctorCommand(['--env', 'auth=/nonexistent/auth.env'], {}, (t) => out.push(t))).toBe(2);
    expect(out.at(-1)).toBe('cannot read /nonexistent/auth.env: ENOENT');
    expect(await doctorCommand(['--fix'], {}, (t) => out.push(t))).toBe(2);
  });

  it('puts failures first, each with its fix, and counts every severity', () => {
    const report: DoctorReport = {
      ok: false,
      development: false,
      services: ['secrets'],
      findings: [
        { check: 'audit-chain', severity: 'pass', service: 'secrets', message: 'secrets.events: 3 events, chain intact' },
        { check: 'local-kms', severity: 'fail', service: 'secrets', setting: 'SECRETS_KMS_PROVIDER', message: 'secrets uses the local KMS provider', fix: 'use an HSM' },
      ],
    };
    expect(formatReport(report).split('\n')).toEqual([
      'coffer doctor (secrets): 1 failure, 0 warnings, 1 passed, 0 skipped',
      'FAIL  local-kms    secrets: secrets uses the local KMS provider',
      '                   fix: use an HSM',
      'PASS  audit-chain  secrets: secrets.events: 3 events, chain intact',
    ]);
  });
});
