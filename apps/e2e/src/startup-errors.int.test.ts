import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Runs one service's main.ts as an operator would, with only the given environment; resolves its exit code and output. */
function runService(service: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'apps', service, 'src/main.ts')], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const stackFrame = /^\s+at /m;

describe('start-up errors: every bad setting in one pass, a clear first line, no stack trace', () => {
  const required: Record<string, string[]> = {
    auth: ['DATABASE_URL', 'AUTH_SIGNING_KEY', 'AUTH_SERVICE_IDENTITIES'],
    secrets: ['DATABASE_URL', 'SECRETS_KMS_PROVIDER'],
    config: ['DATABASE_URL', 'CONFIG_CLIENT_SECRET'],
    'sync-worker': ['DATABASE_URL', 'SYNC_WORKER_CLIENT_SECRET'],
  };

  for (const [service, settings] of Object.entries(required)) {
    it(`${service}: with no settings at all, names every required one and the half-set TLS files at once`, async () => {
      const { code, stdout, stderr } = await runService(service, { COFFER_TLS_CA_FILE: '/nowhere/ca.pem', LOG_LEVEL: 'loud' });
      expect(code).toBe(1);
      const lines = stderr.trim().split('\n');
      expect(lines[0]).toMatch(new RegExp(`^invalid ${service === 'sync-worker' ? 'sync worker' : `${service} service`} configuration \\(\\d+ settings to fix\\):$`));
      for (const setting of [...settings, 'LOG_LEVEL', 'COFFER_TLS_CERT_FILE', 'COFFER_TLS_KEY_FILE']) {
        expect(lines.filter((l) => l.startsWith(`  ${setting}: `)), `${service} ${setting}`).toHaveLength(1);
      }
      expect(stderr + stdout).not.toMatch(stackFrame);
      expect(stderr).not.toContain('/nowhere/ca.pem');
    });
  }

  it('secrets: the chosen KMS provider’s settings come in the same pass as the rest (no second round)', async () => {
    const { code, stderr } = await runService('secrets', { SECRETS_KMS_PROVIDER: 'pkcs11', SECRETS_PKCS11_PIN: 'pin-never-printed' });
    expect(code).toBe(1);
    for (const setting of ['DATABASE_URL', 'SECRETS_PKCS11_LIBRARY', 'SECRETS_PKCS11_TOKEN_LABEL']) expect(stderr).toContain(`  ${setting}: `);
    expect(stderr).not.toContain('SECRETS_PKCS11_PIN:');
    expect(stderr).not.toContain('pin-never-printed');
    expect(stderr).not.toMatch(stackFrame);
  });

  describe('a failure after the settings were read', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'coffer-startup-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('secrets with a keyring file that does not exist: one fatal line that opens with the reason', async () => {
      const { code, stdout, stderr } = await runService('secrets', {
        COFFER_ENV: 'development',
        DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/unused',
        SECRETS_LOCAL_KEYRING_FILE: join(dir, 'missing-keyring.json'),
      });
      expect(code).toBe(1);
      const fatal = stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { level: number; msg: string; event?: string })
        .filter((l) => l.level === 60);
      expect(fatal).toHaveLength(1);
      expect(fatal[0]).toMatchObject({ event: 'startup_failed', msg: expect.stringMatching(/^start-up failed: ENOENT: no such file or directory/) });
      expect(stdout + stderr).not.toMatch(stackFrame);
      expect(stdout).not.toContain('"stack"');
    });
  });
});
