import { sql, type Kysely, type Transaction } from 'kysely';
import type { SecretVersionDestroyedData, SecretVersionWrittenData } from './domain/secret.decider';

type Db = Kysely<any> | Transaction<any>;

/** One row of the secret_versions read model, joined with its data key when that still exists. */
export interface SecretVersionRow {
  coordinate: string;
  base_coordinate: string;
  workspace_id: string;
  version: number;
  state: 'active' | 'destroyed';
  ciphertext: Buffer;
  expires_at: Date | null;
  created_at: Date;
  created_by: string;
  kek_id: string | null;
  kek_version: number | null;
  wrapped: Buffer | null;
}

/** Creates the secrets service's read model tables (idempotent). */
export async function migrateSecretsReadModel(db: Kysely<any>, schema: string): Promise<void> {
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
  await sql`create index if not exists secret_versions_workspace on ${s}.secret_versions (workspace_id)`.execute(db);
  await sql`create table if not exists ${s}.data_keys (
    data_key_id uuid primary key,
    coordinate text not null unique,
    kek_id text not null,
    kek_version integer not null,
    wrapped bytea not null,
    created_at timestamptz not null
  )`.execute(db);
}

/** Inline projection of SecretVersionWritten: the version row and its wrapped data key. */
export async function projectVersionWritten(
  trx: Db,
  schema: string,
  e: SecretVersionWrittenData,
  wrapped: Buffer,
  createdBy: string,
): Promise<void> {
  await trx
    .withSchema(schema)
    .insertInto('secret_versions')
    .values({
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
    })
    .execute();
  await trx
    .withSchema(schema)
    .insertInto('data_keys')
    .values({
      data_key_id: e.dataKeyId,
      coordinate: e.coordinate,
      kek_id: e.kekId,
      kek_version: e.kekVersion,
      wrapped,
      created_at: e.writtenAt,
    })
    .execute();
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
      'k.kek_id',
      'k.kek_version',
      'k.wrapped',
    ])
    .where('v.coordinate', 'in', coordinates)
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
      'v.kek_id',
      'v.kek_version',
      'k.wrapped',
    ])
    .where('v.base_coordinate', '=', base)
    .orderBy('v.version')
    .execute()) as SecretVersionRow[];
}
