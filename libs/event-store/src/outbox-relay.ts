import { performance } from 'node:perf_hooks';
import { sql, type Kysely } from 'kysely';
import type { EventStoreDatabase } from './event-store-database';
import type pg from 'pg';
import { outboxChannel, quotedSchema } from './event-store-schema';
import type { OutboxMessage } from './event-store';
import { startOutboxListener, type OutboxListener } from './outbox-listener';

/** Options of `createOutboxRelay`. */
export interface OutboxRelayOptions {
  schema: string;
  /** Checkpoint name; replicas of one service share it and take turns (one publishes at a time). */
  name: string;
  /**
   * Publishes one message and resolves only after the broker acknowledged it. With `maxInFlight`
   * above 1 it must honour `previousEventId`: the broker refuses the message unless the last one it
   * stored is that event (JetStream: `Nats-Expected-Last-Msg-Id`), so a message lost in flight is
   * never overtaken by the one sent after it.
   */
  publish: (message: OutboxMessage, previousEventId?: string) => Promise<void>;
  /** Called when a round fails (Postgres or the broker); the relay retries from the failed message after a back-off. */
  onError?: (err: unknown) => void;
  /**
   * A new, unconnected client for the relay's own LISTEN connection: appends notify on commit and
   * the relay wakes at once. Without it the relay only polls, every `fallbackPollIntervalMs`.
   */
  listen?: () => pg.Client;
  /** Called when the LISTEN connection cannot be opened or is lost; the relay polls every `fallbackPollIntervalMs` until it is back. */
  onListenError?: (err: unknown) => void;
  /** Called when LISTEN is in place again after `onListenError`. */
  onListenRestored?: () => void;
  /** The backstop poll while LISTEN is in place (default 1 s). */
  pollIntervalMs?: number;
  /** The poll without a LISTEN connection: none configured, or down (default 100 ms). */
  fallbackPollIntervalMs?: number;
  batchSize?: number;
  /**
   * Messages sent before their acks are awaited (default 1: one at a time). Pipelining turns a
   * round's cost from one broker round trip per message into about one per round.
   */
  maxInFlight?: number;
  /** First pause after a failure (default 250 ms); doubles per consecutive failure up to `maxRetryDelayMs`. */
  retryDelayMs?: number;
  /** Longest pause between retries (default 5 s). */
  maxRetryDelayMs?: number;
}

/** A running relay. */
export interface OutboxRelay {
  /** Starts relaying in the background (and the LISTEN connection, when configured). */
  start(): void;
  /** Publishes what is ready now, once; returns how many messages were published. */
  relayOnce(): Promise<number>;
  /** Whether the LISTEN connection is in place now (false without one, or while it reconnects). */
  listening(): boolean;
  /** Stops relaying, waits for the round in flight and closes the LISTEN connection. */
  stop(): Promise<void>;
}

interface OutboxRow {
  position: string;
  event_id: string;
  subject: string;
  headers: Record<string, string>;
  body: string;
  transaction_id: string;
  ready: boolean;
}

interface Round {
  published: number;
  /** Whether more may be ready at once: the last batch was full, or a commit was notified meanwhile. */
  more: boolean;
  /** Committed rows seen that wait for an older transaction still running. */
  heldBack: boolean;
}

/** After a round saw committed rows held back by an older open transaction: the first recheck, then doubling up to the most. */
const HELD_BACK_FIRST_RECHECK_MS = 5;
const HELD_BACK_MAX_RECHECK_MS = 100;
/** How long one round may go on publishing batch after batch before it commits its checkpoint. */
const MAX_ROUND_MS = 100;

/**
 * The outbox relay: reads outbox rows in (transaction id, position) order, only from transactions
 * older than every running one (so a late commit is never skipped), publishes each, and moves the
 * checkpoint only past messages the broker acknowledged. A crash between ack and checkpoint
 * publishes again; the broker's duplicate window (`Nats-Msg-Id` = event id) drops the copy.
 *
 * It wakes on the notification each append sends on commit, and polls as a backstop; while the
 * LISTEN connection is down it polls at the fallback interval. The loop never ends on an error: it
 * reports it, backs off and tries again.
 */
export function createOutboxRelay(db: Kysely<EventStoreDatabase>, options: OutboxRelayOptions): OutboxRelay {
  const s = quotedSchema(options.schema);
  const pollMs = options.pollIntervalMs ?? 1000;
  const fallbackPollMs = options.fallbackPollIntervalMs ?? 100;
  const batchSize = options.batchSize ?? 100;
  const maxInFlight = options.maxInFlight ?? 1;
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new Error('maxInFlight must be a positive integer');
  const retryMs = options.retryDelayMs ?? 250;
  const maxRetryMs = options.maxRetryDelayMs ?? 5000;
  let running = false;
  let loop: Promise<void> | undefined;
  let listener: OutboxListener | undefined;
  let checkpointExists = false;
  // Set by a notification; a round in flight may have read before that commit, so another follows.
  let notified = false;
  let interruptSleep: (() => void) | undefined;

  async function round(): Promise<Round> {
    if (!checkpointExists) {
      await sql`insert into ${s}.outbox_checkpoints (name, transaction_id, position) values (${options.name}, '0'::xid8, 0)
        on conflict (name) do nothing`.execute(db);
      checkpointExists = true;
    }
    const outcome = await db.transaction().execute(async (trx) => {
      const lock = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(hashtextextended(${`coffer-outbox:${options.schema}:${options.name}`}, 0)) as locked`.execute(trx);
      if (!lock.rows[0]!.locked) return { published: 0, more: false, heldBack: false, failure: undefined as unknown };
      const began = performance.now();
      let last: OutboxRow | undefined;
      let count = 0;
      let failure: unknown;
      let heldBack = false;
      let more = false;
      // While commits keep coming, the round keeps going in the same transaction, which writes
      // nothing until its checkpoint at the end: each batch then costs one query and the broker's
      // acks instead of a transaction of its own. Bounded in time, so the checkpoint (and the turn
      // of other replicas) comes at least every MAX_ROUND_MS.
      for (;;) {
        notified = false;
        // The first batch reads the checkpoint in the statement after the lock's, so it is the last
        // one committed (as a row subquery it becomes an index condition); later batches continue
        // after what this round published. Rows from transactions at or after the snapshot's xmin
        // are committed (we see them) but an older transaction may still commit rows that sort
        // before them: they wait, and are only counted so the relay looks again soon. They sort
        // after every ready row.
        const after = last
          ? sql`(${last.transaction_id}::xid8, ${last.position}::bigint)`
          : sql`(select cp.transaction_id, cp.position from ${s}.outbox_checkpoints cp where cp.name = ${options.name})`;
        // The batch comes back as one JSON array (one parse) rather than a row each.
        const { rows: batch } = await sql<{ rows: string | null }>`
          select json_agg(json_build_object('position', b.position::text, 'event_id', b.event_id::text, 'subject', b.subject, 'headers', b.headers,
              'body', b.body, 'transaction_id', b.transaction_id::text, 'ready', b.ready) order by b.transaction_id, b.position)::text as rows
          from (
            select o.position, o.event_id, o.subject, o.headers, o.body, o.transaction_id,
              o.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) as ready
            from ${s}.outbox o
            where (o.transaction_id, o.position) > ${after}
            order by o.transaction_id, o.position
            limit ${batchSize}) b`.execute(trx);
        const rows = batch[0]?.rows ? (JSON.parse(batch[0].rows) as OutboxRow[]) : [];
        const ready = rows.filter((r) => r.ready);
        let batchCount = 0;
        for (let start = 0; start < ready.length && failure === undefined; start += maxInFlight) {
          const chunk = ready.slice(start, start + maxInFlight);
          const before = last?.event_id;
          // Sent in order without waiting; settled all, so no rejection goes unobserved.
          const acks = await Promise.allSettled(
            chunk.map((row, i) => {
              const previous = maxInFlight > 1 ? (i > 0 ? chunk[i - 1]!.event_id : before) : undefined;
              return options.publish({ eventId: row.event_id, subject: row.subject, headers: row.headers, body: row.body }, previous);
            }),
          );
          for (const [i, ack] of acks.entries()) {
            if (ack.status === 'rejected') {
              failure = ack.reason ?? new Error('publish failed');
              break;
            }
            last = chunk[i];
            count++;
            batchCount++;
          }
        }
        heldBack = rows.some((r) => !r.ready);
        more = batchCount === batchSize || notified;
        if (failure !== undefined || heldBack || !more || !running || performance.now() - began >= MAX_ROUND_MS) break;
      }
      if (last) {
        await sql`update ${s}.outbox_checkpoints set transaction_id = ${last.transaction_id}::xid8, position = ${last.position}::bigint, updated_at = now()
          where name = ${options.name}`.execute(trx);
      }
      // Returned, not thrown: the checkpoint of what was acknowledged must commit.
      return { published: count, more, heldBack, failure };
    });
    if (outcome.failure !== undefined) throw outcome.failure;
    return { published: outcome.published, more: outcome.more, heldBack: outcome.heldBack };
  }

  /** Sleeps `ms`; `stop` ends it early, and so does a notification when `wakeOnNotify`. */
  function sleep(ms: number, wakeOnNotify: boolean): Promise<void> {
    if (!running || (wakeOnNotify && notified)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        interruptSleep = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      interruptSleep = () => {
        if (!running || wakeOnNotify) done();
      };
    });
  }

  function report(callback: ((err: unknown) => void) | undefined, err: unknown): void {
    try {
      callback?.(err);
    } catch {
      // A failing logger must not end the relay.
    }
  }

  async function run(): Promise<void> {
    let failures = 0;
    let heldBackChecks = 0;
    while (running) {
      notified = false;
      let r: Round;
      try {
        r = await round();
        failures = 0;
      } catch (err) {
        report(options.onError, err);
        const ceiling = Math.min(maxRetryMs, retryMs * 2 ** Math.min(failures, 20));
        failures++;
        await sleep(Math.round(ceiling * (0.5 + Math.random() / 2)), false);
        continue;
      }
      if (!r.heldBack) heldBackChecks = 0;
      if (r.more || notified) continue;
      if (r.heldBack) {
        // A notification will not come again for rows already committed: look again soon, less
        // often the longer the older transaction stays open.
        const wait = Math.min(pollMs, HELD_BACK_MAX_RECHECK_MS, HELD_BACK_FIRST_RECHECK_MS * 2 ** Math.min(heldBackChecks, 20));
        heldBackChecks++;
        await sleep(wait, true);
        continue;
      }
      await sleep(listener?.listening() ? pollMs : fallbackPollMs, true);
    }
  }

  return {
    async relayOnce() {
      return (await round()).published;
    },
    listening: () => listener?.listening() ?? false,
    start() {
      if (running) return;
      running = true;
      if (options.listen) {
        let lost = false;
        listener = startOutboxListener({
          channel: outboxChannel(options.schema),
          connect: options.listen,
          onNotify: () => {
            notified = true;
            interruptSleep?.();
          },
          onListening: () => {
            // Commits while LISTEN was being set up sent notifications nobody heard.
            notified = true;
            interruptSleep?.();
            if (lost) report(() => options.onListenRestored?.(), undefined);
            lost = false;
          },
          onDown: (err) => {
            lost = true;
            report(options.onListenError, err);
          },
          retryDelayMs: retryMs,
          maxRetryDelayMs: maxRetryMs,
        });
      }
      loop = run().catch((err: unknown) => report(options.onError, err));
    },
    async stop() {
      running = false;
      interruptSleep?.();
      await loop;
      await listener?.stop();
      listener = undefined;
    },
  };
}

/**
 * How many outbox messages wait behind the relay's checkpoint `name` (for the backlog metric),
 * counted up to `limit` so a long backlog costs a bounded scan.
 */
export async function outboxBacklog(db: Kysely<EventStoreDatabase>, schema: string, name: string, limit = 100_000): Promise<number> {
  const s = quotedSchema(schema);
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from (
      select 1 from ${s}.outbox o
      where (o.transaction_id, o.position) > (
        select coalesce(cp.transaction_id, '0'::xid8), coalesce(cp.position, 0)
        from (values (1)) one left join ${s}.outbox_checkpoints cp on cp.name = ${name})
      limit ${limit}) waiting`.execute(db);
  return rows[0]?.n ?? 0;
}
