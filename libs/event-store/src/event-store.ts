import { randomUUID } from 'node:crypto';
import { context, propagation } from '@opentelemetry/api';
import { sql, type Kysely, type Transaction } from 'kysely';
import { CofferError } from '@coffer/contracts';
import { GENESIS_HASH, chainHash, type ChainedContent } from './event-chain';
import { outboxChannel, quotedSchema } from './event-store-schema';

/** A message for the outbox: what the relay publishes after the appending transaction commits. */
export interface OutboxMessage {
  eventId: string;
  subject: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * The messages with the trace context of the span that appends them (W3C `traceparent`, through the
 * registered propagator): the relay and every consumer continue that trace. Without a telemetry SDK
 * nothing is injected and a `traceparent` the caller set stays.
 */
function withTraceContext(messages: OutboxMessage[]): OutboxMessage[] {
  if (messages.length === 0) return messages;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  if (!carrier.traceparent) return messages;
  // The trace context only: baggage is the caller's and has no place in a published event.
  const trace: Record<string, string> = { traceparent: carrier.traceparent, ...(carrier.tracestate && { tracestate: carrier.tracestate }) };
  return messages.map((m) => ({ ...m, headers: { ...m.headers, ...trace } }));
}

/** The stream's current version must equal a number (0: the stream must not exist yet), or `any`. */
export type ExpectedVersion = number | 'any';

/** An event to append. */
export interface NewEvent {
  type: string;
  data: Record<string, unknown>;
  metadata?: Record<string, unknown>;
}

/** An event as stored. */
export interface RecordedEvent {
  /** bigint identity, as a decimal string. */
  globalPosition: string;
  eventId: string;
  streamId: string;
  streamVersion: number;
  type: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  recordedAt: Date;
  /** The xid8 of the appending transaction, as a decimal string. */
  transactionId: string;
  /** The hash of the event before this one in its chain (the chain link). */
  prevHash: string;
  /** sha256 over prevHash and this event's content. */
  hash: string;
}

/**
 * An event as it is appended: everything but what the database assigns on insert. Outbox messages
 * are made from this, so an append can write its events and their messages in one statement.
 */
export type AppendedEvent = Omit<RecordedEvent, 'globalPosition' | 'transactionId'>;

/** What runs inside the append's transaction. */
export interface AppendOptions {
  /** Inline projections: update read models with the recorded events, in the same transaction. */
  project?: (trx: Transaction<any>, recorded: RecordedEvent[]) => Promise<unknown>;
  /** Integration events to publish once the transaction commits (the transactional outbox). */
  outbox?: (appended: AppendedEvent[]) => OutboxMessage[];
}

/** The result of an append. */
export interface AppendResult {
  /** The stream's version after the append. */
  nextExpectedVersion: number;
  recorded: RecordedEvent[];
}

/** One stream's part of a multi-stream append. */
export interface StreamAppend {
  streamId: string;
  expected: ExpectedVersion;
  events: NewEvent[];
}

/** What runs inside a multi-stream append's transaction. */
export interface AppendManyOptions {
  /** Rows per statement (events and outbox); default 100. */
  batchSize?: number;
  /** Inline projections over every recorded event, in append order. */
  project?: (trx: Transaction<any>, recorded: RecordedEvent[]) => Promise<unknown>;
  /** Integration events to publish once the transaction commits. */
  outbox?: (recorded: RecordedEvent[]) => OutboxMessage[];
}

/** A position in the whole log: transaction id first, then global position (see `readAll`). */
export interface LogPosition {
  transactionId: string;
  globalPosition: string;
}

/** The start of the log. */
export const LOG_START: LogPosition = { transactionId: '0', globalPosition: '0' };

/** An append-only event log in one Postgres schema. */
export interface EventStore {
  /** Appends events with an expected version, runs projections and fills the outbox, all in one transaction. */
  append(streamId: string, expected: ExpectedVersion, events: NewEvent[], options?: AppendOptions): Promise<AppendResult>;
  /** The same as `append`, inside a transaction the caller owns (to append to several streams at once). */
  appendInTransaction(
    trx: Transaction<any>,
    streamId: string,
    expected: ExpectedVersion,
    events: NewEvent[],
    options?: AppendOptions,
  ): Promise<AppendResult>;
  /**
   * Appends to several streams at once inside the caller's transaction, each with its expected
   * version, in a bounded number of statements: the stream locks and versions are taken in one
   * statement each, events and outbox rows are inserted `batchSize` rows at a time.
   */
  appendManyInTransaction(trx: Transaction<any>, appends: StreamAppend[], options?: AppendManyOptions): Promise<RecordedEvent[]>;
  /** Every event of one stream in order; `currentVersion` is 0 for a stream that does not exist. */
  readStream(streamId: string): Promise<{ currentVersion: number; events: RecordedEvent[] }>;
  /**
   * Events of every stream after `after`, in (transaction id, global position) order, only from
   * transactions older than every one still running: a transaction that commits late can never
   * slip in behind a position already returned.
   */
  readAll(options?: { after?: LogPosition; limit?: number }): Promise<{ events: RecordedEvent[]; next: LogPosition }>;
}

/** Options of `createEventStore`. */
export interface EventStoreOptions {
  schema: string;
  /**
   * The hash chain a stream's events join: {@link MAIN_CHAIN} (the default) or a name of its own.
   * Appends to one chain take turns on its lock until commit, so a hot stream that needs no order
   * with the rest of the log (an audit trail of reads) gets its own chain and never waits on writes.
   */
  chainOf?: (streamId: string) => string;
}

/** The chain of every stream not given one of its own by `chainOf`. */
export const MAIN_CHAIN = 'main';

// Conflicts an append to a stream of its own chain retries unlocked before it takes the chain's lock.
const OWN_CHAIN_ATTEMPTS = 3;
const UNIQUE_VIOLATION = '23505';


interface EventRow {
  global_position: string;
  event_id: string;
  stream_id: string;
  stream_version: number;
  type: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  recorded_at: Date;
  transaction_id: string;
  prev_hash: string;
  hash: string;
}

function toRecorded(r: EventRow): RecordedEvent {
  return {
    globalPosition: String(r.global_position),
    eventId: r.event_id,
    streamId: r.stream_id,
    streamVersion: Number(r.stream_version),
    type: r.type,
    data: r.data,
    metadata: r.metadata,
    recordedAt: r.recorded_at,
    transactionId: String(r.transaction_id),
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

const EVENT_COLUMNS = sql.raw(
  'global_position::text, event_id::text, stream_id, stream_version, type, data, metadata, recorded_at, transaction_id::text, prev_hash, hash',
);

/** Creates the event store of one schema (migrated by `migrateEventStore`). */
export function createEventStore(db: Kysely<any>, options: EventStoreOptions): EventStore {
  const s = quotedSchema(options.schema);
  const chainOf = options.chainOf ?? (() => MAIN_CHAIN);
  // The main chain keeps the lock key it always had, so replicas of older and newer builds agree.
  const chainLockKey = (chain: string) => (chain === MAIN_CHAIN ? `coffer-chain:${options.schema}` : `coffer-chain:${options.schema}:${chain}`);
  const lastHashOf = async (trx: Transaction<any>, chain: string) =>
    (await sql<{ hash: string }>`select e.hash from ${s}.events e where e.chain = ${chain} order by e.global_position desc limit 1`.execute(trx)).rows[0]?.hash ??
    GENESIS_HASH;
  const channel = outboxChannel(options.schema);

  // Postgres delivers a notification only when (and if) the transaction commits, so the relay
  // wakes as soon as the outbox rows are readable; several in one transaction are folded into one.
  async function notifyRelay(trx: Transaction<any>): Promise<void> {
    await sql`select pg_notify(${channel}, '')`.execute(trx);
  }

  async function appendInTransaction(
    trx: Transaction<any>,
    streamId: string,
    expected: ExpectedVersion,
    events: NewEvent[],
    appendOptions: AppendOptions = {},
  ): Promise<AppendResult> {
    if (!streamId) throw new CofferError('invalid_argument', 'stream id must not be empty');
    if (expected !== 'any' && (!Number.isInteger(expected) || expected < 0)) {
      throw new CofferError('invalid_argument', 'expected version must be a non-negative integer or "any"');
    }
    // Appends take turns on their chain's lock first (always first, so transactions appending to
    // several streams of one chain cannot deadlock), then on the stream.
    const chain = chainOf(streamId);
    let current: number;
    let lastHash: string | undefined;
    if (chain === streamId) {
      // A stream that is its own chain: one lock, and its last event gives both version and hash.
      await sql`select pg_advisory_xact_lock(hashtextextended(${chainLockKey(chain)}, 0))`.execute(trx);
      const last = (
        await sql<{ v: number; hash: string }>`select e.stream_version as v, e.hash from ${s}.events e where e.stream_id = ${streamId} order by e.stream_version desc limit 1`.execute(trx)
      ).rows[0];
      current = last ? Number(last.v) : 0;
      lastHash = last?.hash ?? GENESIS_HASH;
    } else {
      await sql`select pg_advisory_xact_lock(hashtextextended(${chainLockKey(chain)}, 0))`.execute(trx);
      await sql`select pg_advisory_xact_lock(hashtextextended(${`${options.schema}:${streamId}`}, 0))`.execute(trx);
      current = Number(
        (await sql<{ v: number }>`select coalesce(max(stream_version), 0)::int as v from ${s}.events where stream_id = ${streamId}`.execute(trx)).rows[0]!.v,
      );
    }
    if (expected !== 'any' && expected !== current) {
      // Stream ids name internal things (secret coordinates, actor ids): the caller learns only what to do.
      throw new CofferError('version_conflict', `the record was changed concurrently (now at version ${current}, expected ${expected}); read it again`);
    }
    if (events.length === 0) return { nextExpectedVersion: current, recorded: [] };
    let prevHash = lastHash ?? (await lastHashOf(trx, chain));
    const recorded: RecordedEvent[] = [];
    for (const [i, e] of events.entries()) {
      const content = {
        eventId: randomUUID(),
        streamId,
        streamVersion: current + i + 1,
        type: e.type,
        data: e.data,
        metadata: e.metadata ?? {},
        recordedAt: new Date().toISOString(),
      };
      const hash = chainHash(prevHash, content);
      const { rows } = await sql<EventRow>`
        insert into ${s}.events (event_id, stream_id, stream_version, type, data, metadata, recorded_at, chain, prev_hash, hash)
        values (${content.eventId}::uuid, ${streamId}, ${content.streamVersion}, ${e.type}, ${JSON.stringify(content.data)}::jsonb,
          ${JSON.stringify(content.metadata)}::jsonb, ${content.recordedAt}::timestamptz, ${chain}, ${prevHash}, ${hash})
        returning ${EVENT_COLUMNS}`.execute(trx);
      recorded.push(toRecorded(rows[0]!));
      prevHash = hash;
    }
    await appendOptions.project?.(trx, recorded);
    const messages = withTraceContext(appendOptions.outbox?.(recorded) ?? []);
    for (const m of messages) {
      await sql`insert into ${s}.outbox (event_id, subject, headers, body)
        values (${m.eventId}::uuid, ${m.subject}, ${JSON.stringify(m.headers)}::jsonb, ${m.body})`.execute(trx);
    }
    if (messages.length > 0) await notifyRelay(trx);
    return { nextExpectedVersion: current + events.length, recorded };
  }

  async function appendManyInTransaction(trx: Transaction<any>, appends: StreamAppend[], manyOptions: AppendManyOptions = {}): Promise<RecordedEvent[]> {
    const batchSize = manyOptions.batchSize ?? 100;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error('batchSize must be a positive integer');
    const ids = appends.map((a) => a.streamId);
    if (ids.some((id) => !id)) throw new CofferError('invalid_argument', 'stream id must not be empty');
    if (new Set(ids).size !== ids.length) throw new CofferError('invalid_argument', 'a stream appears twice in one append');
    for (const a of appends) {
      if (a.expected !== 'any' && (!Number.isInteger(a.expected) || a.expected < 0)) {
        throw new CofferError('invalid_argument', 'expected version must be a non-negative integer or "any"');
      }
    }
    if (appends.length === 0) return [];
    // Chain locks first (sorted), as in appendInTransaction; then the stream locks in one sorted pass.
    const chains = [...new Set(ids.map(chainOf))].sort();
    for (const chain of chains) await sql`select pg_advisory_xact_lock(hashtextextended(${chainLockKey(chain)}, 0))`.execute(trx);
    const keys = [...ids].sort().map((id) => `${options.schema}:${id}`);
    await sql`select pg_advisory_xact_lock(hashtextextended(s.k, 0)) from (select k from unnest(${keys}::text[]) with ordinality as t(k, n) order by n offset 0) s`.execute(trx);
    const { rows: versions } = await sql<{ stream_id: string; v: number }>`
      select stream_id, max(stream_version)::int as v from ${s}.events where stream_id = any(${ids}::text[]) group by stream_id`.execute(trx);
    const currentOf = new Map(versions.map((r) => [r.stream_id, Number(r.v)]));
    for (const a of appends) {
      const current = currentOf.get(a.streamId) ?? 0;
      if (a.expected !== 'any' && a.expected !== current) {
        throw new CofferError('version_conflict', `stream ${a.streamId} is at version ${current}, not ${a.expected}`);
      }
    }
    const lastHash = new Map<string, string>();
    for (const chain of chains) lastHash.set(chain, await lastHashOf(trx, chain));
    const rows: { content: ChainedContent; chain: string; prevHash: string; hash: string }[] = [];
    const recordedAt = new Date().toISOString();
    for (const a of appends) {
      const current = currentOf.get(a.streamId) ?? 0;
      const chain = chainOf(a.streamId);
      for (const [i, e] of a.events.entries()) {
        const content = { eventId: randomUUID(), streamId: a.streamId, streamVersion: current + i + 1, type: e.type, data: e.data, metadata: e.metadata ?? {}, recordedAt };
        const prevHash = lastHash.get(chain)!;
        const hash = chainHash(prevHash, content);
        rows.push({ content, chain, prevHash, hash });
        lastHash.set(chain, hash);
      }
    }
    const recorded: RecordedEvent[] = [];
    for (let i = 0; i < rows.length; i += batchSize) {
      const values = rows.slice(i, i + batchSize).map(
        (r) => sql`(${r.content.eventId}::uuid, ${r.content.streamId}, ${r.content.streamVersion}, ${r.content.type}, ${JSON.stringify(r.content.data)}::jsonb,
          ${JSON.stringify(r.content.metadata)}::jsonb, ${r.content.recordedAt}::timestamptz, ${r.chain}, ${r.prevHash}, ${r.hash})`,
      );
      // Identity values follow the VALUES order, which is the chain order.
      const { rows: inserted } = await sql<EventRow>`
        insert into ${s}.events (event_id, stream_id, stream_version, type, data, metadata, recorded_at, chain, prev_hash, hash)
        values ${sql.join(values)}
        returning ${EVENT_COLUMNS}`.execute(trx);
      recorded.push(...inserted.map(toRecorded).sort((x, y) => (BigInt(x.globalPosition) < BigInt(y.globalPosition) ? -1 : 1)));
    }
    await manyOptions.project?.(trx, recorded);
    const messages = withTraceContext(manyOptions.outbox?.(recorded) ?? []);
    for (let i = 0; i < messages.length; i += batchSize) {
      const values = messages.slice(i, i + batchSize).map((m) => sql`(${m.eventId}::uuid, ${m.subject}, ${JSON.stringify(m.headers)}::jsonb, ${m.body})`);
      await sql`insert into ${s}.outbox (event_id, subject, headers, body) values ${sql.join(values)}`.execute(trx);
    }
    if (messages.length > 0) await notifyRelay(trx);
    return recorded;
  }

  /**
   * An append to a stream that is its own chain, with no projection, in two statements and no
   * explicit transaction: read the stream's last event, then insert the events, their outbox rows and
   * the relay's notification in one statement (atomic on its own). A concurrent append of the same
   * stream takes the same version first and makes this one fail on the (stream, version) key; it then
   * reads again. Undefined after {@link OWN_CHAIN_ATTEMPTS} such conflicts: the locked path takes over.
   */
  async function appendOwnChain(streamId: string, expected: ExpectedVersion, events: NewEvent[], outbox: AppendOptions['outbox']): Promise<AppendResult | undefined> {
    for (let attempt = 1; attempt <= OWN_CHAIN_ATTEMPTS; attempt++) {
      const last = (
        await sql<{ v: number; hash: string }>`select e.stream_version as v, e.hash from ${s}.events e where e.stream_id = ${streamId} order by e.stream_version desc limit 1`.execute(db)
      ).rows[0];
      const current = last ? Number(last.v) : 0;
      if (expected !== 'any' && expected !== current) {
        throw new CofferError('version_conflict', `the record was changed concurrently (now at version ${current}, expected ${expected}); read it again`);
      }
      let prevHash = last?.hash ?? GENESIS_HASH;
      const recordedAt = new Date();
      const appended: AppendedEvent[] = events.map((e, i) => {
        const content = { eventId: randomUUID(), streamId, streamVersion: current + i + 1, type: e.type, data: e.data, metadata: e.metadata ?? {}, recordedAt: recordedAt.toISOString() };
        const hash = chainHash(prevHash, content);
        const event = { ...content, recordedAt, prevHash, hash };
        prevHash = hash;
        return event;
      });
      const messages = withTraceContext(outbox?.(appended) ?? []);
      const eventValues = appended.map(
        (e) => sql`(${e.eventId}::uuid, ${streamId}, ${e.streamVersion}, ${e.type}, ${JSON.stringify(e.data)}::jsonb,
          ${JSON.stringify(e.metadata)}::jsonb, ${e.recordedAt.toISOString()}::timestamptz, ${streamId}, ${e.prevHash}, ${e.hash})`,
      );
      const outboxValues = messages.map((m) => sql`(${m.eventId}::uuid, ${m.subject}, ${JSON.stringify(m.headers)}::jsonb, ${m.body})`);
      try {
        // Data-modifying CTEs always run; the notification's CTE runs because the result reads it.
        const { rows } = await sql<EventRow & { notified: number }>`
          with inserted as (
            insert into ${s}.events (event_id, stream_id, stream_version, type, data, metadata, recorded_at, chain, prev_hash, hash)
            values ${sql.join(eventValues)}
            returning ${EVENT_COLUMNS}
          )${
            messages.length > 0
              ? sql`, queued as (insert into ${s}.outbox (event_id, subject, headers, body) values ${sql.join(outboxValues)}),
              notified as (select pg_notify(${channel}, '') as n)`
              : sql``
          }
          select inserted.*${messages.length > 0 ? sql`, (select count(*) from notified)::int as notified` : sql``} from inserted order by stream_version`.execute(db);
        return { nextExpectedVersion: current + events.length, recorded: rows.map(toRecorded) };
      } catch (err) {
        if ((err as { code?: string }).code !== UNIQUE_VIOLATION) throw err;
      }
    }
    return undefined;
  }

  return {
    appendInTransaction,
    appendManyInTransaction,
    async append(streamId, expected, events, appendOptions = {}) {
      if (streamId && events.length > 0 && !appendOptions.project && chainOf(streamId) === streamId && (expected === 'any' || (Number.isInteger(expected) && expected >= 0))) {
        const done = await appendOwnChain(streamId, expected, events, appendOptions.outbox);
        if (done) return done;
      }
      return db.transaction().execute((trx) => appendInTransaction(trx, streamId, expected, events, appendOptions));
    },
    async readStream(streamId) {
      const { rows } = await sql<EventRow>`select ${EVENT_COLUMNS} from ${s}.events e where e.stream_id = ${streamId} order by e.stream_version`.execute(db);
      const events = rows.map(toRecorded);
      return { currentVersion: events.at(-1)?.streamVersion ?? 0, events };
    },
    async readAll({ after = LOG_START, limit = 1000 } = {}) {
      const { rows } = await sql<EventRow>`
        select ${EVENT_COLUMNS} from ${s}.events e
        where e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          and (e.transaction_id, e.global_position) > (${after.transactionId}::xid8, ${after.globalPosition}::bigint)
        order by e.transaction_id, e.global_position
        limit ${limit}`.execute(db);
      const events = rows.map(toRecorded);
      const last = events.at(-1);
      return { events, next: last ? { transactionId: last.transactionId, globalPosition: last.globalPosition } : after };
    },
  };
}
