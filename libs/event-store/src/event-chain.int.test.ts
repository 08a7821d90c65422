import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, uniqueId, type TestDatabase } from '@coffer/testing';
import { outboxChannel } from './event-store-schema';
import { MAIN_CHAIN, createEventStore, migrateEventStore, verifyEventChain, type AppendedEvent, type EventStore } from './index';

describe('hash-chained, immutable event log', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_chain');
    db = createDatabase(tdb.url);
  });

  afterAll(async () => {
    await db?.destroy();
    await tdb?.drop();
  });

  async function freshLog(): Promise<{ schema: string; store: EventStore }> {
    const schema = `chain_${uniqueId()}`;
    await migrateEventStore(db, schema);
    return { schema, store: createEventStore(db, { schema }) };
  }

  it('links every event to the one before, across streams and concurrent writers', async () => {
    const { schema, store } = await freshLog();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.append(`s-${i % 4}`, 'any', [{ type: 'Written', data: { i, nested: { b: 1, a: [1, 'x'] } }, metadata: { actor: 'test', onBehalfOf: undefined } }])),
    );
    const verdict = await verifyEventChain(db, schema, { batchSize: 7 });
    expect(verdict, JSON.stringify(verdict)).toEqual({ ok: true, checked: 20 });
    const { events } = await store.readStream('s-0');
    expect(events[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reports the first event whose stored bytes were changed by a superuser', async () => {
    const { schema, store } = await freshLog();
    for (let i = 0; i < 5; i++) await store.append('audit', i, [{ type: 'Written', data: { i } }]);
    const target = (await store.readStream('audit')).events[2]!;
    const s = sql.id(schema);
    await sql`alter table ${s}.events disable trigger events_immutable`.execute(db);
    await sql`update ${s}.events set data = '{"i": 99}'::jsonb where event_id = ${target.eventId}::uuid`.execute(db);
    await sql`alter table ${s}.events enable trigger events_immutable`.execute(db);
    const verdict = await verifyEventChain(db, schema);
    expect(verdict).toMatchObject({ ok: false, checked: 2, broken: { eventId: target.eventId, globalPosition: target.globalPosition }, reason: 'content does not match its hash' });
  });

  it('reports the event after one that was deleted', async () => {
    const { schema, store } = await freshLog();
    for (let i = 0; i < 4; i++) await store.append('audit', i, [{ type: 'Written', data: { i } }]);
    const { events } = await store.readStream('audit');
    const s = sql.id(schema);
    await sql`alter table ${s}.events disable trigger events_immutable`.execute(db);
    await sql`delete from ${s}.events where event_id = ${events[1]!.eventId}::uuid`.execute(db);
    await sql`alter table ${s}.events enable trigger events_immutable`.execute(db);
    expect(await verifyEventChain(db, schema)).toMatchObject({ ok: false, broken: { eventId: events[2]!.eventId }, reason: 'previous hash does not match' });
  });

  it('a role with insert and select cannot UPDATE or DELETE events even with the trigger gone', async () => {
    const { schema, store } = await freshLog();
    await store.append('audit', 0, [{ type: 'Written', data: {} }]);
    const role = `coffer_writer_${uniqueId()}`;
    const s = sql.id(schema);
    await sql`create role ${sql.id(role)} login password 'test-only'`.execute(db);
    try {
      await sql`grant usage on schema ${s} to ${sql.id(role)}`.execute(db);
      await sql`grant select, insert on ${s}.events to ${sql.id(role)}`.execute(db);
      await sql`alter table ${s}.events disable trigger events_immutable`.execute(db);
      const url = new URL(tdb.url);
      url.username = role;
      url.password = 'test-only';
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      try {
        await expect(client.query(`update "${schema}".events set type = 'X'`)).rejects.toThrow(/permission denied/);
        await expect(client.query(`delete from "${schema}".events`)).rejects.toThrow(/permission denied/);
      } finally {
        await client.end();
      }
    } finally {
      await sql`alter table ${s}.events enable trigger events_immutable`.execute(db);
      await sql`drop owned by ${sql.id(role)}`.execute(db);
      await sql`drop role ${sql.id(role)}`.execute(db);
    }
  });

  it('a stream with a chain of its own appends while a write holds the main chain, and every chain verifies', async () => {
    const schema = `chain_${uniqueId()}`;
    await migrateEventStore(db, schema);
    const store = createEventStore(db, { schema, chainOf: (id) => (id.startsWith('reads-') ? id : MAIN_CHAIN) });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let writeAppended!: () => void;
    const appended = new Promise<void>((resolve) => (writeAppended = resolve));
    // A write appends to the main chain and keeps its transaction (and the chain lock) open.
    const write = db.transaction().execute(async (trx) => {
      await store.appendInTransaction(trx, 'secret-a', 0, [{ type: 'Written', data: { n: 1 } }]);
      writeAppended();
      await held;
    });
    await appended;
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the read audit waited for the write')), 10_000));
    // Without a chain of its own this append would wait for the write to commit, which waits for it.
    await Promise.race([Promise.all([store.append('reads-ws1', 'any', [{ type: 'Read', data: { n: 1 } }]), store.append('reads-ws2', 'any', [{ type: 'Read', data: { n: 2 } }])]), timeout]);
    release();
    await write;
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        i % 3 === 0 ? store.append(`secret-${i}`, 'any', [{ type: 'Written', data: { i } }]) : store.append(`reads-ws${i % 2}`, 'any', [{ type: 'Read', data: { i } }]),
      ),
    );
    await db.transaction().execute((trx) =>
      store.appendManyInTransaction(trx, [
        { streamId: 'reads-ws1', expected: 'any', events: [{ type: 'Read', data: {} }] },
        { streamId: 'secret-b', expected: 0, events: [{ type: 'Written', data: {} }] },
      ]),
    );
    expect(await verifyEventChain(db, schema)).toEqual({ ok: true, checked: 17 });
    const s = sql.id(schema);
    const { rows } = await sql<{ chain: string; n: number }>`select chain, count(*)::int as n from ${s}.events group by chain order by chain`.execute(db);
    expect(rows).toEqual([
      { chain: MAIN_CHAIN, n: 6 },
      { chain: 'reads-ws0', n: 4 },
      { chain: 'reads-ws1', n: 6 },
      { chain: 'reads-ws2', n: 1 },
    ]);
    // The first event of a chain of its own links to the genesis hash, like the first of the log.
    const first = (await store.readStream('reads-ws2')).events[0]!;
    expect(first.prevHash).toBe('0'.repeat(64));
    // Tampering with an event of a chain of its own is found like one of the main chain.
    await sql`alter table ${s}.events disable trigger events_immutable`.execute(db);
    await sql`update ${s}.events set data = '{"n": 99}'::jsonb where event_id = ${first.eventId}::uuid`.execute(db);
    await sql`alter table ${s}.events enable trigger events_immutable`.execute(db);
    expect(await verifyEventChain(db, schema)).toMatchObject({ ok: false, broken: { eventId: first.eventId }, reason: 'content does not match its hash' });
  });

  it('appends to a stream of its own chain without a transaction lock: concurrent appends all land in order, with their outbox rows and one wake-up each', async () => {
    const schema = `chain_${uniqueId()}`;
    await migrateEventStore(db, schema);
    const store = createEventStore(db, { schema, chainOf: (id) => (id.startsWith('reads-') ? id : MAIN_CHAIN) });
    const listener = new pg.Client({ connectionString: tdb.url });
    await listener.connect();
    let wakeUps = 0;
    listener.on('notification', () => wakeUps++);
    await listener.query(`listen "${outboxChannel(schema)}"`);
    const outbox = (appended: AppendedEvent[]) => appended.map((e) => ({ eventId: e.eventId, subject: 'reads', headers: { v: String(e.streamVersion) }, body: JSON.stringify(e.data) }));
    // More at once than the unlocked path retries: the ones that keep losing take the chain lock.
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => store.append('reads-ws', 'any', [{ type: 'Read', data: { i } }], { outbox })));
    expect(results.map((r) => r.nextExpectedVersion).sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    const two = await store.append('reads-ws', 24, [{ type: 'Read', data: { i: 24 } }, { type: 'Read', data: { i: 25 } }], { outbox });
    expect(two.recorded.map((e) => e.streamVersion)).toEqual([25, 26]);
    expect(two.recorded[1]!.prevHash).toBe(two.recorded[0]!.hash);
    await expect(store.append('reads-ws', 3, [{ type: 'Read', data: {} }], { outbox })).rejects.toMatchObject({ code: 'version_conflict' });
    const { events } = await store.readStream('reads-ws');
    expect(events.map((e) => e.streamVersion)).toEqual(Array.from({ length: 26 }, (_, i) => i + 1));
    // Stream order is log order, and each event links to the one before it.
    expect(events.every((e, i) => i === 0 || (BigInt(e.globalPosition) > BigInt(events[i - 1]!.globalPosition) && e.prevHash === events[i - 1]!.hash))).toBe(true);
    expect(await verifyEventChain(db, schema)).toEqual({ ok: true, checked: 26 });
    const s = sql.id(schema);
    const { rows } = await sql<{ event_id: string }>`select event_id::text from ${s}.outbox order by position`.execute(db);
    expect(new Set(rows.map((r) => r.event_id))).toEqual(new Set(events.map((e) => e.eventId)));
    // One notification per committed append (a conflicting attempt rolls back with its own).
    await expect.poll(() => wakeUps, { timeout: 5_000 }).toBe(25);
    await listener.end();
    // No lock at all on this path: an append completes while another session holds the chain's lock.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(hashtextextended(${`coffer-chain:${schema}:reads-ws`}, 0))`.execute(trx);
      locked();
      await held;
    });
    await isLocked;
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the append waited for the chain lock')), 10_000));
    await Promise.race([store.append('reads-ws', 26, [{ type: 'Read', data: {} }], { outbox }), timeout]).finally(release);
    await holder;
  });
  it('appends to several streams of their own chains at once: one statement, concurrent batches interleave, every chain intact; a shared-chain stream takes the locked path', async () => {
    const schema = `chain_${uniqueId()}`;
    await migrateEventStore(db, schema);
    const store = createEventStore(db, { schema, chainOf: (id) => (id.startsWith('reads-') ? id : MAIN_CHAIN) });
    const outbox = (appended: AppendedEvent[]) => appended.map((e) => ({ eventId: e.eventId, subject: 'reads', headers: {}, body: JSON.stringify(e.data) }));
    await store.append('reads-a', 0, [{ type: 'Read', data: { first: true } }]);
    // 12 concurrent batches over 3 streams, the same stream twice in some of them.
    const batches = Array.from({ length: 12 }, (_, b) => [
      { streamId: 'reads-a', events: [{ type: 'Read', data: { b, k: 0 } }] },
      { streamId: `reads-${b % 2 === 0 ? 'b' : 'c'}`, events: [{ type: 'Read', data: { b, k: 1 } }] },
      { streamId: 'reads-a', events: [{ type: 'Read', data: { b, k: 2 } }] },
    ]);
    const recorded = (await Promise.all(batches.map((batch) => store.appendToOwnChains(batch, { outbox })))).flat();
    expect(recorded).toHaveLength(36);
    const a = await store.readStream('reads-a');
    expect(a.events.map((e) => e.streamVersion)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    // A batch's two events of one stream are consecutive, in the order given.
    for (let b = 0; b < 12; b++) {
      const mine = a.events.filter((e) => (e.data as { b?: number }).b === b);
      expect(mine.map((e) => (e.data as { k: number }).k)).toEqual([0, 2]);
      expect(mine[1]!.streamVersion).toBe(mine[0]!.streamVersion + 1);
    }
    expect((await store.readStream('reads-b')).currentVersion).toBe(6);
    expect((await store.readStream('reads-c')).currentVersion).toBe(6);
    expect(await verifyEventChain(db, schema)).toEqual({ ok: true, checked: 37 });
    const s = sql.id(schema);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${s}.outbox`.execute(db);
    expect(rows[0]!.n).toBe(36);
    // A stream of the main chain among them: all of it goes through the chain's lock, still all or nothing.
    const mixed = await store.appendToOwnChains([{ streamId: 'reads-a', events: [{ type: 'Read', data: {} }] }, { streamId: 'order-1', events: [{ type: 'Opened', data: {} }] }], { outbox });
    expect(mixed.map((e) => [e.streamId, e.streamVersion])).toEqual([['reads-a', 26], ['order-1', 1]]);
    expect(await verifyEventChain(db, schema)).toEqual({ ok: true, checked: 39 });
    expect(await store.appendToOwnChains([{ streamId: 'reads-a', events: [] }])).toEqual([]);
    await expect(store.appendToOwnChains([{ streamId: '', events: [{ type: 'Read', data: {} }] }])).rejects.toMatchObject({ code: 'invalid_argument' });
  });

  it('keeps the heads it appended in memory: its next append reads none; a head another replica moved on is noticed by the key and read again', async () => {
    const schema = `chain_${uniqueId()}`;
    await migrateEventStore(db, schema);
    const headReads: string[] = [];
    // Two replicas: each its own store, over its own pool, the first counting its head reads.
    const counted = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: tdb.url, max: 2 }) }), log: (e) => void (e.query.sql.includes('cross join lateral') && headReads.push(e.query.sql)) });
    try {
      const own = (id: string) => id;
      const one = createEventStore(counted, { schema, chainOf: own });
      const two = createEventStore(db, { schema, chainOf: own });
      const batch = (n: number) => ['reads-x', 'reads-y'].map((streamId) => ({ streamId, events: [{ type: 'Read', data: { n } }] }));
      await one.appendToOwnChains(batch(1));
      expect(headReads).toHaveLength(1);
      await one.appendToOwnChains(batch(2));
      expect(headReads).toHaveLength(1);
      // The other replica appends: the first one's heads are now behind.
      await two.appendToOwnChains(batch(3));
      const recorded = await one.appendToOwnChains(batch(4));
      expect(recorded.map((e) => [e.streamId, e.streamVersion])).toEqual([['reads-x', 4], ['reads-y', 4]]);
      expect(headReads).toHaveLength(2);
      // Alternating and concurrent, every append lands once, in a gapless stream.
      await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? one : two).appendToOwnChains(batch(5 + i))));
      for (const id of ['reads-x', 'reads-y']) {
        const { events } = await two.readStream(id);
        expect(events.map((e) => e.streamVersion)).toEqual(Array.from({ length: 14 }, (_, i) => i + 1));
      }
      expect(await verifyEventChain(db, schema)).toEqual({ ok: true, checked: 28 });
    } finally {
      await counted.destroy();
    }
  });
});
