import { createHash } from 'node:crypto';
import { sql, type Kysely, type QueryExecutorProvider, type RawBuilder } from 'kysely';
import type { EventStoreDatabase } from './event-store-database';

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** @internal The schema as a quoted SQL identifier; refuses anything but a lowercase identifier. */
export function quotedSchema(schema: string): RawBuilder<unknown> {
  if (!IDENTIFIER.test(schema)) throw new Error(`schema must be a lowercase SQL identifier, got ${JSON.stringify(schema)}`);
  return sql.id(schema);
}

/**
 * @internal The Postgres notification channel on which appends to `schema`'s outbox wake its relay.
 * Channel names are at most 63 bytes; a schema name too long to fit is replaced by its hash.
 */
export function outboxChannel(schema: string): string {
  const channel = `coffer_outbox_${schema}`;
  return channel.length <= 63 ? channel : `coffer_outbox_${createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
}

/**
 * Creates (idempotently) the event store's tables in `schema`, within the caller's transaction:
 * `events` (immutable: a trigger refuses UPDATE, DELETE and TRUNCATE, and those privileges are
 * revoked), `outbox`, `outbox_checkpoints` and `inbox`. It is the event store's part of each
 * service's migration 0001; `if not exists` throughout, so it adopts a schema that start-up code of
 * earlier releases made. It takes the lock those releases took, so one of their replicas starting
 * meanwhile waits.
 */
export async function createEventStoreTables(trx: QueryExecutorProvider, schema: string): Promise<void> {
  const s = quotedSchema(schema);
  await sql`select pg_advisory_xact_lock(hashtextextended(${`coffer-migrate:${schema}`}, 0))`.execute(trx);
  await sql`create schema if not exists ${s}`.execute(trx);
  await sql`create table if not exists ${s}.events (
    global_position bigint generated always as identity primary key,
    event_id uuid not null unique,
    stream_id text not null,
    stream_version integer not null check (stream_version > 0),
    type text not null,
    data jsonb not null,
    metadata jsonb not null default '{}'::jsonb,
    recorded_at timestamptz not null default now(),
    transaction_id xid8 not null default pg_current_xact_id(),
    prev_hash text not null,
    hash text not null,
    unique (stream_id, stream_version)
  )`.execute(trx);
  await sql`create index if not exists events_transaction_order on ${s}.events (transaction_id, global_position)`.execute(trx);
  // Logs written before chains existed were one chain: every old event belongs to the main one.
  await sql`alter table ${s}.events add column if not exists chain text not null default 'main'`.execute(trx);
  await sql`create index if not exists events_chain_order on ${s}.events (chain, global_position)`.execute(trx);
  // The body keeps the text earlier releases wrote, whitespace included: adopting their schema changes nothing.
  await sql`create or replace function ${s}.refuse_event_change() returns trigger language plpgsql as $$
      begin
        raise exception 'events are immutable: % refused on %.%', tg_op, tg_table_schema, tg_table_name
          using errcode = 'insufficient_privilege';
      end
    $$`.execute(trx);
  await sql`create or replace trigger events_immutable before update or delete on ${s}.events
    for each row execute function ${s}.refuse_event_change()`.execute(trx);
  await sql`create or replace trigger events_no_truncate before truncate on ${s}.events
    for each statement execute function ${s}.refuse_event_change()`.execute(trx);
  await sql`revoke update, delete, truncate on ${s}.events from public`.execute(trx);
  await sql`create table if not exists ${s}.outbox (
    position bigint generated always as identity primary key,
    event_id uuid not null unique,
    subject text not null,
    headers jsonb not null,
    body text not null,
    transaction_id xid8 not null default pg_current_xact_id(),
    created_at timestamptz not null default now()
  )`.execute(trx);
  await sql`create index if not exists outbox_transaction_order on ${s}.outbox (transaction_id, position)`.execute(trx);
  await sql`create table if not exists ${s}.outbox_checkpoints (
    name text primary key,
    transaction_id xid8 not null,
    position bigint not null,
    updated_at timestamptz not null default now()
  )`.execute(trx);
  await sql`create table if not exists ${s}.inbox (
    consumer text not null,
    event_id text not null,
    handled_at timestamptz not null default now(),
    primary key (consumer, event_id)
  )`.execute(trx);
}

/**
 * Creates the event store's tables in `schema` in a transaction of its own (idempotent), for a
 * schema that only holds an event store; a service's schema gets them from its migrations instead.
 */
export async function migrateEventStore(db: Kysely<EventStoreDatabase>, schema: string): Promise<void> {
  await db.transaction().execute((trx) => createEventStoreTables(trx, schema));
}
