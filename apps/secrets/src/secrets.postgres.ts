import { sql, type Kysely, type QueryExecutorProvider, type Transaction } from 'kysely';
import type { SecretsDatabase } from './secrets.database';
import type { DataKeyRewrappedData, SecretExpiredData, SecretVersionDestroyedData, SecretVersionWrittenData } from './domain/secret.decider';

type Db = Kysely<SecretsDatabase> | Transaction<SecretsDatabase>;

/** One row of the secret_versions read model, joined with its data key when that still exists. */
export interface SecretVersionRow {
  coordinate: string;
  base_coordinate: string;
  workspace_id: string;
  version: number;
  state: 'active' | 'destroyed' | 'expired';
  ciphertext: Buffer;
  expires_at: Date | null;
  created_at: Date;
  created_by: string;
  kek_id: string | null;
  kek_version: number | null;
  wrapped: Buffer | null;
  owner_id: string | null;
  owner_workspace_id: string | null;
}

/** Creates the secrets service's read model tables (idempotent: part of migration 0001). */
export async function migrateSecretsReadModel(db: QueryExecutorProvider, schema: string): Promise<void> {
  const s = sql.id(schema);
  await sql`create table if not exists ${s}.secret_versions (
    coordinate text primary key,
    base_coordinate text not null,
    workspace_id text not null,
    version integer not null,
    state text not null,
    ciphertext bytea not null,
    data_key_id uuid,
    kek_id text,
    kek_version integer,
    expires_at timestamptz,
    created_at timestamptz not null,
    created_by text not null,
    destroyed_at timestamptz,
    unique (base_coordinate, version)
  )`.execute(db);
  // Rows written before secrets had owners keep nulls: the service treats a check/discover one as
  // nobody's (refused) and any other as its coordinate's workspace's only.
  await sql`alter table ${s}.secret_versions add column if not exists owner_id text, add column if not exists owner_workspace_id text`.execute(db);
  await sql`alter table ${s}.secret_versions add column if not exists write_id text`.execute(db);
  await sql`create index if not exists secret_versions_workspace on ${s}.secret_versions (workspace_id)`.execute(db);
  await sql`create index if not exists secret_versions_expiry on ${s}.secret_versions (expires_at) where state = 'active' and expires_at is not null`.execute(db);
  await sql`create table if not exists ${s}.kek_versions (
    kek_id text not null,
    version integer not null,
    state text not null,
    observed_at timestamptz not null,
    primary key (kek_id, version)
  )`.execute(db);
  await sql`create table if not exists ${s}.data_keys (
    data_key_id uuid primary key,
    coordinate text not null unique,
    kek_id text not null,
    kek_version integer not null,
    wrapped bytea not null,
    created_at timestamptz not null
  )`.execute(db);
}

/** Inline projection of SecretVersionWritten (the version rows and their wrapped data keys), `batchSize` rows per statement. */
export async function projectVersionsWritten(
  trx: Db,
  schema: string,
  written: { e: SecretVersionWrittenData; wrapped: Buffer }[],
  createdBy: string,
  batchSize: number,
): Promise<void> {
  for (let i = 0; i < written.length; i += batchSize) {
    const batch = written.slice(i, i + batchSize);
    await trx
      .withSchema(schema)
      .insertInto('secret_versions')
      .values(
        batch.map(({ e }) => ({
          coordinate: e.coordinate,
          base_coordinate: e.baseCoordinate,
          workspace_id: e.workspaceId,
          version: e.version,
          state: 'active',
          ciphertext: Buffer.from(e.ciphertext, 'base64'),
          data_key_id: e.dataKeyId,
          kek_id: e.kekId,
          kek_version: e.kekVersion,
          expires_at: e.expiresAt,
          created_at: e.writtenAt,
          created_by: createdBy,
          owner_id: e.ownerId ?? null,
          owner_workspace_id: e.ownerWorkspaceId ?? null,
          write_id: e.writeId ?? null,
        })),
      )
      .execute();
    await trx
      .withSchema(schema)
      .insertInto('data_keys')
      .values(batch.map(({ e, wrapped }) => ({ data_key_id: e.dataKeyId, coordinate: e.coordinate, kek_id: e.kekId, kek_version: e.kekVersion, wrapped, created_at: e.writtenAt })))
      .execute();
  }
}

/** Inline projection of SecretVersionDestroyed: the wrapped data key is deleted for good (crypto-shredding). */
export async function projectVersionDestroyed(trx: Db, schema: string, e: SecretVersionDestroyedData): Promise<void> {
  await trx.withSchema(schema).deleteFrom('data_keys').where('coordinate', '=', e.coordinate).execute();
  await trx
    .withSchema(schema)
    .updateTable('secret_versions')
    .set({ state: 'destroyed', destroyed_at: e.destroyedAt })
    .where('coordinate', '=', e.coordinate)
    .execute();
}

/** Inline projection of SecretExpired: like a destroy, the wrapped data key is deleted for good. */
export async function projectExpired(trx: Db, schema: string, e: SecretExpiredData): Promise<void> {
  await trx.withSchema(schema).deleteFrom('data_keys').where('coordinate', '=', e.coordinate).execute();
  await trx.withSchema(schema).updateTable('secret_versions').set({ state: 'expired', destroyed_at: e.expiredAt }).where('coordinate', '=', e.coordinate).execute();
}

/** Inline projection of DataKeyRewrapped; fails (rolling the append back) if the key moved meanwhile. */
export async function projectRewrapped(trx: Db, schema: string, e: DataKeyRewrappedData, wrapped: Buffer): Promise<void> {
  const updated = await trx
    .withSchema(schema)
    .updateTable('data_keys')
    .set({ wrapped, kek_version: e.toKekVersion })
    .where('coordinate', '=', e.coordinate)
    .where('kek_version', '=', e.fromKekVersion)
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) !== 1) throw new Error('data key changed during re-wrap');
  await trx.withSchema(schema).updateTable('secret_versions').set({ kek_version: e.toKekVersion }).where('coordinate', '=', e.coordinate).execute();
}

/** A live data key still wrapped by another KEK version than `primary`. */
export interface StaleDataKey {
  coordinate: string;
  base_coordinate: string;
  workspace_id: string;
  version: number;
  kek_version: number;
  wrapped: Buffer;
}

/** Up to `limit` live data keys of `kekId` not wrapped by `primary`, skipping `skip`. */
export async function findStaleDataKeys(db: Db, schema: string, kekId: string, primary: number, limit: number, skip: string[]): Promise<StaleDataKey[]> {
  let q = db
    .withSchema(schema)
    .selectFrom('data_keys as k')
    .innerJoin('secret_versions as v', 'v.coordinate', 'k.coordinate')
    .select(['k.coordinate', 'v.base_coordinate', 'v.workspace_id', 'v.version', 'k.kek_version', 'k.wrapped'])
    .where('k.kek_id', '=', kekId)
    .where('k.kek_version', '<>', primary);
  if (skip.length > 0) q = q.where('k.coordinate', 'not in', skip);
  return (await q.orderBy('k.coordinate').limit(limit).execute()) as StaleDataKey[];
}

/** How many live data keys each KEK version of `kekId` wraps. */
export async function countDataKeysByKekVersion(db: Db, schema: string, kekId: string): Promise<Map<number, number>> {
  const rows = await db
    .withSchema(schema)
    .selectFrom('data_keys')
    .select(['kek_version', sql<string>`count(*)`.as('n')])
    .where('kek_id', '=', kekId)
    .groupBy('kek_version')
    .execute();
  return new Map(rows.map((r) => [Number(r.kek_version), Number(r.n)]));
}

/** Active versions whose expiry has passed, oldest first. */
export async function findDueForExpiry(db: Db, schema: string, now: Date, limit: number): Promise<{ base_coordinate: string; workspace_id: string; version: number }[]> {
  return db
    .withSchema(schema)
    .selectFrom('secret_versions')
    .select(['base_coordinate', 'workspace_id', 'version'])
    .where('state', '=', 'active')
    .where('expires_at', '<=', now)
    .orderBy('expires_at')
    .limit(limit)
    .execute();
}

/** The base coordinates of a workspace that still have an active version. */
export async function findLiveBases(db: Db, schema: string, workspaceId: string): Promise<string[]> {
  const rows = await db
    .withSchema(schema)
    .selectFrom('secret_versions')
    .select('base_coordinate')
    .distinct()
    .where('workspace_id', '=', workspaceId)
    .where('state', '=', 'active')
    .execute();
  return rows.map((r) => r.base_coordinate as string);
}

/** When each KEK version was first seen by this service (the rotation schedule counts from it). */
export async function observeKekVersion(db: Db, schema: string, kekId: string, version: number, state: string, now: Date): Promise<Date> {
  await db
    .withSchema(schema)
    .insertInto('kek_versions')
    .values({ kek_id: kekId, version, state, observed_at: now })
    .onConflict((oc) => oc.columns(['kek_id', 'version']).doUpdateSet({ state }))
    .execute();
  const row = await db.withSchema(schema).selectFrom('kek_versions').select('observed_at').where('kek_id', '=', kekId).where('version', '=', version).executeTakeFirstOrThrow();
  return row.observed_at as Date;
}

/** The rows of the given coordinates, with their wrapped data keys where not destroyed. */
export async function findVersions(db: Db, schema: string, coordinates: string[]): Promise<SecretVersionRow[]> {
  if (coordinates.length === 0) return [];
  return (await db
    .withSchema(schema)
    .selectFrom('secret_versions as v')
    .leftJoin('data_keys as k', 'k.coordinate', 'v.coordinate')
    .select([
      'v.coordinate',
      'v.base_coordinate',
      'v.workspace_id',
      'v.version',
      'v.state',
      'v.ciphertext',
      'v.expires_at',
      'v.created_at',
      'v.created_by',
      'v.owner_id',
      'v.owner_workspace_id',
      'k.kek_id',
      'k.kek_version',
      'k.wrapped',
    ])
    // One array parameter: the statement's text is the same for any number of coordinates (prepared once).
    .where(sql<boolean>`v.coordinate = any(${coordinates}::text[])`)
    .execute()) as SecretVersionRow[];
}

/** Every version of one base coordinate, oldest first. */
export async function listVersions(db: Db, schema: string, base: string): Promise<SecretVersionRow[]> {
  return (await db
    .withSchema(schema)
    .selectFrom('secret_versions as v')
    .leftJoin('data_keys as k', 'k.coordinate', 'v.coordinate')
    .select([
      'v.coordinate',
      'v.base_coordinate',
      'v.workspace_id',
      'v.version',
      'v.state',
      'v.ciphertext',
      'v.expires_at',
      'v.created_at',
      'v.created_by',
      'v.owner_id',
      'v.owner_workspace_id',
      'v.kek_id',
      'v.kek_version',
      'k.wrapped',
    ])
    .where('v.base_coordinate', '=', base)
    .orderBy('v.version')
    .execute()) as SecretVersionRow[];
}

/** The highest version ever written of each base, whatever its state; bases never written are absent. */
export async function findLatestVersions(db: Db, schema: string, bases: string[]): Promise<Map<string, number>> {
  if (bases.length === 0) return new Map();
  const rows = await db
    .withSchema(schema)
    .selectFrom('secret_versions')
    .select(['base_coordinate', sql<number>`max(version)`.as('latest')])
    .where('base_coordinate', 'in', bases)
    .groupBy('base_coordinate')
    .execute();
  return new Map(rows.map((r) => [r.base_coordinate as string, Number(r.latest)]));
}

/** Of `coordinates`, the versions a write with `writeId` made (whatever their state). */
export async function writtenBy(db: Db, schema: string, coordinates: string[], writeId: string): Promise<string[]> {
  if (coordinates.length === 0) return [];
  const rows = await db.withSchema(schema).selectFrom('secret_versions').select('coordinate').where('coordinate', 'in', coordinates).where('write_id', '=', writeId).execute();
  return rows.map((r) => r.coordinate as string);
}
