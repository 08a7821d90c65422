import { sql, type Kysely } from 'kysely';
import { quotedSchema } from './event-store-schema';
import type { OutboxMessage } from './event-store';

/** Options of `createOutboxRelay`. */
export interface OutboxRelayOptions {
  schema: string;
  /** Checkpoint name; replicas of one service share it and take turns (one publishes at a time). */
  name: string;
  /** Publishes one message and resolves only after the broker acknowledged it. */
  publish: (message: OutboxMessage) => Promise<void>;
  /** Called when a publish fails; the relay retries from the failed message after a pause. */
  onError?: (err: unknown) => void;
  pollIntervalMs?: number;
  batchSize?: number;
  /** Pause after a failure before the next round (default 1 s). */
  retryDelayMs?: number;
}

/** A running relay. */
export interface OutboxRelay {
  /** Starts polling in the background. */
  start(): void;
  /** Publishes what is ready now, once; returns how many messages were published. */
  relayOnce(): Promise<number>;
  /** Stops polling and waits for the round in flight. */
  stop(): Promise<void>;
}

interface OutboxRow {
  position: string;
  event_id: string;
  subject: string;
  headers: Record<string, string>;
  body: string;
  transaction_id: string;
}

/**
 * The outbox relay: reads outbox rows in (transaction id, position) order, only from transactions
 * older than every running one (so a late commit is never skipped), publishes each, and moves the
 * checkpoint only past messages the broker acknowledged. A crash between ack and checkpoint
 * publishes again; the broker's duplicate window (`Nats-Msg-Id` = event id) drops the copy.
 */
export function createOutboxRelay(db: Kysely<any>, options: OutboxRelayOptions): OutboxRelay {
  const s = quotedSchema(options.schema);
  const pollMs = options.pollIntervalMs ?? 100;
  const batchSize = options.batchSize ?? 100;
  const retryMs = options.retryDelayMs ?? 1000;
  let running = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;

  async function relayOnce(): Promise<number> {
    await sql`insert into ${s}.outbox_checkpoints (name, transaction_id, position) values (${options.name}, '0'::xid8, 0)
      on conflict (name) do nothing`.execute(db);
    const { published, failure } = await db.transaction().execute(async (trx) => {
      const lock = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(hashtextextended(${`coffer-outbox:${options.schema}:${options.name}`}, 0)) as locked`.execute(trx);
      if (!lock.rows[0]!.locked) return { published: 0, failure: undefined };
      const cp = (
        await sql<{ transaction_id: string; position: string }>`select transaction_id::text, position::text from ${s}.outbox_checkpoints where name = ${options.name}`.execute(trx)
      ).rows[0]!;
      const { rows } = await sql<OutboxRow>`
        select o.position::text, o.event_id::text, o.subject, o.headers, o.body, o.transaction_id::text from ${s}.outbox o
        where o.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          and (o.transaction_id, o.position) > (${cp.transaction_id}::xid8, ${cp.position}::bigint)
        order by o.transaction_id, o.position
        limit ${batchSize}`.execute(trx);
      let last: OutboxRow | undefined;
      let count = 0;
      let error: unknown;
      for (const row of rows) {
        try {
          await options.publish({ eventId: row.event_id, subject: row.subject, headers: row.headers, body: row.body });
        } catch (err) {
          error = err ?? new Error('publish failed');
          break;
        }
        last = row;
        count++;
      }
      if (last) {
        await sql`update ${s}.outbox_checkpoints set transaction_id = ${last.transaction_id}::xid8, position = ${last.position}::bigint, updated_at = now()
          where name = ${options.name}`.execute(trx);
      }
      // Returned, not thrown: the checkpoint of what was acknowledged must commit.
      return { published: count, failure: error };
    });
    if (failure !== undefined) throw failure;
    return published;
  }

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  async function run(): Promise<void> {
    while (running) {
      let published = 0;
      try {
        published = await relayOnce();
      } catch (err) {
        options.onError?.(err);
        if (running) await sleep(retryMs);
        continue;
      }
      if (running && published < batchSize) await sleep(pollMs);
    }
  }

  return {
    relayOnce,
    start() {
      if (running) return;
      running = true;
      loop = run();
    },
    async stop() {
      running = false;
      wake?.();
      await loop;
    },
  };
}
