import { sql, type Kysely } from 'kysely';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, testNatsUrl, uniqueId, type TestDatabase } from '@coffer/testing';
import { createEventStore, createOutboxRelay, migrateEventStore, type EventStore, type OutboxMessage, type OutboxRelay } from './index';

const schema = 'relay_test';
const message = (subject: string) => (recorded: { eventId: string }[]): OutboxMessage[] =>
  recorded.map((r) => ({ eventId: r.eventId, subject, headers: { 'ce-id': r.eventId }, body: JSON.stringify({ id: r.eventId }) }));

// A row waits while any older transaction anywhere on the server is open (the snapshot xmin is
// cluster-wide, and other test files run beside this one): tests poll instead of expecting at once.
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function relayUntil(relay: OutboxRelay, done: () => boolean, deadlineMs = 15_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!done() && Date.now() < end) {
    await relay.relayOnce();
    if (!done()) await sleep(20);
  }
}

describe('outbox relay', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let store: EventStore;
  let nc: NatsConnection;
  const stream = `RELAY_${uniqueId().toUpperCase()}`;
  const subject = `relay_${uniqueId()}.test`;

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_relay');
    db = createDatabase(tdb.url);
    await migrateEventStore(db, schema);
    store = createEventStore(db, { schema });
    nc = await connect({ servers: testNatsUrl() });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${subject.split('.')[0]}.>`], duplicate_window: 120_000_000_000 });
  });

  afterAll(async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc?.close();
    await db?.destroy();
    await tdb?.drop();
  });

  it('publishes in commit-safe order, checkpoints only what was acknowledged, and retries the rest', async () => {
    const published: string[] = [];
    let failNext = false;
    const relay = createOutboxRelay(db, {
      schema,
      name: 'collector',
      publish: async (m) => {
        if (failNext) {
          failNext = false;
          throw new Error('broker unavailable');
        }
        published.push(m.eventId);
      },
    });
    const a = await store.append('s-a', 0, [{ type: 'A', data: {} }, { type: 'B', data: {} }], { outbox: message(subject) });
    await relayUntil(relay, () => published.length >= 2);
    expect(published).toEqual(a.recorded.map((r) => r.eventId));

    const b = await store.append('s-b', 0, [{ type: 'C', data: {} }, { type: 'D', data: {} }], { outbox: message(subject) });
    published.length = 0;
    failNext = true;
    let failure: unknown;
    const end = Date.now() + 15_000;
    while (failure === undefined && Date.now() < end) {
      failure = await relay.relayOnce().then(
        () => undefined,
        (err: unknown) => err,
      );
      if (failure === undefined) await sleep(20);
    }
    expect(String(failure)).toContain('broker unavailable');
    expect(published).toEqual([]);
    await relayUntil(relay, () => published.length >= 2);
    expect(published).toEqual(b.recorded.map((r) => r.eventId));
    expect(await relay.relayOnce()).toBe(0);
  });

  it('holds back rows behind an open transaction, then publishes them in order', async () => {
    const published: string[] = [];
    const relay = createOutboxRelay(db, { schema, name: 'ordered', publish: async (m) => void published.push(m.eventId) });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let appended!: () => void;
    const inFlight = new Promise<void>((r) => (appended = r));
    let slowId = '';
    // The slow transaction takes its transaction id first and appends after a later one committed.
    const slow = db.transaction().execute(async (trx) => {
      await sql`select pg_current_xact_id()`.execute(trx);
      appended();
      await held;
      slowId = (await store.appendInTransaction(trx, 'late', 0, [{ type: 'Late', data: {} }], { outbox: message(subject) })).recorded[0]!.eventId;
    });
    await inFlight;
    const fast = (await store.append('early', 0, [{ type: 'Early', data: {} }], { outbox: message(subject) })).recorded[0]!.eventId;
    await relay.relayOnce();
    expect(published).not.toContain(fast);
    release();
    await slow;
    const ours = () => published.filter((id) => id === slowId || id === fast);
    await relayUntil(relay, () => ours().length >= 2);
    expect(ours()).toEqual([slowId, fast]);
  });

  it('relays to JetStream with Nats-Msg-Id = event id, so a replayed checkpoint is stored once', async () => {
    const js = jetstream(nc);
    const publish = async (m: OutboxMessage) => {
      const h = natsHeaders();
      for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
      await js.publish(m.subject, m.body, { msgID: m.eventId, headers: h });
    };
    const relay = createOutboxRelay(db, { schema, name: 'jetstream', publish, pollIntervalMs: 20 });
    relay.start();
    const { recorded } = await store.append('js', 0, [{ type: 'X', data: {} }, { type: 'Y', data: {} }], { outbox: message(subject) });
    const jsm = await jetstreamManager(nc);
    const deadline = Date.now() + 10_000;
    const ids = () => new Set(recorded.map((r) => r.eventId));
    const stored = async () => {
      const info = await jsm.streams.info(stream);
      const out: string[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        const id = m?.header?.get('ce-id');
        if (id && ids().has(id)) out.push(id);
      }
      return out;
    };
    while ((await stored()).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await relay.stop();
    // A second relay with a fresh checkpoint publishes everything again: JetStream keeps one copy of each.
    const replay = createOutboxRelay(db, { schema, name: 'jetstream-replay', publish });
    while ((await replay.relayOnce()) > 0);
    expect((await stored()).sort()).toEqual(recorded.map((r) => r.eventId).sort());
  });
});
