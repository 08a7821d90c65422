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
  await sql`alter table ${sql.id(schema)}.service_identities add column if not exists revoked_at timestamptz`.execute(db);
  await sql`create table if not exists ${sql.id(schema)}.signing_keys (
    kid text primary key,
    public_jwk jsonb not null,
    sealed_private_jwk text not null,
    created_at timestamptz not null,
    retire_at timestamptz
  )`.execute(db);
  await sql`alter table ${sql.id(schema)}.signing_keys add column if not exists activate_at timestamptz`.execute(db);
  await sql`create unique index if not exists signing_keys_one_active on ${sql.id(schema)}.signing_keys ((true)) where retire_at is null`.execute(db);
  await sql`create table if not exists ${sql.id(schema)}.organizations (
    organization_id text primary key,
    name text not null,
    created_at timestamptz not null
  )`.execute(db);
  await sql`create table if not exists ${sql.id(schema)}.applications (
    client_id text primary key,
    organization_id text not null references ${sql.id(schema)}.organizations (organization_id),
    name text not null,
    allowed_origins jsonb not null,
    secret_hash text not null,
    previous_secret_hash text,
    previous_valid_until timestamptz,
    disabled_at timestamptz,
    version integer not null
  )`.execute(db);
  await sql`create table if not exists ${sql.id(schema)}.end_user_workspaces (
    organization_id text not null,
    external_user_id text not null,
    workspace_id text not null,
    primary key (organization_id, external_user_id)
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
  row: { clientId: string; role: string; secretHash: string; revokedAt: string | null; updatedAt: string },
): Promise<void> {
  const values = { role: row.role, secret_hash: row.secretHash, revoked_at: row.revokedAt, updated_at: row.updatedAt };
  await db
    .withSchema(schema)
    .insertInto('service_identities')
    .values({ client_id: row.clientId, ...values })
    .onConflict((oc) => oc.column('client_id').doUpdateSet(values))
    .execute();
}

/** A service identity by client id, or undefined. */
export async function findServiceIdentity(db: Db, schema: string, clientId: string): Promise<{ role: string; secret_hash: string; revoked_at: Date | null } | undefined> {
  return (await db
    .withSchema(schema)
    .selectFrom('service_identities')
    .select(['role', 'secret_hash', 'revoked_at'])
    .where('client_id', '=', clientId)
    .executeTakeFirst()) as { role: string; secret_hash: string; revoked_at: Date | null } | undefined;
}

/** An application row, as the read model keeps it. */
export interface ApplicationRow {
  client_id: string;
  organization_id: string;
  name: string;
  allowed_origins: string[];
  secret_hash: string;
  previous_secret_hash: string | null;
  previous_valid_until: Date | null;
  disabled_at: Date | null;
  version: number;
}

/** An application by client id, or undefined. */
export async function findApplication(db: Db, schema: string, clientId: string): Promise<ApplicationRow | undefined> {
  return (await db.withSchema(schema).selectFrom('applications').selectAll().where('client_id', '=', clientId).executeTakeFirst()) as ApplicationRow | undefined;
}

/** An organization by id, or undefined. */
export async function findOrganization(db: Db, schema: string, organizationId: string): Promise<{ organization_id: string; name: string } | undefined> {
  return (await db.withSchema(schema).selectFrom('organizations').select(['organization_id', 'name']).where('organization_id', '=', organizationId).executeTakeFirst()) as
    | { organization_id: string; name: string }
    | undefined;
}

/** The lockout row of a client id, or undefined. */
export async function findClientLockout(db: Db, schema: string, clientId: string): Promise<{ failures_in_window: number; locked_until: Date | null } | undefined> {
  return (await db.withSchema(schema).selectFrom('client_lockouts').select(['failures_in_window', 'locked_until']).where('client_id', '=', clientId).executeTakeFirst()) as
    | { failures_in_window: number; locked_until: Date | null }
    | undefined;
}
