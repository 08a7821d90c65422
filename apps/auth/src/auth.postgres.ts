import { createHash } from 'node:crypto';
import { sql, type Kysely, type QueryExecutorProvider, type Transaction } from 'kysely';
import type { AuthDatabase } from './auth.database';

type Db = Kysely<AuthDatabase> | Transaction<AuthDatabase>;

/** Creates the auth service's read model (idempotent: part of migration 0001). */
export async function migrateAuthReadModel(db: QueryExecutorProvider, schema: string): Promise<void> {
  await sql`create table if not exists ${sql.id(schema)}.service_identities (
    client_id text primary key,
    role text not null,
    secret_hash text not null,
    updated_at timestamptz not null
  )`.execute(db);
  await sql`create table if not exists ${sql.id(schema)}.login_attempts (
    key_hash text primary key,
    failures integer not null,
    in_flight integer not null,
    window_started_at timestamptz not null,
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

/**
 * The key of a client id's attempt count: a hash, so that the table names no client id, known or
 * not, while every replica finds the same row.
 */
export function loginAttemptKey(clientId: string): string {
  return createHash('sha256').update(`coffer-auth-login:${clientId}`).digest('hex');
}

/** How long an attempt may stay in flight before a crashed replica's reservation stops counting. */
const STALE_IN_FLIGHT = '60 seconds';

/**
 * Reserves one attempt for a client id, atomically (one upsert, row-locked): granted only when the
 * client is not locked and its failures plus the attempts still in flight stay under the limit.
 * False when refused. A window or a lock that has passed starts the count afresh.
 */
export async function reserveLoginAttempt(db: Db, schema: string, key: string, policy: { maxFailures: number; windowMs: number }, now: Date): Promise<boolean> {
  const fresh = sql`(a.window_started_at <= ${now}::timestamptz - make_interval(secs => ${policy.windowMs / 1000}::double precision) or (a.locked_until is not null and a.locked_until <= ${now}))`;
  const inFlight = sql`(case when a.updated_at <= ${now}::timestamptz - interval '${sql.raw(STALE_IN_FLIGHT)}' then 0 else a.in_flight end)`;
  const failures = sql`(case when ${fresh} then 0 else a.failures end)`;
  const res = await sql`insert into ${sql.id(schema)}.login_attempts as a (key_hash, failures, in_flight, window_started_at, locked_until, updated_at)
    values (${key}, 0, 1, ${now}, null, ${now})
    on conflict (key_hash) do update set
      failures = ${failures},
      window_started_at = case when ${fresh} then ${now} else a.window_started_at end,
      locked_until = case when ${fresh} then null else a.locked_until end,
      in_flight = ${inFlight} + 1,
      updated_at = ${now}
    where (a.locked_until is null or a.locked_until <= ${now}) and ${failures} + ${inFlight} < ${policy.maxFailures}
    returning 1`.execute(db);
  return res.rows.length === 1;
}

/**
 * Ends a reserved attempt: a failure is counted (and locks the client when it reaches the limit), a
 * success clears the failures. Returns the failures after it and the lock it set, if any.
 */
export async function releaseLoginAttempt(
  db: Db,
  schema: string,
  key: string,
  outcome: { ok: boolean; maxFailures: number; lockMs: number },
  now: Date,
): Promise<{ failures: number; lockedUntil: Date | null; cleared: number }> {
  const lockUntil = new Date(now.getTime() + outcome.lockMs);
  const res = outcome.ok
    ? await sql<{ failures: number; cleared: number }>`with b as (select failures as cleared from ${sql.id(schema)}.login_attempts where key_hash = ${key} for update)
        update ${sql.id(schema)}.login_attempts a set
        in_flight = greatest(a.in_flight - 1, 0), failures = 0, window_started_at = ${now}, updated_at = ${now}
        from b where a.key_hash = ${key} returning a.failures, b.cleared`.execute(db)
    : await sql<{ failures: number; locked_until: Date | null }>`update ${sql.id(schema)}.login_attempts a set
        in_flight = greatest(a.in_flight - 1, 0),
        failures = a.failures + 1,
        locked_until = case when a.failures + 1 >= ${outcome.maxFailures} then ${lockUntil}::timestamptz else a.locked_until end,
        updated_at = ${now}
        where a.key_hash = ${key} returning a.failures, a.locked_until`.execute(db);
  const row = res.rows[0] as { failures: number; locked_until?: Date | null; cleared?: number } | undefined;
  const failures = row?.failures ?? (outcome.ok ? 0 : outcome.maxFailures);
  // Reservations keep failures from passing the limit: the failure that reaches it is the one that locks.
  const locked = !outcome.ok && failures === outcome.maxFailures && row?.locked_until ? row.locked_until : null;
  return { failures, lockedUntil: locked, cleared: row?.cleared ?? 0 };
}

/** The attempt count of a client id, or undefined. */
export async function findLoginAttempts(db: Db, schema: string, key: string): Promise<{ failures: number; locked_until: Date | null } | undefined> {
  return (await db.withSchema(schema).selectFrom('login_attempts').select(['failures', 'locked_until']).where('key_hash', '=', key).executeTakeFirst()) as
    | { failures: number; locked_until: Date | null }
    | undefined;
}

/** Forgets the counts that no longer matter: no lock, nothing in flight, window passed. */
export async function pruneLoginAttempts(db: Db, schema: string, windowMs: number, now: Date): Promise<number> {
  const res = await sql`delete from ${sql.id(schema)}.login_attempts
    where (locked_until is null or locked_until <= ${now})
      and updated_at <= ${now}::timestamptz - make_interval(secs => ${windowMs / 1000}::double precision)
      and window_started_at <= ${now}::timestamptz - make_interval(secs => ${windowMs / 1000}::double precision)`.execute(db);
  return Number(res.numAffectedRows ?? 0);
}
