import { sql, type Kysely, type Transaction } from 'kysely';

type Db = Kysely<any> | Transaction<any>;

/** Creates the auth service's read model (idempotent). */
export async function migrateAuthReadModel(db: Kysely<any>, schema: string): Promise<void> {
  await sql`create table if not exists ${sql.id(schema)}.service_identities (
    client_id text primary key,
    role text not null,
    secret_hash text not null,
    updated_at timestamptz not null
  )`.execute(db);
  await sql`create table if not exists ${sql.id(schema)}.client_lockouts (
    client_id text primary key,
    failures_in_window integer not null,
    locked_until timestamptz,
    updated_at timestamptz not null
  )`.execute(db);
}

/** The lockout row admins read: recent failures and the lock, if any (inline projection). */
export async function upsertClientLockout(
  db: Db,
  schema: string,
  row: { clientId: string; failuresInWindow: number; lockedUntil: string | null; updatedAt: string },
): Promise<void> {
  await db
    .withSchema(schema)
    .insertInto('client_lockouts')
    .values({ client_id: row.clientId, failures_in_window: row.failuresInWindow, locked_until: row.lockedUntil, updated_at: row.updatedAt })
    .onConflict((oc) => oc.column('client_id').doUpdateSet({ failures_in_window: row.failuresInWindow, locked_until: row.lockedUntil, updated_at: row.updatedAt }))
    .execute();
}

/** Upserts a service identity row (inline projection). */
export async function upsertServiceIdentity(
  db: Db,
  schema: string,
  row: { clientId: string; role: string; secretHash: string; updatedAt: string },
): Promise<void> {
  await db
    .withSchema(schema)
    .insertInto('service_identities')
    .values({ client_id: row.clientId, role: row.role, secret_hash: row.secretHash, updated_at: row.updatedAt })
    .onConflict((oc) => oc.column('client_id').doUpdateSet({ role: row.role, secret_hash: row.secretHash, updated_at: row.updatedAt }))
    .execute();
}

/** A service identity by client id, or undefined. */
export async function findServiceIdentity(db: Db, schema: string, clientId: string): Promise<{ role: string; secret_hash: string } | undefined> {
  return (await db
    .withSchema(schema)
    .selectFrom('service_identities')
    .select(['role', 'secret_hash'])
    .where('client_id', '=', clientId)
    .executeTakeFirst()) as { role: string; secret_hash: string } | undefined;
}
