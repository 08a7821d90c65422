import { sql, type Kysely, type QueryExecutorProvider, type Transaction } from 'kysely';
import type { ConfigDatabase } from './config.database';
import type { ActorConfigUpdatedData, ActorCreatedData, ActorDeletedData, ActorType } from './domain/actor.decider';
import type { ConnectionCreatedData } from './domain/connection.decider';
import type { ConnectorDefinitionRegisteredData, WorkspaceCreatedData } from './domain/workspace.decider';

type Db = Kysely<ConfigDatabase> | Transaction<ConfigDatabase>;

/** Creates config's read models (idempotent: part of migration 0001); each is a projection of the event log. */
export async function migrateConfigReadModel(db: QueryExecutorProvider, schema: string): Promise<void> {
  const s = sql.id(schema);
  await sql`create table if not exists ${s}.workspaces (
    workspace_id uuid primary key,
    name text not null,
    version integer not null,
    created_at timestamptz not null
  )`.execute(db);
  await sql`create table if not exists ${s}.connector_definitions (
    definition_id uuid primary key,
    name text not null,
    actor_type text not null,
    connector text not null,
    spec jsonb not null,
    version integer not null,
    registered_at timestamptz not null
  )`.execute(db);
  await sql`create table if not exists ${s}.actors (
    actor_id uuid primary key,
    workspace_id uuid not null,
    definition_id uuid not null,
    actor_type text not null,
    name text not null,
    partial_config jsonb not null,
    version integer not null,
    deleted boolean not null default false,
    updated_at timestamptz not null
  )`.execute(db);
  await sql`create index if not exists actors_workspace on ${s}.actors (workspace_id)`.execute(db);
  await sql`alter table ${s}.workspaces add column if not exists deleted boolean not null default false`.execute(db);
  await sql`alter table ${s}.workspaces add column if not exists organization_id text`.execute(db);
  await sql`alter table ${s}.workspaces add column if not exists external_user_id text`.execute(db);
  // One workspace per end user of an organization: concurrent provisioning of the same user makes one.
  await sql`create unique index if not exists workspaces_end_user on ${s}.workspaces (organization_id, external_user_id) where external_user_id is not null and not deleted`.execute(db);
  await sql`create table if not exists ${s}.secret_shredding (
    coordinate text primary key,
    workspace_id uuid not null,
    actor_id uuid,
    reason text not null,
    recorded_at timestamptz not null,
    attempts integer not null default 0,
    next_attempt_at timestamptz not null,
    last_error text
  )`.execute(db);
  await sql`create index if not exists secret_shredding_due on ${s}.secret_shredding (next_attempt_at)`.execute(db);
  // Set for the versions of a change that failed: secrets destroys them only if that very write made them.
  await sql`alter table ${s}.secret_shredding add column if not exists write_id text`.execute(db);
  // A deleted OAuth actor whose definition declares a revocation endpoint: its secrets' shredding is
  // held (due at hold_until) until the sync worker has revoked the grant at the provider.
  await sql`create table if not exists ${s}.credential_revocations (
    actor_id uuid primary key,
    workspace_id uuid not null,
    partial_config jsonb not null,
    oauth jsonb not null,
    requested_at timestamptz not null,
    hold_until timestamptz not null
  )`.execute(db);
  // Coordinates config is about to write at secrets, recorded before the call: removed with the
  // event that references them, or turned into shredding by the recovery loop.
  await sql`create table if not exists ${s}.secret_write_intents (
    intent_id uuid primary key,
    workspace_id uuid not null,
    actor_id uuid not null,
    operation text not null,
    coordinates text[] not null,
    recorded_at timestamptz not null
  )`.execute(db);
  await sql`create index if not exists secret_write_intents_age on ${s}.secret_write_intents (recorded_at)`.execute(db);
  await sql`create table if not exists ${s}.connections (
    connection_id uuid primary key,
    workspace_id uuid not null,
    source_id uuid not null,
    destination_id uuid not null,
    name text not null,
    version integer not null,
    created_at timestamptz not null
  )`.execute(db);
  await sql`alter table ${s}.connections add column if not exists deleted boolean not null default false`.execute(db);
  await sql`alter table ${s}.connector_definitions add column if not exists deleted boolean not null default false`.execute(db);
}

export interface WorkspaceRow {
  workspace_id: string;
  name: string;
  version: number;
  organization_id: string | null;
  external_user_id: string | null;
}

const WORKSPACE_COLUMNS = ['workspace_id', 'name', 'version', 'organization_id', 'external_user_id'] as const;

/** Workspaces that are not deleted, with the columns of a WorkspaceRow. */
function liveWorkspaces(db: Db, schema: string) {
  return db.withSchema(schema).selectFrom('workspaces').select(WORKSPACE_COLUMNS).where('deleted', '=', false);
}

export interface DefinitionRow {
  definition_id: string;
  name: string;
  actor_type: ActorType;
  connector: string;
  spec: unknown;
  version: number;
}

export interface ActorRow {
  actor_id: string;
  workspace_id: string;
  definition_id: string;
  actor_type: ActorType;
  name: string;
  partial_config: unknown;
  version: number;
  deleted: boolean;
}

export interface ConnectionRow {
  connection_id: string;
  workspace_id: string;
  source_id: string;
  destination_id: string;
  name: string;
  version: number;
}

/** Projects WorkspaceCreated. */
export async function projectWorkspaceCreated(trx: Db, schema: string, e: WorkspaceCreatedData): Promise<void> {
  await trx
    .withSchema(schema)
    .insertInto('workspaces')
    .values({ workspace_id: e.workspaceId, name: e.name, version: 1, created_at: e.createdAt, organization_id: e.organizationId || null, external_user_id: e.externalUserId || null })
    .execute();
}

/** Projects ConnectorDefinitionRegistered. */
export async function projectDefinitionRegistered(trx: Db, schema: string, e: ConnectorDefinitionRegisteredData): Promise<void> {
  await trx
    .withSchema(schema)
    .insertInto('connector_definitions')
    .values({
      definition_id: e.definitionId,
      name: e.name,
      actor_type: e.actorType,
      connector: e.connector,
      spec: JSON.stringify(e.spec),
      version: 1,
      registered_at: e.registeredAt,
    })
    .execute();
}

/** Projects ActorCreated. */
export async function projectActorCreated(trx: Db, schema: string, e: ActorCreatedData): Promise<void> {
  await trx
    .withSchema(schema)
    .insertInto('actors')
    .values({
      actor_id: e.actorId,
      workspace_id: e.workspaceId,
      definition_id: e.definitionId,
      actor_type: e.actorType,
      name: e.name,
      partial_config: JSON.stringify(e.partialConfig),
      version: 1,
      updated_at: e.createdAt,
    })
    .execute();
}

/** Projects ActorConfigUpdated at the stream version it was recorded with. */
export async function projectActorUpdated(trx: Db, schema: string, e: ActorConfigUpdatedData, version: number): Promise<void> {
  await trx
    .withSchema(schema)
    .updateTable('actors')
    .set({ name: e.name, partial_config: JSON.stringify(e.partialConfig), version, updated_at: e.updatedAt })
    .where('actor_id', '=', e.actorId)
    .execute();
}

/** Projects ActorDeleted. */
export async function projectActorDeleted(trx: Db, schema: string, e: ActorDeletedData, version: number): Promise<void> {
  await trx.withSchema(schema).updateTable('actors').set({ deleted: true, version, updated_at: e.deletedAt }).where('actor_id', '=', e.actorId).execute();
}

/** Projects ConnectionCreated. */
export async function projectConnectionCreated(trx: Db, schema: string, e: ConnectionCreatedData): Promise<void> {
  await trx
    .withSchema(schema)
    .insertInto('connections')
    .values({
      connection_id: e.connectionId,
      workspace_id: e.workspaceId,
      source_id: e.sourceId,
      destination_id: e.destinationId,
      name: e.name,
      version: 1,
      created_at: e.createdAt,
    })
    .execute();
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** @internal Ids are uuids; anything else cannot exist (and must not reach a uuid column). */
export function isUuid(id: string): boolean {
  return UUID.test(id);
}

/** One workspace, or undefined. */
export async function findWorkspace(db: Db, schema: string, id: string): Promise<WorkspaceRow | undefined> {
  if (!isUuid(id)) return undefined;
  return liveWorkspaces(db, schema).where('workspace_id', '=', id).executeTakeFirst();
}

/** The live workspace of an organization's end user, or undefined. */
export async function findEndUserWorkspace(db: Db, schema: string, organizationId: string, externalUserId: string): Promise<WorkspaceRow | undefined> {
  return liveWorkspaces(db, schema).where('organization_id', '=', organizationId).where('external_user_id', '=', externalUserId).executeTakeFirst();
}

/** The workspace an actor (source, destination, webhook) or a connection belongs to, with its organization. */
export async function findOwner(db: Db, schema: string, table: 'actors' | 'connections', id: string): Promise<{ workspace_id: string; organization_id: string | null } | undefined> {
  if (!isUuid(id)) return undefined;
  const owned = db.withSchema(schema);
  const row = table === 'actors' ? owned.selectFrom('actors as t').where('t.actor_id', '=', id) : owned.selectFrom('connections as t').where('t.connection_id', '=', id);
  return row.innerJoin('workspaces as w', 'w.workspace_id', 't.workspace_id').select(['w.workspace_id', 'w.organization_id']).where('t.deleted', '=', false).executeTakeFirst();
}

/** One connector definition, or undefined. */
export async function findDefinition(db: Db, schema: string, id: string): Promise<DefinitionRow | undefined> {
  if (!isUuid(id)) return undefined;
  return db
    .withSchema(schema)
    .selectFrom('connector_definitions')
    .select(['definition_id', 'name', 'actor_type', 'connector', 'spec', 'version'])
    .where('definition_id', '=', id)
    .where('deleted', '=', false)
    .executeTakeFirst();
}

/** One actor that has not been deleted, or undefined. */
export async function findActor(db: Db, schema: string, id: string): Promise<ActorRow | undefined> {
  if (!isUuid(id)) return undefined;
  return db
    .withSchema(schema)
    .selectFrom('actors')
    .select(['actor_id', 'workspace_id', 'definition_id', 'actor_type', 'name', 'partial_config', 'version', 'deleted'])
    .where('actor_id', '=', id)
    .where('deleted', '=', false)
    .executeTakeFirst();
}

/** One connection, or undefined. */
export async function findConnection(db: Db, schema: string, id: string): Promise<ConnectionRow | undefined> {
  if (!isUuid(id)) return undefined;
  return db
    .withSchema(schema)
    .selectFrom('connections')
    .select(['connection_id', 'workspace_id', 'source_id', 'destination_id', 'name', 'version'])
    .where('connection_id', '=', id)
    .where('deleted', '=', false)
    .executeTakeFirst();
}

/** A secret coordinate (or base) config no longer references and must have shredded at secrets. */
export interface PendingShred {
  coordinate: string;
  workspace_id: string;
  actor_id: string | null;
  attempts: number;
  /** Destroy the version only if the write with this id made it (a failed change's own versions). */
  write_id: string | null;
}

/** Records coordinates to shred; projected in the same transaction as the event that orphaned them. */
export async function queueShredding(
  trx: Db,
  schema: string,
  workspaceId: string,
  actorId: string | null,
  coordinates: string[],
  reason: string,
  now: Date,
  writeId: string | null = null,
  dueAt: Date = now,
): Promise<void> {
  if (coordinates.length === 0) return;
  await trx
    .withSchema(schema)
    .insertInto('secret_shredding')
    .values(coordinates.map((coordinate) => ({ coordinate, workspace_id: workspaceId, actor_id: actorId, reason, recorded_at: now, next_attempt_at: dueAt, write_id: writeId })))
    .onConflict((oc) => oc.column('coordinate').doNothing())
    .execute();
}

/**
 * Takes the oldest due shred that no other transaction holds, and holds it (row lock) until `trx`
 * ends: one shredder at a time per entry across every replica, and a crashed one lets go at once.
 */
export async function claimDueShredding(trx: Transaction<ConfigDatabase>, schema: string, now: Date): Promise<PendingShred | undefined> {
  return (await trx
    .withSchema(schema)
    .selectFrom('secret_shredding')
    .select(['coordinate', 'workspace_id', 'actor_id', 'attempts', 'write_id'])
    .where('next_attempt_at', '<=', now)
    .orderBy('recorded_at')
    .limit(1)
    .forUpdate()
    .skipLocked()
    .executeTakeFirst()) as PendingShred | undefined;
}

/** Removes shreds that secrets confirmed. */
export async function completeShredding(trx: Db, schema: string, coordinates: string[]): Promise<void> {
  if (coordinates.length === 0) return;
  await trx.withSchema(schema).deleteFrom('secret_shredding').where('coordinate', 'in', coordinates).execute();
}

/** Pushes failed shreds back with exponential backoff (capped at 5 minutes), keeping the error code only. */
export async function postponeShredding(db: Db, schema: string, coordinates: string[], now: Date, error: string): Promise<void> {
  if (coordinates.length === 0) return;
  await sql`update ${sql.id(schema)}.secret_shredding
    set attempts = attempts + 1,
        last_error = ${error},
        next_attempt_at = ${now}::timestamptz + least(interval '5 minutes', interval '1 second' * power(2, attempts))
    where coordinate in (${sql.join(coordinates)})`.execute(db);
}

/** A page of rows ordered by id, and whether more follow. */
export interface Page<T> {
  rows: T[];
  more: boolean;
}

/** Workspaces after `after` (an id), oldest id first. */
export async function listWorkspaces(db: Db, schema: string, after: string, limit: number, only: { organizationId?: string; workspaceId?: string } = {}): Promise<Page<WorkspaceRow>> {
  let q = liveWorkspaces(db, schema);
  if (only.organizationId !== undefined) q = q.where('organization_id', '=', only.organizationId);
  if (only.workspaceId !== undefined) q = q.where('workspace_id', '=', isUuid(only.workspaceId) ? only.workspaceId : '00000000-0000-0000-0000-000000000000');
  const rows = await q
    .where('workspace_id', '>', after)
    .orderBy('workspace_id')
    .limit(limit + 1)
    .execute();
  return { rows: rows.slice(0, limit) as WorkspaceRow[], more: rows.length > limit };
}

/** Connector definitions after `after`, optionally of one actor type. */
export async function listDefinitions(db: Db, schema: string, actorTypes: ActorType[], after: string, limit: number): Promise<Page<DefinitionRow>> {
  const q = db
    .withSchema(schema)
    .selectFrom('connector_definitions')
    .select(['definition_id', 'name', 'actor_type', 'connector', 'spec', 'version'])
    .where('definition_id', '>', after)
    .where('deleted', '=', false)
    .where('actor_type', 'in', actorTypes);
  const rows = await q.orderBy('definition_id').limit(limit + 1).execute();
  return { rows: rows.slice(0, limit) as DefinitionRow[], more: rows.length > limit };
}

/** Live actors of a workspace after `after`, optionally of one type, with their definitions' specs. */
export async function listActors(
  db: Db,
  schema: string,
  workspaceId: string,
  actorTypes: ActorType[],
  after: string,
  limit: number,
): Promise<Page<ActorRow & { spec: unknown }>> {
  const q = db
    .withSchema(schema)
    .selectFrom('actors as a')
    .innerJoin('connector_definitions as d', 'd.definition_id', 'a.definition_id')
    .select(['a.actor_id', 'a.workspace_id', 'a.definition_id', 'a.actor_type', 'a.name', 'a.partial_config', 'a.version', 'a.deleted', 'd.spec'])
    .where('a.workspace_id', '=', workspaceId)
    .where('a.deleted', '=', false)
    .where('a.actor_id', '>', after)
    .where('a.actor_type', 'in', actorTypes);
  const rows = await q.orderBy('a.actor_id').limit(limit + 1).execute();
  return { rows: rows.slice(0, limit) as (ActorRow & { spec: unknown })[], more: rows.length > limit };
}

/** Live connections of a workspace after `after`. */
export async function listConnections(db: Db, schema: string, workspaceId: string, after: string, limit: number): Promise<Page<ConnectionRow>> {
  const rows = await db
    .withSchema(schema)
    .selectFrom('connections')
    .select(['connection_id', 'workspace_id', 'source_id', 'destination_id', 'name', 'version'])
    .where('workspace_id', '=', workspaceId)
    .where('deleted', '=', false)
    .where('connection_id', '>', after)
    .orderBy('connection_id')
    .limit(limit + 1)
    .execute();
  return { rows: rows.slice(0, limit) as ConnectionRow[], more: rows.length > limit };
}

/** Every live actor id of a workspace (for a cascading delete). */
export async function workspaceActorIds(db: Db, schema: string, workspaceId: string): Promise<string[]> {
  const rows = await db.withSchema(schema).selectFrom('actors').select('actor_id').where('workspace_id', '=', workspaceId).where('deleted', '=', false).execute();
  return rows.map((r) => r.actor_id as string);
}

/** Every live connection id of a workspace (for a cascading delete). */
export async function workspaceConnectionIds(db: Db, schema: string, workspaceId: string): Promise<string[]> {
  const rows = await db.withSchema(schema).selectFrom('connections').select('connection_id').where('workspace_id', '=', workspaceId).where('deleted', '=', false).execute();
  return rows.map((r) => r.connection_id as string);
}

/** Sets fields of one read-model row (rename, new version, soft delete). */
export async function patchRow(
  trx: Db,
  schema: string,
  table: 'workspaces' | 'connector_definitions' | 'connections',
  idColumn: 'workspace_id' | 'definition_id' | 'connection_id',
  id: string,
  values: Record<string, unknown>,
): Promise<void> {
  await trx.withSchema(schema).updateTable(table).set(values).where(idColumn, '=', id).execute();
}

/** How many live actors use a definition. */
export async function countActorsOfDefinition(db: Db, schema: string, definitionId: string): Promise<number> {
  const row = await db
    .withSchema(schema)
    .selectFrom('actors')
    .select(sql<string>`count(*)`.as('n'))
    .where('definition_id', '=', definitionId)
    .where('deleted', '=', false)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Which change a write intent belongs to. */
export type WriteOperation = 'create' | 'update' | 'rollback';

/** Coordinates config is about to write at secrets for an actor, recorded before the call. */
export interface WriteIntent {
  intentId: string;
  workspaceId: string;
  actorId: string;
  operation: WriteOperation;
  coordinates: string[];
  recordedAt: Date;
}

/** Records a write intent in its own transaction, before secrets is called. */
export async function recordWriteIntent(db: Db, schema: string, intent: WriteIntent): Promise<void> {
  await db
    .withSchema(schema)
    .insertInto('secret_write_intents')
    .values({
      intent_id: intent.intentId,
      workspace_id: intent.workspaceId,
      actor_id: intent.actorId,
      operation: intent.operation,
      coordinates: intent.coordinates,
      recorded_at: intent.recordedAt,
    })
    .execute();
}

/**
 * Removes a write intent, in the transaction of the event that references its coordinates; false
 * when the recovery loop took it first (its coordinates are then queued for shredding, so that
 * event must not be recorded).
 */
export async function claimWriteIntent(trx: Db, schema: string, intentId: string): Promise<boolean> {
  const removed = await trx.withSchema(schema).deleteFrom('secret_write_intents').where('intent_id', '=', intentId).executeTakeFirst();
  return Number(removed.numDeletedRows) === 1;
}

/** Removes a write intent whose write secrets refused: nothing was written. */
export async function dropWriteIntent(db: Db, schema: string, intentId: string): Promise<void> {
  await db.withSchema(schema).deleteFrom('secret_write_intents').where('intent_id', '=', intentId).execute();
}

/**
 * Turns write intents into shredding, in one transaction: the given ones (a change that failed
 * after its write), or every one recorded before `olderThan` (a change that never finished), up to
 * `limit`, skipping those another transaction holds. Their coordinates are unreferenced by
 * construction: the event that would reference them removes the intent in its own transaction.
 */
export async function abandonWriteIntents(
  db: Kysely<ConfigDatabase>,
  schema: string,
  which: { intentId: string } | { olderThan: Date; limit: number },
  reason: string,
  now: Date,
): Promise<WriteIntent[]> {
  return db.transaction().execute(async (trx) => {
    let q = trx.withSchema(schema).selectFrom('secret_write_intents').select(['intent_id', 'workspace_id', 'actor_id', 'operation', 'coordinates', 'recorded_at']);
    q = 'intentId' in which ? q.where('intent_id', '=', which.intentId) : q.where('recorded_at', '<', which.olderThan).orderBy('recorded_at').limit(which.limit);
    const rows = await q.forUpdate().skipLocked().execute();
    // Only what this intent's own write made: a retry of the same change may have written the same
    // version numbers after this write failed, and those are live.
    for (const r of rows) await queueShredding(trx, schema, r.workspace_id, r.actor_id, r.coordinates, reason, now, r.intent_id);
    if (rows.length > 0) await trx.withSchema(schema).deleteFrom('secret_write_intents').where('intent_id', 'in', rows.map((r) => r.intent_id)).execute();
    return rows.map((r) => ({
      intentId: r.intent_id,
      workspaceId: r.workspace_id,
      actorId: r.actor_id,
      operation: r.operation,
      coordinates: r.coordinates,
      recordedAt: r.recorded_at,
    }));
  });
}

/** A pending revocation of a deleted actor's OAuth grant, as the sync worker reads it. */
export interface CredentialRevocationRow {
  actor_id: string;
  workspace_id: string;
  partial_config: unknown;
  oauth: unknown;
}

/** Records that a deleted actor's grant is to be revoked before its secrets (queued until `holdUntil`) are shredded. */
export async function recordCredentialRevocation(trx: Db, schema: string, row: CredentialRevocationRow, now: Date, holdUntil: Date): Promise<void> {
  await trx
    .withSchema(schema)
    .insertInto('credential_revocations')
    .values({ ...row, partial_config: JSON.stringify(row.partial_config), oauth: JSON.stringify(row.oauth), requested_at: now, hold_until: holdUntil })
    .onConflict((oc) => oc.column('actor_id').doNothing())
    .execute();
}

/** The pending revocation of an actor, if any. */
export async function findCredentialRevocation(db: Db, schema: string, actorId: string): Promise<CredentialRevocationRow | undefined> {
  return (await db.withSchema(schema).selectFrom('credential_revocations').select(['actor_id', 'workspace_id', 'partial_config', 'oauth']).where('actor_id', '=', actorId).executeTakeFirst()) as
    | CredentialRevocationRow
    | undefined;
}

/** Ends the hold: the actor's queued secrets become due now; false when nothing was pending. */
export async function releaseCredentialRevocation(trx: Db, schema: string, actorId: string, now: Date): Promise<boolean> {
  const gone = await trx.withSchema(schema).deleteFrom('credential_revocations').where('actor_id', '=', actorId).returning('actor_id').executeTakeFirst();
  if (!gone) return false;
  await trx.withSchema(schema).updateTable('secret_shredding').set({ next_attempt_at: now }).where('actor_id', '=', actorId).where('next_attempt_at', '>', now).execute();
  return true;
}
