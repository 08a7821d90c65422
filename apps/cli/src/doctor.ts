import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { EventStoreDatabase } from '@coffer/event-store';
import { createDatabase, describeStartupError } from '@coffer/runtime';
import type { z } from 'zod';
import { serviceSettingsSchemas } from './config-reference';
import { auditChain, eventsImmutability, kekAge, signingKeyAge } from './doctor-database';
import { cofferHome } from './home';
import { isDevelopment, settingsFindings, type DoctorFinding, type ServiceSettings } from './doctor-settings';
import { stackServices, type StackService } from './stack';

/** What `coffer doctor` looks at: each service's environment, as that service runs with it. */
export interface DoctorOptions {
  envs: Partial<Record<StackService, NodeJS.ProcessEnv>>;
  /** Services whose environment was named explicitly (`--env`): unreadable settings fail instead of being skipped. */
  explicit?: ReadonlySet<StackService>;
  now?: Date;
}

/** The outcome: every finding, and whether none failed. */
export interface DoctorReport {
  ok: boolean;
  development: boolean;
  /** The services whose settings were read and checked. */
  services: StackService[];
  findings: DoctorFinding[];
}

const dbSchemaSetting: Record<StackService, string> = {
  auth: 'AUTH_DB_SCHEMA',
  secrets: 'SECRETS_DB_SCHEMA',
  config: 'CONFIG_DB_SCHEMA',
  'sync-worker': 'SYNC_WORKER_DB_SCHEMA',
};

function readSettings(options: DoctorOptions): { settings: ServiceSettings; findings: DoctorFinding[] } {
  const settings: Record<string, unknown> = {};
  const findings: DoctorFinding[] = [];
  for (const service of stackServices) {
    const env = options.envs[service];
    if (!env) continue;
    const parsed = (serviceSettingsSchemas[service] as z.ZodType).safeParse(env);
    if (parsed.success) {
      const value = parsed.data as Record<string, unknown>;
      // As loadSecretsConfig resolves it: development defaults the provider to local.
      settings[service] = service === 'secrets' ? { ...value, SECRETS_KMS_PROVIDER: value.SECRETS_KMS_PROVIDER ?? 'local' } : value;
      continue;
    }
    const bad = [...new Set(parsed.error.issues.map((i) => i.path.join('.')))].join(', ');
    const explicit = options.explicit?.has(service) ?? false;
    findings.push({
      check: 'settings',
      severity: explicit ? 'fail' : 'skip',
      service,
      message: explicit
        ? `${service}'s settings do not parse (${bad}): the service would refuse to start`
        : `${service}'s settings are not in this environment (${bad}); its checks were skipped`,
      fix: explicit ? 'fix the settings named (README.md, configuration reference)' : `run with --env ${service}=<file of its environment>`,
    });
  }
  return { settings: settings as ServiceSettings, findings };
}

async function databaseFindings(settings: ServiceSettings, now: Date): Promise<DoctorFinding[]> {
  const byUrl = new Map<string, StackService[]>();
  for (const service of stackServices) {
    const s = settings[service];
    if (s) byUrl.set(s.DATABASE_URL, [...(byUrl.get(s.DATABASE_URL) ?? []), service]);
  }
  const findings: DoctorFinding[] = [];
  for (const [url, services] of byUrl) {
    const db = createDatabase<EventStoreDatabase>(url, { max: 2, connectionTimeoutMs: 5_000 });
    try {
      for (const service of services) {
        const s = settings[service]! as unknown as Record<string, unknown>;
        const log = { service, schema: String(s[dbSchemaSetting[service]]) };
        const immutability = await eventsImmutability(db, log);
        findings.push(immutability);
        // No events table: the service never ran against this database, so there is no chain either.
        findings.push(immutability.severity === 'skip' ? { ...immutability, check: 'audit-chain' } : await auditChain(db, log));
        if (service === 'auth') findings.push(await signingKeyAge(db, log.schema, settings.auth!.AUTH_SIGNING_KEY_ROTATION_SECONDS, now));
        if (service === 'secrets') findings.push(await kekAge(db, log.schema, settings.secrets!.SECRETS_KEK_ROTATION_DAYS, settings.secrets!.SECRETS_KEK_ROTATION_CHECK_SECONDS, now));
      }
    } catch (err) {
      findings.push({
        check: 'database',
        severity: 'fail',
        service: services[0],
        setting: 'DATABASE_URL',
        message: `cannot check the database of ${services.join(', ')} (their DATABASE_URL): ${describeStartupError(err)}`,
        fix: 'run the doctor where that database answers, with the DATABASE_URL the services use',
      });
    } finally {
      await db.destroy();
    }
  }
  return findings;
}

/** Runs every check against the services' settings and their database; never prints or returns a secret value. */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const { settings, findings } = readSettings(options);
  const all = [...findings, ...settingsFindings(settings), ...(await databaseFindings(settings, options.now ?? new Date()))];
  const services = stackServices.filter((s) => settings[s] !== undefined);
  return { ok: !all.some((f) => f.severity === 'fail'), development: isDevelopment(settings), services, findings: all };
}

/** The report as an operator reads it: one line per finding, its fix below. */
export function formatReport(report: DoctorReport): string {
  const count = (s: DoctorFinding['severity']) => report.findings.filter((f) => f.severity === s).length;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const width = Math.max(...report.findings.map((f) => f.check.length));
  const lines = [
    `coffer doctor (${report.services.join(', ') || 'no service'}${report.development ? ', COFFER_ENV=development' : ''}): ${plural(count('fail'), 'failure')}, ${plural(count('warn'), 'warning')}, ${count('pass')} passed, ${count('skip')} skipped`,
  ];
  const order: Record<DoctorFinding['severity'], number> = { fail: 0, warn: 1, skip: 2, pass: 3 };
  for (const f of [...report.findings].sort((a, b) => order[a.severity] - order[b.severity])) {
    lines.push(`${f.severity.toUpperCase().padEnd(4)}  ${f.check.padEnd(width)}  ${f.service ? `${f.service}: ` : ''}${f.message}`);
    if (f.fix && f.severity !== 'pass') lines.push(`${' '.repeat(width + 8)}fix: ${f.fix}`);
  }
  return lines.join('\n');
}

/** KEY=VALUE lines (a `.env` file or a compose env_file): `#` comments, optional `export `, optional quotes. */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim().replace(/^export\s+/, '');
    if (!line || line.startsWith('#') || !line.includes('=')) continue;
    const key = line.slice(0, line.indexOf('=')).trim();
    let value = line.slice(line.indexOf('=') + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0]) value = value.slice(1, -1);
    env[key] = value;
  }
  return env;
}

export const doctorUsage = `doctor [--env <service>=<file>]... [--json]
          the security self-check: services listening beyond the loopback without mutual TLS, weak or
          default service secrets, the local KMS outside development, token lifetimes above the
          defaults, revocations failing open, events tables that are not immutable, broken audit
          chains, signing key or KEK overdue for rotation, connector egress open to private ranges.
          Reads each service's settings from --env files (KEY=VALUE lines over this environment),
          else from COFFER_HOME/stack-env/ while \`coffer stack\` runs, else from this environment, and
          each service's database. Exits 1 on a failure, 2 when it could read no service's settings.`;

/** The directory in COFFER_HOME where `coffer stack` leaves each running service's environment, for `coffer doctor` without --env. */
export const STACK_ENV_DIR_NAME = 'stack-env';

/** Writes each service's environment to `<dir>/<service>.env` (mode 0600, the directory 0700); `remove` deletes them again. */
export async function writeServiceEnvFiles(dir: string, envs: Partial<Record<StackService, Record<string, string>>>): Promise<{ remove(): Promise<void> }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [service, env] of Object.entries(envs)) {
    await writeFile(join(dir, `${service}.env`), `${Object.entries(env ?? {}).map(([k, v]) => `${k}=${v}`).join('\n')}\n`, { mode: 0o600 });
  }
  return { remove: () => rm(dir, { recursive: true, force: true }) };
}

/** `coffer doctor`: parses the arguments, runs the checks, prints the report; resolves the exit code. */
export async function doctorCommand(
  args: string[],
  env: NodeJS.ProcessEnv,
  print: (text: string) => void,
  stackEnvDir: string = join(cofferHome(env.COFFER_HOME, process.cwd()).dir, STACK_ENV_DIR_NAME),
): Promise<number> {
  const envs: Partial<Record<StackService, NodeJS.ProcessEnv>> = {};
  const explicit = new Set<StackService>();
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--json') json = true;
    else if (arg === '--env' || arg.startsWith('--env=')) {
      const value = arg === '--env' ? args[++i] : arg.slice('--env='.length);
      const m = /^([a-z-]+)=(.+)$/.exec(value ?? '');
      const service = m?.[1] as StackService | undefined;
      if (!m || !service || !stackServices.includes(service)) {
        print(`--env takes <service>=<file>, the service one of ${stackServices.join(', ')}`);
        return 2;
      }
      const text = await readFile(m[2]!, 'utf8').catch((err: NodeJS.ErrnoException) => {
        print(`cannot read ${m[2]}: ${err.code ?? err.message}`);
        return undefined;
      });
      if (text === undefined) return 2;
      envs[service] = { ...env, ...parseEnvFile(text) };
      explicit.add(service);
    } else {
      print(`unknown argument ${arg}\nusage: coffer ${doctorUsage}`);
      return 2;
    }
  }
  if (explicit.size === 0) {
    // A running `coffer stack` left its services' environments; otherwise this environment holds every
    // service's settings (one .env for all).
    for (const service of stackServices) {
      const text = await readFile(join(stackEnvDir, `${service}.env`), 'utf8').catch(() => undefined);
      envs[service] = text === undefined ? env : { ...env, ...parseEnvFile(text) };
      if (text !== undefined) explicit.add(service);
    }
    if (explicit.size > 0) print(`reading the settings of ${[...explicit].join(', ')} from ${stackEnvDir} (left by coffer stack)`);
  }
  const report = await runDoctor({ envs, explicit });
  if (report.services.length === 0) {
    print(json ? JSON.stringify(report, null, 2) : `${formatReport(report)}\n\ncoffer doctor could not read the settings of any service: run it with their environment, or with --env <service>=<file>.`);
    return 2;
  }
  print(json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.ok ? 0 : 1;
}
