import type { ColumnType, Generated } from 'kysely';

/** A `bigint` column: pg returns it as a string; written as a number or a string. */
type BigIntColumn = ColumnType<string, number | string | bigint, number | string | bigint>;

/** An `xid8` column (a transaction id): read as a string. */
type TransactionIdColumn = ColumnType<string, string | undefined, string>;

/** `events`: the append-only log (a trigger refuses UPDATE, DELETE and TRUNCATE). */
export interface EventsTable {
  global_position: ColumnType<string, never, never>;
  event_id: string;
  stream_id: string;
  stream_version: number;
  type: string;
  data: unknown;
  metadata: ColumnType<unknown, unknown | undefined, never>;
  recorded_at: ColumnType<Date, Date | string | undefined, never>;
  transaction_id: ColumnType<string, never, never>;
  prev_hash: string;
  hash: string;
  chain: Generated<string>;
}

/** `outbox`: messages to publish, written in the transaction of the events they carry. */
export interface OutboxTable {
  position: ColumnType<string, never, never>;
  event_id: string;
  subject: string;
  headers: unknown;
  body: string;
  transaction_id: ColumnType<string, never, never>;
  created_at: Generated<Date>;
}

/** `outbox_checkpoints`: how far each relay has published. */
export interface OutboxCheckpointsTable {
  name: string;
  transaction_id: TransactionIdColumn;
  position: BigIntColumn;
  updated_at: Generated<Date>;
}

/** `inbox`: the events each consumer has handled (idempotent consumption). */
export interface InboxTable {
  consumer: string;
  event_id: string;
  handled_at: Generated<Date>;
}

/** The event store's tables, in every service's own schema; each service's `Database` extends it. */
export interface EventStoreDatabase {
  events: EventsTable;
  outbox: OutboxTable;
  outbox_checkpoints: OutboxCheckpointsTable;
  inbox: InboxTable;
}
