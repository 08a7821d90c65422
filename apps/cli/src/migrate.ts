import { applyMigrations, createDatabase, describeStartupError, pendingMigrations, type ServiceMigrations } from '@coffer/runtime';
import type { z } from 'zod';
import { authMigrations } from '../../auth/src/auth.migrations';
import { configMigrations } from '../../config/src/config.migrations';
import { secretsMigrations } from '../../secrets/src/secrets.migrations';
import { syncMigrations } from '../../sync-worker/src/sync.migrations';
import { serviceSettingsSchemas } from './config-reference';
import type { StackService } from './stack';

/** One service's migrations, and the settings that name its database and schema. */
export interface ServiceMigrationSet {
  service: StackService;
  migrations: ServiceMigrations;
  /** The service's schema setting (`AUTH_DB_SCHEMA`, …), read with the service's own default. */
  schemaSetting: string;
  /** A database URL for this service alone (its own role), used instead of DATABASE_URL when set. */
  urlSetting: string;
}

/** Every service's migrations, in the order `coffer migrate` applies them. */
export const serviceMigrationSets: readonly ServiceMigrationSet[] = [
  { service: 'auth', migrations: authMigrations, schemaSetting: 'AUTH_DB_SCHEMA', urlSetting: 'AUTH_DATABASE_URL' },
  { service: 'secrets', migrations: secretsMigrations, schemaSetting: 'SECRETS_DB_SCHEMA', urlSetting: 'SECRETS_DATABASE_URL' },
  { service: 'config', migrations: configMigrations, schemaSetting: 'CONFIG_DB_SCHEMA', urlSetting: 'CONFIG_DATABASE_URL' },
  { service: 'sync-worker', migrations: syncMigrations, schemaSetting: 'SYNC_WORKER_DB_SCHEMA', urlSetting: 'SYNC_WORKER_DATABASE_URL' },
];

/** Where one service's migrations go: its database URL and schema, from the environment. */
export interface MigrationTarget {
  set: ServiceMigrationSet;
  url: string;
  schema: string;
}

/** Thrown for settings `coffer migrate` cannot use; names the setting, never its value. */
export class MigrateSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrateSettingsError';
  }
}

/** The targets the environment names: each service's URL (`<SERVICE>_DATABASE_URL`, else DATABASE_URL) and schema. */
export function migrationTargets(env: NodeJS.ProcessEnv, only?: readonly StackService[]): MigrationTarget[] {
  const problems: string[] = [];
  const targets: MigrationTarget[] = [];
  for (const set of serviceMigrationSets) {
    if (only && !only.includes(set.service)) continue;
    const url = env[set.urlSetting] || env.DATABASE_URL;
    if (!url) problems.push(`DATABASE_URL (or ${set.urlSetting}): required, a postgres:// URL`);
    // The service's own schema setting, with its default and its check.
    const shape = serviceSettingsSchemas[set.service].shape as Record<string, z.ZodType>;
    const schema = shape[set.schemaSetting]!.safeParse(env[set.schemaSetting]);
    if (!schema.success) problems.push(`${set.schemaSetting}: must be a lowercase SQL identifier`);
    if (url && schema.success) targets.push({ set, url, schema: String(schema.data) });
  }
  if (problems.length > 0) throw new MigrateSettingsError(`cannot migrate:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  return targets;
}

/** What one service's run did: the migrations applied (or, with check, pending), or why it failed. */
export interface MigrationOutcome {
  service: StackService;
  schema: string;
  applied: string[];
  pending: string[];
  error?: string;
}

/**
 * Applies (or, with `check`, lists) every target's pending migrations, one service after another;
 * a failed service does not stop the others, and its migration run leaves nothing behind.
 */
export async function runMigrations(targets: readonly MigrationTarget[], options: { check?: boolean } = {}): Promise<MigrationOutcome[]> {
  const outcomes: MigrationOutcome[] = [];
  for (const { set, url, schema } of targets) {
    const db = createDatabase<unknown>(url, { max: 2, connectionTimeoutMs: 10_000 });
    try {
      if (options.check) outcomes.push({ service: set.service, schema, applied: [], pending: await pendingMigrations(db, schema, set.migrations) });
      else outcomes.push({ service: set.service, schema, applied: await applyMigrations(db, schema, set.migrations), pending: [] });
    } catch (err) {
      outcomes.push({ service: set.service, schema, applied: [], pending: [], error: describeStartupError(err) });
    } finally {
      await db.destroy();
    }
  }
  return outcomes;
}

export const migrateUsage = `migrate [--check] [--service <name>]...
          apply every service's pending database migrations (auth, secrets, config, sync-worker), each
          in its own schema (<SERVICE>_DB_SCHEMA) of DATABASE_URL, or of <SERVICE>_DATABASE_URL when
          set; concurrent runs take turns on an advisory lock. --check applies nothing and exits 1
          when a migration is pending. Services started with COFFER_MIGRATIONS=check need this first.`;

/** `coffer migrate`: resolves the exit code (0 done or current, 1 failed or pending, 2 usage or settings). */
export async function migrateCommand(args: readonly string[], env: NodeJS.ProcessEnv, print: (line: string) => void): Promise<number> {
  let check = false;
  const only: StackService[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--check') check = true;
    else if (arg === '--service' && serviceMigrationSets.some((s) => s.service === args[i + 1])) only.push(args[++i] as StackService);
    else {
      print(`${arg === '--service' ? `--service takes one of: ${serviceMigrationSets.map((s) => s.service).join(', ')}` : `unknown argument ${arg}`}\nusage: coffer ${migrateUsage}`);
      return 2;
    }
  }
  let targets: MigrationTarget[];
  try {
    targets = migrationTargets(env, only.length ? only : undefined);
  } catch (err) {
    if (!(err instanceof MigrateSettingsError)) throw err;
    print(err.message);
    return 2;
  }
  const outcomes = await runMigrations(targets, { check });
  for (const o of outcomes) {
    const where = `${o.service} (schema ${o.schema})`;
    if (o.error) print(`${where}: failed: ${o.error}`);
    else if (check) print(`${where}: ${o.pending.length ? `pending: ${o.pending.join(', ')}` : 'current'}`);
    else print(`${where}: ${o.applied.length ? `applied ${o.applied.join(', ')}` : 'current'}`);
  }
  return outcomes.some((o) => o.error || o.pending.length > 0) ? 1 : 0;
}
