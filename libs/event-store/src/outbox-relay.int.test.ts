import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJetStreamPublisher } from '@coffer/messaging';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, testNatsUrl, uniqueId, type TestDatabase } from '@coffer/testing';
import { createEventStore, createOutboxRelay, migrateEventStore, outboxBacklog, type EventStore, type ExpectedVersion, type OutboxMessage, type OutboxRelay } from './index';

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

  it('counts the backlog behind a checkpoint: every message before its first round, none once published', async () => {
    const relay = createOutboxRelay(db, { schema, name: 'backlog', publish: async () => undefined });
    const before = await outboxBacklog(db, schema, 'backlog');
    await store.append(`backlog-${uniqueId()}`, 0, [{ type: 'A', data: {} }, { type: 'B', data: {} }, { type: 'C', data: {} }], { outbox: message(subject) });
    expect(await outboxBacklog(db, schema, 'backlog')).toBe(before + 3);
    await relayUntil(relay, () => false, 300);
    expect(await outboxBacklog(db, schema, 'backlog')).toBe(0);
  });
});

describe('outbox relay woken by commit notifications', () => {
  const notifySchema = 'relay_notify';
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let admin: Kysely<any>;
  let store: EventStore;
  let nc: NatsConnection;
  const id = uniqueId();
  const stream = `RELAY_NOTIFY_${id.toUpperCase()}`;
  const subject = `relay_notify_${id}.test`;
  const listenName = `relay-test-listen-${id}`;
  // Subscriber side: when each event id arrived on the stream, and how often.
  const arrivedAt = new Map<string, number>();
  const copies = new Map<string, number>();
  const arrivalOrder: string[] = [];
  let stopConsuming: (() => void) | undefined;

  const publishTo = (js: ReturnType<typeof jetstream>) => async (m: OutboxMessage) => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
    await js.publish(m.subject, m.body, { msgID: m.eventId, headers: h });
  };
  const listenClient = () => new pg.Client({ connectionString: tdb.url, application_name: listenName });
  async function waitFor(done: () => boolean | Promise<boolean>, deadlineMs = 15_000): Promise<boolean> {
    const end = Date.now() + deadlineMs;
    while (Date.now() < end) {
      if (await done()) return true;
      await sleep(10);
    }
    return done();
  }
  async function appendTimed(streamId: string, expected: ExpectedVersion): Promise<{ eventId: string; committedAt: number }> {
    const { recorded } = await store.append(streamId, expected, [{ type: 'Timed', data: {} }], { outbox: message(subject) });
    return { eventId: recorded[0]!.eventId, committedAt: performance.now() };
  }

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_relay_notify');
    // Every client of the pool, idle or checked out, has an 'error' listener: a connection the
    // server terminates while the relay awaits the broker fails that round, not the process.
    const pool = new pg.Pool({ connectionString: tdb.url });
    pool.on('error', () => undefined);
    pool.on('connect', (client) => client.on('error', () => undefined));
    db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
    admin = createDatabase(tdb.url, { max: 1 });
    await migrateEventStore(db, notifySchema);
    store = createEventStore(db, { schema: notifySchema });
    nc = await connect({ servers: testNatsUrl() });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${subject.split('.')[0]}.>`], duplicate_window: 120_000_000_000 });
    const consumer = await jetstream(nc).consumers.get(stream);
    const messages = await consumer.consume();
    stopConsuming = () => void messages.stop();
    void (async () => {
      for await (const m of messages) {
        const eventId = m.headers?.get('ce-id') ?? '';
        if (!arrivedAt.has(eventId)) arrivedAt.set(eventId, performance.now());
        copies.set(eventId, (copies.get(eventId) ?? 0) + 1);
        arrivalOrder.push(eventId);
      }
    })();
  });

  afterAll(async () => {
    stopConsuming?.();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc?.close();
    await admin?.destroy();
    await db?.destroy();
    await tdb?.drop();
  });

  it('publishes within moments of the commit although the poll interval is a minute (the notification path)', async () => {
    const relay = createOutboxRelay(db, {
      schema: notifySchema,
      name: 'notified',
      publish: publishTo(jetstream(nc)),
      listen: listenClient,
      pollIntervalMs: 60_000,
      fallbackPollIntervalMs: 60_000,
    });
    relay.start();
    try {
      expect(await waitFor(() => relay.listening())).toBe(true);
      // Let the start-up round settle into its one-minute sleep before measuring.
      await sleep(200);
      const lags: number[] = [];
      for (let i = 0; i < 20; i++) {
        const { eventId, committedAt } = await appendTimed('notified', i);
        expect(await waitFor(() => arrivedAt.has(eventId), 10_000)).toBe(true);
        lags.push(arrivedAt.get(eventId)! - committedAt);
        await sleep(20);
      }
      lags.sort((a, b) => a - b);
      console.log(`commit → on the stream with a 60 s poll, 20 events one at a time: median ${lags[10]!.toFixed(1)} ms, max ${lags[19]!.toFixed(1)} ms`);
      // Without the notification each event would wait for the next poll, a minute away. An event
      // can still wait for any older transaction on the shared server (the xmin rule), so the
      // bound on the slowest one is loose; the typical one arrives in well under a second.
      expect(lags[10]).toBeLessThan(1_000);
      expect(lags[19]).toBeLessThan(15_000);
    } finally {
      await relay.stop();
    }
  });

  it('keeps delivering, in order and once each, when its LISTEN connection is terminated, and listens again', async () => {
    const listenErrors: unknown[] = [];
    let restored = 0;
    const relay = createOutboxRelay(db, {
      schema: notifySchema,
      name: 'terminated',
      publish: publishTo(jetstream(nc)),
      listen: listenClient,
      onListenError: (err) => listenErrors.push(err),
      onListenRestored: () => restored++,
      pollIntervalMs: 60_000,
      fallbackPollIntervalMs: 50,
      retryDelayMs: 200,
    });
    relay.start();
    try {
      expect(await waitFor(() => relay.listening())).toBe(true);
      const ids: string[] = [];
      for (let v = 0; v < 3; v++) ids.push((await appendTimed('terminated', v)).eventId);
      const terminated = await sql<{ n: number }>`
        select count(*)::int as n from (
          select pg_terminate_backend(pid) from pg_stat_activity where application_name = ${listenName}
        ) t`.execute(admin);
      expect(terminated.rows[0]!.n).toBe(1);
      // Appended while the LISTEN connection is gone: the fallback poll carries them.
      for (let v = 3; v < 6; v++) ids.push((await appendTimed('terminated', v)).eventId);
      expect(await waitFor(() => listenErrors.length > 0)).toBe(true);
      expect(await waitFor(() => ids.every((e) => arrivedAt.has(e)))).toBe(true);
      // The listener comes back by itself, and notifications carry the next events again.
      expect(await waitFor(() => relay.listening() && restored > 0)).toBe(true);
      for (let v = 6; v < 9; v++) ids.push((await appendTimed('terminated', v)).eventId);
      expect(await waitFor(() => ids.every((e) => arrivedAt.has(e)))).toBe(true);
      expect(arrivalOrder.filter((e) => ids.includes(e))).toEqual(ids);
      expect(ids.map((e) => copies.get(e))).toEqual(ids.map(() => 1));
    } finally {
      await relay.stop();
    }
  });

  it('pipelines publishes, and a message lost in flight is not overtaken by the ones sent after it', async () => {
    const publish = createJetStreamPublisher(nc);
    const { recorded } = await store.append('pipelined', 0, Array.from({ length: 10 }, (_, i) => ({ type: 'P', data: { i } })), { outbox: message(subject) });
    const ids = recorded.map((r) => r.eventId);
    let dropped = 0;
    const tries: string[] = [];
    const relay = createOutboxRelay(db, {
      schema: notifySchema,
      // A fresh checkpoint: it publishes the earlier tests' events again too, and JetStream drops those copies.
      name: 'pipelined',
      maxInFlight: 50,
      // The third message never reaches the broker the first time, as if the connection dropped under it.
      publish: async (m, previousEventId) => {
        tries.push(m.eventId);
        if (m.eventId === ids[2] && dropped++ === 0) throw new Error('connection lost');
        await publish(m, previousEventId);
      },
      retryDelayMs: 20,
    });
    relay.start();
    try {
      expect(await waitFor(() => ids.every((e) => arrivedAt.has(e)))).toBe(true);
      expect(dropped).toBe(2);
      // The messages after it were sent in the same round, before its failure was known, and refused.
      expect(tries.filter((e) => e === ids[3]).length).toBe(2);
      expect(arrivalOrder.filter((e) => ids.includes(e))).toEqual(ids);
      expect(ids.map((e) => copies.get(e))).toEqual(ids.map(() => 1));
    } finally {
      await relay.stop();
    }
  });

  it('publishes a backlog of several batches in order, once each, and checkpoints all of it', async () => {
    const publish = createJetStreamPublisher(nc);
    const sent: string[] = [];
    const { recorded } = await store.append('backlog', 0, Array.from({ length: 25 }, (_, i) => ({ type: 'B', data: { i } })), { outbox: message(subject) });
    const ids = recorded.map((r) => r.eventId);
    const relay = createOutboxRelay(db, {
      schema: notifySchema,
      name: 'backlog',
      batchSize: 4,
      maxInFlight: 3,
      listen: listenClient,
      publish: async (m, previousEventId) => {
        sent.push(m.eventId);
        await publish(m, previousEventId);
      },
    });
    relay.start();
    try {
      expect(await waitFor(() => ids.every((e) => arrivedAt.has(e)))).toBe(true);
      expect(arrivalOrder.filter((e) => ids.includes(e))).toEqual(ids);
      expect(ids.map((e) => copies.get(e))).toEqual(ids.map(() => 1));
    } finally {
      await relay.stop();
    }
    // The checkpoint covers the whole backlog: the same relay name finds nothing left to send.
    const before = sent.length;
    expect(await relay.relayOnce()).toBe(0);
    expect(sent.length).toBe(before);
  });

  it('keeps running through failed publishes and terminated database connections, backing off between tries', async () => {
    const errors: unknown[] = [];
    let failuresLeft = 3;
    const js = jetstream(nc);
    const relay = createOutboxRelay(db, {
      schema: notifySchema,
      name: 'resilient',
      publish: async (m) => {
        if (failuresLeft > 0) {
          failuresLeft--;
          throw new Error('broker unavailable');
        }
        await publishTo(js)(m);
      },
      onError: (err) => errors.push(err),
      listen: listenClient,
      retryDelayMs: 20,
      maxRetryDelayMs: 200,
    });
    relay.start();
    try {
      const ids: string[] = [];
      for (let v = 0; v < 3; v++) ids.push((await appendTimed('resilient', v)).eventId);
      expect(await waitFor(() => ids.every((e) => arrivedAt.has(e)))).toBe(true);
      expect(errors.length).toBeGreaterThanOrEqual(3);
      // Every connection to the database but the admin's own: the pool's and the listener's.
      await sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`.execute(admin);
      for (let v = 3; v < 6; v++) {
        // The store's pool lost its connections too; a failed append is the caller's to retry.
        let appended: string | undefined;
        for (let attempt = 0; attempt < 5 && !appended; attempt++) {
          appended = await appendTimed('resilient', 'any').then(
            (r) => r.eventId,
            () => undefined,
          );
        }
        ids.push(appended!);
      }
      expect(await waitFor(() => ids.every((e) => arrivedAt.has(e)))).toBe(true);
      expect(arrivalOrder.filter((e) => ids.includes(e))).toEqual(ids);
      expect(ids.map((e) => copies.get(e))).toEqual(ids.map(() => 1));
    } finally {
      await relay.stop();
    }
  });
});
