import { Migrator, type Kysely, type Migration, type QueryExecutorProvider } from 'kysely';
import { sqlIdentifier } from './env';

/**
 * One schema change of a service, run once inside the migration run's transaction. It sees the
 * schema as it was when the change was written, not today's `Database` types: raw SQL on the
 * transaction (any kysely handle runs it).
 */
export type SchemaMigration = (trx: QueryExecutorProvider, schema: string) => Promise<void>;

/**
 * A service's migrations by name (`0001_initial`, `0002_…`): names sort in the order they apply, and a
 * new one must sort after every applied one. An applied migration is never edited; a change is a new one.
 */
export type ServiceMigrations = Readonly<Record<string, SchemaMigration>>;

/** The table, in each service's own schema, that records which migrations were applied and when. */
export const MIGRATION_TABLE = 'schema_migrations';
/** Kysely's lock table, beside it (Postgres locks with an advisory lock; the table stays unused). */
export const MIGRATION_LOCK_TABLE = 'schema_migrations_lock';

/** Thrown when a schema has migrations the code needs that were not applied. */
export class PendingMigrationsError extends Error {
  constructor(
    readonly schema: string,
    readonly pending: string[],
  ) {
    super(
      `the database schema "${schema}" is not current: migration${pending.length === 1 ? '' : 's'} ${pending.join(', ')} ${pending.length === 1 ? 'is' : 'are'} pending; run \`coffer migrate\` against this DATABASE_URL (or start with COFFER_MIGRATIONS=apply)`,
    );
    this.name = 'PendingMigrationsError';
  }
}

/** Thrown when a migration fails; nothing of the run is kept (it runs in one transaction). */
export class MigrationFailedError extends Error {
  constructor(
    readonly schema: string,
    readonly migration: string | undefined,
    options: { cause: unknown },
  ) {
    const reason = options.cause instanceof Error ? options.cause.message : String(options.cause);
    super(`migrating the database schema "${schema}" failed${migration ? ` at migration ${migration}` : ''}: ${reason}`, options);
    this.name = 'MigrationFailedError';
  }
}

/**
 * Kysely's migrator for one service's schema: the migrations' record lives in that schema
 * (`schema_migrations`), so each service's history is its own. Kysely runs a migration run in one
 * transaction on one connection holding a session advisory lock (one lock id for the whole
 * database, whatever the schema): concurrent runs, of one service or several, take turns, and each
 * sees what the one before applied.
 */
export function serviceMigrator<DB>(db: Kysely<DB>, schema: string, migrations: ServiceMigrations): Migrator {
  const name = sqlIdentifier.parse(schema);
  const provided: Record<string, Migration> = Object.fromEntries(Object.entries(migrations).map(([id, up]) => [id, { up: (trx: QueryExecutorProvider) => up(trx, name) }]));
  return new Migrator({
    db,
    provider: { getMigrations: async () => provided },
    migrationTableSchema: name,
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
}

/** Applies the schema's pending migrations in order; returns the names applied (none when current). */
export async function applyMigrations<DB>(db: Kysely<DB>, schema: string, migrations: ServiceMigrations): Promise<string[]> {
  const { error, results = [] } = await serviceMigrator(db, schema, migrations).migrateToLatest();
  if (error) throw new MigrationFailedError(schema, results.find((r) => r.status === 'Error')?.migrationName, { cause: error });
  return results.filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** The migrations the code has that the schema has not applied, in order. */
export async function pendingMigrations<DB>(db: Kysely<DB>, schema: string, migrations: ServiceMigrations): Promise<string[]> {
  const known = await serviceMigrator(db, schema, migrations).getMigrations();
  return known.filter((m) => m.executedAt === undefined).map((m) => m.name);
}

/** Throws a {@link PendingMigrationsError} naming the pending migrations unless the schema is current. */
export async function assertMigrationsCurrent<DB>(db: Kysely<DB>, schema: string, migrations: ServiceMigrations): Promise<void> {
  const pending = await pendingMigrations(db, schema, migrations);
  if (pending.length > 0) throw new PendingMigrationsError(schema, pending);
}
