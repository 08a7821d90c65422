import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, assertMigrationsCurrent, createDatabase, MIGRATION_LOCK_TABLE, MIGRATION_TABLE, pendingMigrations, PendingMigrationsError, startRuntime } from '@coffer/runtime';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createLogger, createRedactor } from '@coffer/telemetry';
import { migrateCommand, migrationTargets, runMigrations, serviceMigrationSets } from './migrate';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'schema-before-migrations.sql');
/** The schemas the fixture holds: each service's default (`<SERVICE>_DB_SCHEMA` unset). */
const schemas = ['auth', 'secrets', 'config', 'sync'];
const migrationTables = [MIGRATION_TABLE, MIGRATION_LOCK_TABLE];

/** Makes in `url` the schemas the release before numbered migrations made at start-up (pg_dump of them). */
async function loadPreviousRelease(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(await readFile(fixture, 'utf8'));
  } finally {
    await client.end();
  }
}

/**
 * What the schemas hold, as the catalog describes it: columns (type, nullability, default, identity),
 * indexes, constraints, triggers and functions; the migrations' own record tables left out.
 */
async function shapeOf(db: Kysely<unknown>): Promise<Record<string, string[]>> {
  const rows = async (query: ReturnType<typeof sql<{ line: string }>>) => (await query.execute(db)).rows.map((r) => r.line).sort();
  return {
    tables: await rows(sql<{ line: string }>`
      select table_schema || '.' || table_name || ' ' || table_type as line from information_schema.tables
      where table_schema = any(${schemas}) and not (table_name = any(${migrationTables}))`),
    columns: await rows(sql<{ line: string }>`
      select concat_ws(' ', table_schema || '.' || table_name || '.' || column_name, udt_name, is_nullable, column_default, is_identity, identity_generation, is_generated) as line
      from information_schema.columns where table_schema = any(${schemas}) and not (table_name = any(${migrationTables}))`),
    indexes: await rows(sql<{ line: string }>`
      select schemaname || ' ' || indexdef as line from pg_indexes
      where schemaname = any(${schemas}) and not (tablename = any(${migrationTables}))`),
    constraints: await rows(sql<{ line: string }>`
      select n.nspname || '.' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid) as line
      from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any(${schemas}) and not (c.relname = any(${migrationTables}))`),
    triggers: await rows(sql<{ line: string }>`
      select pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text as line
      from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any(${schemas}) and not t.tgisinternal`),
    functions: await rows(sql<{ line: string }>`
      select n.nspname || '.' || p.proname || ' ' || md5(p.prosrc) as line
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = any(${schemas})`),
  };
}

/** Each schema's applied migrations, from the migrations' record table. */
async function recorded(db: Kysely<unknown>): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const schema of schemas) {
    const { rows } = await sql<{ name: string }>`select name from ${sql.id(schema, MIGRATION_TABLE)} order by name`.execute(db);
    out[schema] = rows.map((r) => r.name);
  }
  return out;
}

const schemaOf: Record<string, string> = { auth: 'auth', secrets: 'secrets', config: 'config', 'sync-worker': 'sync' };
/** Every migration of each service, in order, by schema. */
const allApplied = Object.fromEntries(serviceMigrationSets.map((set) => [schemaOf[set.service]!, Object.keys(set.migrations)]));
const namesOf = (service: string) => Object.keys(serviceMigrationSets.find((s) => s.service === service)!.migrations);

describe('versioned migrations (real Postgres): every service, from empty and from the previous release', () => {
  const dbs: Array<{ tdb: TestDatabase; db: Kysely<unknown> }> = [];
  let previous: Kysely<unknown>;

  async function database(prefix: string): Promise<{ url: string; db: Kysely<unknown> }> {
    const tdb = await createTestDatabase(prefix);
    const db = createDatabase<unknown>(tdb.url, { max: 3 });
    dbs.push({ tdb, db });
    return { url: tdb.url, db };
  }

  beforeAll(async () => {
    const made = await database('coffer_mig_prev');
    await loadPreviousRelease(made.url);
    previous = made.db;
  });

  afterAll(async () => {
    for (const { tdb, db } of dbs) {
      await db.destroy();
      await tdb.drop();
    }
  });

  it('knows every service and names its migrations in order, 0001 first', () => {
    expect(serviceMigrationSets.map((s) => s.service)).toEqual(['auth', 'secrets', 'config', 'sync-worker']);
    for (const set of serviceMigrationSets) expect(Object.keys(set.migrations)[0], set.service).toBe('0001_initial');
    expect(migrationTargets({ DATABASE_URL: 'postgres://x@h/d', CONFIG_DATABASE_URL: 'postgres://c@h/d', SYNC_WORKER_DB_SCHEMA: 'sync_b' }).map((t) => [t.set.service, t.url, t.schema])).toEqual([
      ['auth', 'postgres://x@h/d', 'auth'],
      ['secrets', 'postgres://x@h/d', 'secrets'],
      ['config', 'postgres://c@h/d', 'config'],
      ['sync-worker', 'postgres://x@h/d', 'sync_b'],
    ]);
    expect(() => migrationTargets({ AUTH_DB_SCHEMA: 'Not-An-Identifier' })).toThrow(/DATABASE_URL \(or AUTH_DATABASE_URL\): required[^]*AUTH_DB_SCHEMA: must be a lowercase SQL identifier/);
  });

  it('0001 alone, on an empty database, makes exactly the tables, columns, indexes, constraints and triggers the previous release made at start-up', async () => {
    const { db } = await database('coffer_mig_first');
    for (const set of serviceMigrationSets) {
      expect(await applyMigrations(db, schemaOf[set.service]!, { '0001_initial': set.migrations['0001_initial']! }), set.service).toEqual(['0001_initial']);
    }
    const made = await shapeOf(db);
    expect(made.tables.length).toBeGreaterThan(30);
    expect(made).toEqual(await shapeOf(previous));
  });

  it('every migration on an empty database makes the same schema as every migration on the previous release', async () => {
    const { url, db } = await database('coffer_mig_empty');
    const outcomes = await runMigrations(migrationTargets({ DATABASE_URL: url }));
    expect(outcomes.map((o) => [o.service, o.applied, o.error])).toEqual(serviceMigrationSets.map((s) => [s.service, namesOf(s.service), undefined]));
    const upgraded = await database('coffer_mig_upgraded');
    await loadPreviousRelease(upgraded.url);
    expect((await runMigrations(migrationTargets({ DATABASE_URL: upgraded.url }))).filter((o) => o.error)).toEqual([]);
    const made = await shapeOf(db);
    expect(made).toEqual(await shapeOf(upgraded.db));
    // Later migrations add to the first: the shape differs from the previous release's by what they add.
    expect(made.tables).toEqual(expect.arrayContaining((await shapeOf(previous)).tables));
    expect(await recorded(db)).toEqual(allApplied);
    expect(await recorded(upgraded.db)).toEqual(allApplied);
  });

  it('adopts a database the previous release made, with rows in it: the rows survive, nothing changes shape, and the record says current', async () => {
    const { url, db } = await database('coffer_mig_adopt');
    await loadPreviousRelease(url);
    await sql`insert into config.events (event_id, stream_id, stream_version, type, data, prev_hash, hash)
      values ('00000000-0000-4000-8000-000000000001', 'workspace-1', 1, 'WorkspaceCreated', '{"name":"w"}', 'genesis', 'h1')`.execute(db);
    await sql`insert into config.outbox (event_id, subject, headers, body) values ('00000000-0000-4000-8000-000000000001', 'coffer.config.workspace.created', '{}', '{}')`.execute(db);
    await sql`insert into config.workspaces (workspace_id, name, version, created_at, organization_id, external_user_id)
      values ('00000000-0000-4000-8000-0000000000aa', 'kept', 1, now(), 'org-1', 'user-1')`.execute(db);
    await sql`insert into auth.organizations (organization_id, name, created_at) values ('org-1', 'Org', now())`.execute(db);
    await sql`insert into secrets.kek_versions (kek_id, version, state, observed_at) values ('kek', 1, 'primary', now())`.execute(db);
    await sql`insert into sync.sync_jobs (job_id, connection_id, workspace_id, status, started_at) values (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'queued', now())`.execute(db);
    await sql`insert into sync.background_job_runs (job, started_at, finished_at, holder) values ('expiry sweep', now(), now(), 'old-replica')`.execute(db);
    const rowsBefore = await counts(db);

    // Before: every service has its first migration pending, and `coffer migrate --check` says so.
    for (const set of serviceMigrationSets) {
      const schema = migrationTargets({ DATABASE_URL: url }, [set.service])[0]!.schema;
      expect(await pendingMigrations(db, schema, set.migrations), set.service).toEqual(namesOf(set.service));
    }
    const checkLines: string[] = [];
    expect(await migrateCommand(['--check'], { DATABASE_URL: url }, (l) => checkLines.push(l))).toBe(1);
    expect(checkLines).toEqual(serviceMigrationSets.map((set) => `${set.service} (schema ${schemaOf[set.service]}): pending: ${namesOf(set.service).join(', ')}`));

    const lines: string[] = [];
    expect(await migrateCommand([], { DATABASE_URL: url }, (l) => lines.push(l))).toBe(0);
    expect(lines).toEqual(serviceMigrationSets.map((set) => `${set.service} (schema ${schemaOf[set.service]}): applied ${namesOf(set.service).join(', ')}`));

    expect(await counts(db)).toEqual(rowsBefore);
    const kept = await sql<{ name: string; organization_id: string }>`select name, organization_id from config.workspaces`.execute(db);
    expect(kept.rows).toEqual([{ name: 'kept', organization_id: 'org-1' }]);
    const fresh = await database('coffer_mig_fresh');
    await runMigrations(migrationTargets({ DATABASE_URL: fresh.url }));
    expect(await shapeOf(db)).toEqual(await shapeOf(fresh.db));
    expect(await recorded(db)).toEqual(allApplied);
    // The adopted log is still immutable.
    await expect(sql`update config.events set type = 'Changed'`.execute(db)).rejects.toThrow(/events are immutable/);

    const again: string[] = [];
    expect(await migrateCommand([], { DATABASE_URL: url }, (l) => again.push(l))).toBe(0);
    expect(again.every((l) => l.endsWith(': current'))).toBe(true);
    for (const set of serviceMigrationSets) await assertMigrationsCurrent(db, migrationTargets({ DATABASE_URL: url }, [set.service])[0]!.schema, set.migrations);
  });

  it('two migrate runs at once do not conflict: each migration is applied once, and both finish without error', async () => {
    const { url, db } = await database('coffer_mig_race');
    const targets = migrationTargets({ DATABASE_URL: url });
    const [a, b] = await Promise.all([runMigrations(targets), runMigrations(targets)]);
    expect([...a!, ...b!].filter((o) => o.error)).toEqual([]);
    for (const set of serviceMigrationSets) {
      const applied = [...a!, ...b!].filter((o) => o.service === set.service).flatMap((o) => o.applied);
      expect(applied, set.service).toEqual(namesOf(set.service));
    }
    expect(await recorded(db)).toEqual(allApplied);
    expect((await shapeOf(db)).tables).toEqual(expect.arrayContaining((await shapeOf(previous)).tables));
  });

  it('check mode: a service refuses a stale schema with an error naming the pending migration, and applies nothing', async () => {
    const { url, db } = await database('coffer_mig_check');
    await loadPreviousRelease(url);
    const logger = createLogger({ service: 'config', level: 'silent', redactor: createRedactor() });
    const config = serviceMigrationSets.find((s) => s.service === 'config')!;
    const starting = startRuntime({
      service: 'config',
      appName: 'coffer-config',
      databaseUrl: url,
      schema: 'config',
      natsUrl: 'nats://127.0.0.1:1',
      namespace: uniqueNamespace(),
      logger,
      redactor: createRedactor(),
      startupWaitMs: 5_000,
      migrations: config.migrations,
      migrationMode: 'check',
    });
    await expect(starting).rejects.toBeInstanceOf(PendingMigrationsError);
    await expect(starting).rejects.toThrow(`the database schema "config" is not current: migrations ${namesOf('config').join(', ')} are pending; run \`coffer migrate\``);
    expect(await pendingMigrations(db, 'config', config.migrations)).toEqual(namesOf('config'));
  });

  it('check mode, as the service process runs it (COFFER_MIGRATIONS=check): exits 1 with one fatal line naming the migration', async () => {
    const { url } = await database('coffer_mig_proc');
    await loadPreviousRelease(url);
    const { code, stdout, stderr } = await runService('config', {
      DATABASE_URL: url,
      CONFIG_CLIENT_SECRET: randomBytes(32).toString('base64url'),
      COFFER_MIGRATIONS: 'check',
      COFFER_STARTUP_WAIT_MS: '5000',
    });
    expect(code).toBe(1);
    const fatal = stdout.split('\n').filter((l) => l.includes('"startup_failed"'));
    expect(fatal, stderr).toHaveLength(1);
    expect(JSON.parse(fatal[0]!).reason).toBe(
      `the database schema "config" is not current: migrations ${namesOf('config').join(', ')} are pending; run \`coffer migrate\` against this DATABASE_URL (or start with COFFER_MIGRATIONS=apply)`,
    );
  });
});

/** Row counts of every table the test writes to. */
async function counts(db: Kysely<unknown>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of ['config.events', 'config.outbox', 'config.workspaces', 'auth.organizations', 'secrets.kek_versions', 'sync.sync_jobs', 'sync.background_job_runs']) {
    const [schema, table] = t.split('.') as [string, string];
    const { rows } = await sql<{ n: string }>`select count(*)::text as n from ${sql.id(schema, table)}`.execute(db);
    out[t] = Number(rows[0]!.n);
  }
  return out;
}

/** Runs one service's main.ts with only the given environment; resolves its exit code and output. */
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
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
