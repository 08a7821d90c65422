import { randomUUID } from 'node:crypto';
import { context, propagation } from '@opentelemetry/api';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { EventStoreDatabase } from './event-store-database';
import { CofferError } from '@coffer/contracts';
import { GENESIS_HASH, chainHash } from './event-chain';
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

/** What runs inside the append's transaction; `DB` is the tables of the service's schema, for its projections. */
export interface AppendOptions<DB = EventStoreDatabase> {
  /** Inline projections: update read models with the recorded events, in the same transaction. */
  project?: (trx: Transaction<DB>, recorded: RecordedEvent[]) => Promise<unknown>;
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
export interface AppendManyOptions<DB = EventStoreDatabase> {
  /** Rows per statement (events and outbox); default 100. */
  batchSize?: number;
  /** Inline projections over every recorded event, in append order. */
  project?: (trx: Transaction<DB>, recorded: RecordedEvent[]) => Promise<unknown>;
  /** Integration events to publish once the transaction commits. */
  outbox?: (appended: AppendedEvent[]) => OutboxMessage[];
}

/** A position in the whole log: transaction id first, then global position (see `readAll`). */
export interface LogPosition {
  transactionId: string;
  globalPosition: string;
}

/** The start of the log. */
export const LOG_START: LogPosition = { transactionId: '0', globalPosition: '0' };

/** An append-only event log in one Postgres schema; `DB` is the tables of that schema, which projections see. */
export interface EventStore<DB = EventStoreDatabase> {
  /** Appends events with an expected version, runs projections and fills the outbox, all in one transaction. */
  append(streamId: string, expected: ExpectedVersion, events: NewEvent[], options?: AppendOptions<DB>): Promise<AppendResult>;
  /** The same as `append`, inside a transaction the caller owns (to append to several streams at once). */
  appendInTransaction(
    trx: Transaction<DB>,
    streamId: string,
    expected: ExpectedVersion,
    events: NewEvent[],
    options?: AppendOptions<DB>,
  ): Promise<AppendResult>;
  /**
   * Appends to several streams at once inside the caller's transaction, each with its expected
   * version, in a bounded number of statements: the stream locks and versions are taken in one
   * statement each, events and outbox rows are inserted `batchSize` rows at a time.
   */
  appendManyInTransaction(trx: Transaction<DB>, appends: StreamAppend[], options?: AppendManyOptions<DB>): Promise<RecordedEvent[]>;
  /**
   * Appends events to several streams at their current versions, all or nothing. When each stream
   * is its own chain (`chainOf(id) === id`), without a transaction or a lock: one statement reads every stream's head, one inserts every event, its
   * outbox row and the relay's wake-up. This is the group commit of concurrent audit appends (one
   * round trip and one commit for a batch of calls). A concurrent append to one of the streams makes
   * it read again; after a few such conflicts (and for streams of a shared chain) it takes the
   * locks in a transaction, as `appendManyInTransaction`.
   */
  appendToOwnChains(appends: { streamId: string; events: NewEvent[] }[], options?: Pick<AppendManyOptions<DB>, 'outbox'>): Promise<RecordedEvent[]>;
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
// Conflicts a locked append with `any` expected versions retries (only unlocked appends can win against it).
const LOCKED_ATTEMPTS = 10;
// Events (and outbox rows) per insert statement, unless an append says otherwise.
const DEFAULT_BATCH_SIZE = 100;
const UNIQUE_VIOLATION = '23505';
// Heads of own-chain streams kept in memory by `appendToOwnChains` (one per workspace's audit trail, say).
const OWN_HEADS_KEPT = 10_000;

interface StreamHead {
  version: number;
  hash: string;
}


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
export function createEventStore<DB extends EventStoreDatabase = EventStoreDatabase>(db: Kysely<DB>, options: EventStoreOptions): EventStore<DB> {
  const s = quotedSchema(options.schema);
  const chainOf = options.chainOf ?? (() => MAIN_CHAIN);
  // The main chain keeps the lock key it always had, so replicas of older and newer builds agree.
  const chainLockKey = (chain: string) => (chain === MAIN_CHAIN ? `coffer-chain:${options.schema}` : `coffer-chain:${options.schema}:${chain}`);
  const channel = outboxChannel(options.schema);
  const streamLockKey = (streamId: string) => `${options.schema}:${streamId}`;

  /**
   * Takes the advisory locks of `keys` in their order, in one statement (the subquery keeps the
   * order: chain locks first, always, so transactions appending to several streams cannot deadlock).
   */
  async function lockInOrder(trx: Transaction<DB>, keys: string[]): Promise<void> {
    await sql`select pg_advisory_xact_lock(hashtextextended(s.k, 0)) from (select k from unnest(${keys}::text[]) with ordinality as t(k, n) order by n offset 0) s`.execute(trx);
  }

  /** The current version of each stream and the last hash of each chain, in one statement (after the locks). */
  async function readHeads(trx: Transaction<DB>, streamIds: string[], chains: string[]): Promise<{ versions: Map<string, number>; hashes: Map<string, string> }> {
    const { rows } = await sql<{ kind: 'v' | 'h'; key: string; value: string | null }>`
      select 'v' as kind, stream_id as key, max(stream_version)::text as value from ${s}.events where stream_id = any(${streamIds}::text[]) group by stream_id
      union all
      select 'h', c.chain, (select e.hash from ${s}.events e where e.chain = c.chain order by e.global_position desc limit 1) from unnest(${chains}::text[]) as c(chain)`.execute(trx);
    const versions = new Map<string, number>();
    const hashes = new Map<string, string>();
    for (const r of rows) {
      if (r.kind === 'v') versions.set(r.key, Number(r.value));
      else hashes.set(r.key, r.value ?? GENESIS_HASH);
    }
    return { versions, hashes };
  }

  /**
   * Inserts chained events and their outbox rows, `batchSize` rows of each per statement, and wakes
   * the relay in the last one: one statement for an append of up to `batchSize` events. Postgres
   * delivers the notification only when (and if) the transaction commits, so the relay wakes as soon
   * as the outbox rows are readable; several in one transaction are folded into one.
   */
  async function insertChained(trx: Transaction<DB> | Kysely<DB>, events: (AppendedEvent & { chain: string })[], messages: OutboxMessage[], batchSize: number): Promise<RecordedEvent[]> {
    const recorded: RecordedEvent[] = [];
    const statements = Math.max(1, Math.ceil(events.length / batchSize), Math.ceil(messages.length / batchSize));
    for (let k = 0; k < statements; k++) {
      const batch = events.slice(k * batchSize, (k + 1) * batchSize);
      const queued = messages.slice(k * batchSize, (k + 1) * batchSize);
      // Each table's rows travel as one JSON array, read back in order by json_to_recordset: the
      // statement's text is the same for any number of rows, and the rows cost one JSON.stringify
      // instead of ten bound parameters each.
      const eventRows = JSON.stringify(
        batch.map((e) => ({
          event_id: e.eventId,
          stream_id: e.streamId,
          stream_version: e.streamVersion,
          type: e.type,
          data: e.data,
          metadata: e.metadata,
          recorded_at: e.recordedAt.toISOString(),
          chain: e.chain,
          prev_hash: e.prevHash,
          hash: e.hash,
        })),
      );
      const outboxRows = JSON.stringify(queued.map((m) => ({ event_id: m.eventId, subject: m.subject, headers: m.headers, body: m.body })));
      const notify = k === statements - 1 && messages.length > 0;
      const parts = [
        batch.length > 0
          ? sql`inserted as (insert into ${s}.events (event_id, stream_id, stream_version, type, data, metadata, recorded_at, chain, prev_hash, hash)
            select r.event_id, r.stream_id, r.stream_version, r.type, r.data, r.metadata, r.recorded_at, r.chain, r.prev_hash, r.hash
            from rows from (json_to_recordset(${eventRows}::json) as (event_id uuid, stream_id text, stream_version integer, type text, data jsonb,
              metadata jsonb, recorded_at timestamptz, chain text, prev_hash text, hash text)) with ordinality as r(event_id, stream_id, stream_version, type, data, metadata, recorded_at, chain, prev_hash, hash, n)
            order by r.n
            returning event_id::text, global_position::text, transaction_id::text)`
          : sql`inserted as (select event_id::text, global_position::text, transaction_id::text from ${s}.events where false)`,
        ...(queued.length > 0
          ? [
              sql`queued as (insert into ${s}.outbox (event_id, subject, headers, body)
                select r.event_id, r.subject, r.headers, r.body
                from rows from (json_to_recordset(${outboxRows}::json) as (event_id uuid, subject text, headers jsonb, body text)) with ordinality as r(event_id, subject, headers, body, n)
                order by r.n)`,
            ]
          : []),
        ...(notify ? [sql`notified as (select pg_notify(${channel}, '') as n)`] : []),
      ];
      // Data-modifying CTEs always run; the notification's CTE runs because the result reads it.
      // Only what the database assigns comes back; the rest is what was inserted (no JSON read back).
      const { rows } = await sql<{ event_id: string; global_position: string; transaction_id: string }>`with ${sql.join(parts)}
        select inserted.*${notify ? sql`, (select count(*) from notified)::int as notified` : sql``} from inserted`.execute(trx);
      const assigned = new Map(rows.map((r) => [r.event_id, r]));
      // Identity values follow the rows' order (`order by r.n`), which is the chain order.
      for (const e of batch) {
        const r = assigned.get(e.eventId);
        if (!r) throw new Error(`event ${e.eventId} was not inserted`);
        recorded.push({
          globalPosition: r.global_position,
          eventId: e.eventId,
          streamId: e.streamId,
          streamVersion: e.streamVersion,
          type: e.type,
          data: e.data,
          metadata: e.metadata,
          recordedAt: e.recordedAt,
          transactionId: r.transaction_id,
          prevHash: e.prevHash,
          hash: e.hash,
        });
      }
    }
    return recorded;
  }

  /** Chains `events` of one stream after `prevHash`, numbered after `current`. */
  function chained(streamId: string, chain: string, current: number, events: NewEvent[], prevHash: string, recordedAt: Date): (AppendedEvent & { chain: string })[] {
    return events.map((e, i) => {
      const content = { eventId: randomUUID(), streamId, streamVersion: current + i + 1, type: e.type, data: e.data, metadata: e.metadata ?? {}, recordedAt: recordedAt.toISOString() };
      const hash = chainHash(prevHash, content);
      const event = { ...content, recordedAt, chain, prevHash, hash };
      prevHash = hash;
      return event;
    });
  }

  async function appendInTransaction(
    trx: Transaction<DB>,
    streamId: string,
    expected: ExpectedVersion,
    events: NewEvent[],
    appendOptions: AppendOptions<DB> = {},
  ): Promise<AppendResult> {
    if (!streamId) throw new CofferError('invalid_argument', 'stream id must not be empty');
    if (expected !== 'any' && (!Number.isInteger(expected) || expected < 0)) {
      throw new CofferError('invalid_argument', 'expected version must be a non-negative integer or "any"');
    }
    // Appends take turns on their chain's lock first, then on the stream (a stream that is its own
    // chain needs only the one). Then one read for the version and the chain's last hash, and one
    // statement for the events, the outbox rows and the relay's wake-up.
    const chain = chainOf(streamId);
    await lockInOrder(trx, chain === streamId ? [chainLockKey(chain)] : [chainLockKey(chain), streamLockKey(streamId)]);
    const heads = await readHeads(trx, [streamId], [chain]);
    const current = heads.versions.get(streamId) ?? 0;
    if (expected !== 'any' && expected !== current) {
      // Stream ids name internal things (secret coordinates, actor ids): the caller learns only what to do.
      throw new CofferError('version_conflict', `the record was changed concurrently (now at version ${current}, expected ${expected}); read it again`);
    }
    if (events.length === 0) return { nextExpectedVersion: current, recorded: [] };
    const appended = chained(streamId, chain, current, events, heads.hashes.get(chain) ?? GENESIS_HASH, new Date());
    const recorded = await insertChained(trx, appended, withTraceContext(appendOptions.outbox?.(appended) ?? []), DEFAULT_BATCH_SIZE);
    await appendOptions.project?.(trx, recorded);
    return { nextExpectedVersion: current + events.length, recorded };
  }

  async function appendManyInTransaction(trx: Transaction<DB>, appends: StreamAppend[], manyOptions: AppendManyOptions<DB> = {}): Promise<RecordedEvent[]> {
    const batchSize = manyOptions.batchSize ?? DEFAULT_BATCH_SIZE;
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
    // Chain locks first (sorted), as in appendInTransaction; then the stream locks, sorted; one statement.
    const chains = [...new Set(ids.map(chainOf))].sort();
    await lockInOrder(trx, [...chains.map(chainLockKey), ...[...ids].sort().map(streamLockKey)]);
    const heads = await readHeads(trx, ids, chains);
    for (const a of appends) {
      const current = heads.versions.get(a.streamId) ?? 0;
      if (a.expected !== 'any' && a.expected !== current) {
        throw new CofferError('version_conflict', `the record was changed concurrently (now at version ${current}, expected ${a.expected}); read it again`);
      }
    }
    const recordedAt = new Date();
    const appended: (AppendedEvent & { chain: string })[] = [];
    for (const a of appends) {
      const chain = chainOf(a.streamId);
      const events = chained(a.streamId, chain, heads.versions.get(a.streamId) ?? 0, a.events, heads.hashes.get(chain) ?? GENESIS_HASH, recordedAt);
      if (events.length > 0) heads.hashes.set(chain, events.at(-1)!.hash);
      appended.push(...events);
    }
    const recorded = await insertChained(trx, appended, withTraceContext(manyOptions.outbox?.(appended) ?? []), batchSize);
    await manyOptions.project?.(trx, recorded);
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
      const appended = chained(streamId, streamId, current, events, last?.hash ?? GENESIS_HASH, new Date());
      try {
        // Up to DEFAULT_BATCH_SIZE events and messages this is one statement, atomic without a transaction.
        if (appended.length > DEFAULT_BATCH_SIZE) return undefined;
        const messages = withTraceContext(outbox?.(appended) ?? []);
        if (messages.length > DEFAULT_BATCH_SIZE) return undefined;
        const recorded = await insertChained(db, appended, messages, DEFAULT_BATCH_SIZE);
        return { nextExpectedVersion: current + events.length, recorded };
      } catch (err) {
        if ((err as { code?: string }).code !== UNIQUE_VIOLATION) throw err;
      }
    }
    return undefined;
  }

  /**
   * The last (version, hash) of streams of their own chain that this store appended to through
   * `appendToOwnChains`, most recent last, at most OWN_HEADS_KEPT: the next append of such a stream
   * needs no read. Only ever behind the log, never ahead: it is set after an insert succeeded.
   */
  const ownHeads = new Map<string, StreamHead>();
  function rememberHead(streamId: string, head: StreamHead): void {
    ownHeads.delete(streamId);
    ownHeads.set(streamId, head);
    if (ownHeads.size > OWN_HEADS_KEPT) ownHeads.delete(ownHeads.keys().next().value!);
  }

  async function appendToOwnChains(appends: { streamId: string; events: NewEvent[] }[], manyOptions: Pick<AppendManyOptions<DB>, 'outbox'> = {}): Promise<RecordedEvent[]> {
    const byStream = new Map<string, NewEvent[]>();
    for (const a of appends) {
      if (!a.streamId) throw new CofferError('invalid_argument', 'stream id must not be empty');
      if (a.events.length > 0) byStream.set(a.streamId, [...(byStream.get(a.streamId) ?? []), ...a.events]);
    }
    if (byStream.size === 0) return [];
    const ids = [...byStream.keys()];
    const total = [...byStream.values()].reduce((n, e) => n + e.length, 0);
    // A stream that joins another chain must wait for that chain's lock: the locked path below.
    if (total <= DEFAULT_BATCH_SIZE && ids.every((id) => chainOf(id) === id)) {
      for (let attempt = 1; attempt <= OWN_CHAIN_ATTEMPTS; attempt++) {
        // Heads this store appended last are taken from memory; only the others are read.
        const heads = new Map<string, StreamHead>();
        const unknown: string[] = [];
        for (const id of ids) {
          const known = attempt === 1 ? ownHeads.get(id) : undefined;
          if (known) heads.set(id, known);
          else unknown.push(id);
        }
        if (unknown.length > 0) {
          const { rows } = await sql<{ stream_id: string; v: number; hash: string }>`
            select c.id as stream_id, h.v, h.hash from unnest(${unknown}::text[]) as c(id)
            cross join lateral (select e.stream_version as v, e.hash from ${s}.events e where e.stream_id = c.id order by e.stream_version desc limit 1) h`.execute(db);
          for (const r of rows) heads.set(r.stream_id, { version: Number(r.v), hash: r.hash });
        }
        const recordedAt = new Date();
        const appended = ids.flatMap((id) => chained(id, id, heads.get(id)?.version ?? 0, byStream.get(id)!, heads.get(id)?.hash ?? GENESIS_HASH, recordedAt));
        const messages = withTraceContext(manyOptions.outbox?.(appended) ?? []);
        if (messages.length > DEFAULT_BATCH_SIZE) break;
        try {
          // One statement: atomic without a transaction.
          const recorded = await insertChained(db, appended, messages, DEFAULT_BATCH_SIZE);
          for (const e of recorded) rememberHead(e.streamId, { version: e.streamVersion, hash: e.hash });
          return recorded;
        } catch (err) {
          // A head from memory may be behind (another replica, or the locked path, appended since):
          // the (stream, version) key refuses the insert and the next attempt reads every head.
          for (const id of ids) ownHeads.delete(id);
          if ((err as { code?: string }).code !== UNIQUE_VIOLATION) throw err;
        }
      }
    }
    // Under the locks, an unlocked append (of this path or `append`'s) may still take a version first:
    // with `any` expected versions, read again and retry.
    for (let attempt = 1; ; attempt++) {
      try {
        return await db.transaction().execute((trx) =>
          appendManyInTransaction(trx, ids.map((streamId) => ({ streamId, expected: 'any' as const, events: byStream.get(streamId)! })), { outbox: manyOptions.outbox }),
        );
      } catch (err) {
        if ((err as { code?: string }).code !== UNIQUE_VIOLATION || attempt >= LOCKED_ATTEMPTS) throw err;
      }
    }
  }

  return {
    appendInTransaction,
    appendManyInTransaction,
    appendToOwnChains,
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
