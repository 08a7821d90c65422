import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDevCredentials, stackServices, startStack, writeServiceEnvFiles, type Stack } from '@coffer/cli';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Runs a command to its end; resolves its exit code and output instead of throwing on a non-zero exit. */
async function exec(file: string, args: string[], env: NodeJS.ProcessEnv = { PATH: process.env.PATH }): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd: root, env, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

interface Finding {
  check: string;
  severity: 'pass' | 'warn' | 'fail' | 'skip';
  service?: string;
  setting?: string;
  message: string;
}

/**
 * `coffer doctor` as an operator runs it against a running stack: a real process reading each
 * service's environment (the one the stack started it with, written to env files) and the database.
 */
async function doctor(stack: Stack, dir: string, extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = ['--import', 'tsx', 'apps/cli/src/main.ts', 'doctor', ...extra];
  await writeServiceEnvFiles(dir, Object.fromEntries(stackServices.map((service) => [service, stack.services[service].env])));
  for (const service of stackServices) args.push('--env', `${service}=${join(dir, `${service}.env`)}`);
  return exec(process.execPath, args);
}

describe('the development stack, as an operator’s tools see it', () => {
  let db: TestDatabase;
  let stack: Stack;
  let dir: string;
  const ns = uniqueNamespace();

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e_operator');
    dir = await mkdtemp(join(tmpdir(), 'coffer-doctor-'));
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns });
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  it('answers buf curl --list-methods and Health/Check through reflection on every service', async () => {
    const buf = join(root, 'node_modules/.bin/buf');
    const own: Record<string, string> = {
      auth: 'coffer.auth.v1.AuthService',
      secrets: 'coffer.secrets.v1.SecretsService',
      config: 'coffer.config.v1.ConfigService',
      'sync-worker': 'coffer.sync.v1.SyncService',
    };
    for (const service of stackServices) {
      const url = `http://${stack.services[service].address}`;
      const listed = await exec(buf, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--list-methods', url]);
      expect(listed.code, `${service}: ${listed.stderr}`).toBe(0);
      expect(listed.stdout).toContain('grpc.health.v1.Health/Check');
      expect(listed.stdout).toContain(`${own[service]}/`);
      const health = await exec(buf, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '-d', JSON.stringify({ service: own[service] }), `${url}/grpc.health.v1.Health/Check`]);
      expect(JSON.parse(health.stdout), `${service}: ${health.stderr}`).toEqual({ status: 'SERVING' });
    }
  });

  it('coffer doctor reports the local KMS provider as a warning and passes every other check', async () => {
    const res = await doctor(stack, dir, ['--json']);
    expect(res.code, res.stderr).toBe(0);
    const report = JSON.parse(res.stdout) as { ok: boolean; development: boolean; services: string[]; findings: Finding[] };
    expect(report).toMatchObject({ ok: true, development: true, services: [...stackServices] });
    expect(report.findings.filter((f) => f.severity !== 'pass')).toEqual([expect.objectContaining({ check: 'local-kms', severity: 'warn', service: 'secrets', setting: 'SECRETS_KMS_PROVIDER' })]);
    const passed = new Set(report.findings.filter((f) => f.severity === 'pass').map((f) => f.check));
    expect(passed).toEqual(new Set(['listen-without-mtls', 'weak-service-secret', 'token-lifetimes', 'revocation-fail-open', 'connector-egress', 'events-immutable', 'audit-chain', 'signing-key-rotation', 'kek-rotation']));
    // The database checks ran for each service's own schema.
    expect(report.findings.filter((f) => f.check === 'events-immutable').map((f) => f.service).sort()).toEqual([...stackServices].sort());
    expect(report.findings.filter((f) => f.check === 'audit-chain').map((f) => f.service).sort()).toEqual([...stackServices].sort());

    const human = await doctor(stack, dir);
    console.log(human.stdout);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^coffer doctor \(auth, secrets, config, sync-worker, COFFER_ENV=development\): 0 failures, 1 warning, \d+ passed, 0 skipped$/m);
    expect(human.stdout).toMatch(/^WARN {2}local-kms +secrets: /m);
    expect(human.stdout).toMatch(/fix: outside development set SECRETS_KMS_PROVIDER/);
    for (const secret of Object.values(stack.credentials.clients).map((c) => c.clientSecret)) expect(human.stdout + res.stdout).not.toContain(secret);
  });
});

describe('a stack started with a weak service secret', () => {
  let db: TestDatabase;
  let stack: Stack;
  let dir: string;
  const ns = uniqueNamespace();
  const weak = 'changeme-changeme-1';

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e_weak');
    dir = await mkdtemp(join(tmpdir(), 'coffer-doctor-weak-'));
    // config's identity secret is weak on both sides (auth's identities and config's own setting), so the stack still starts.
    const credentials = await generateDevCredentials();
    credentials.clients.config.clientSecret = weak;
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns, credentials });
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  it('coffer doctor fails, names the weak secret where it is set, and never prints it', async () => {
    const res = await doctor(stack, dir);
    expect(res.code, res.stdout + res.stderr).toBe(1);
    expect(res.stdout).toMatch(/^coffer doctor \(.*\): 2 failures, 1 warning/m);
    expect(res.stdout).toMatch(/^FAIL {2}weak-service-secret +config: CONFIG_CLIENT_SECRET of config is weak: shorter than 24 characters/m);
    expect(res.stdout).toMatch(/^FAIL {2}weak-service-secret +auth: the secret of service identity config \(config\) is weak/m);
    expect(res.stdout).toMatch(/fix: generate a random secret/);
    expect(res.stdout).not.toContain(weak);
  });
});
