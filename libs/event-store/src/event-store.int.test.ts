import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCofferError } from '@coffer/contracts';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, type TestDatabase } from '@coffer/testing';
import { createEventStore, migrateEventStore, recordInbox, verifyEventChain, type EventStore } from './index';

const schema = 'es_test';

describe('event store on real Postgres', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let store: EventStore<any>;

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_es');
    db = createDatabase(tdb.url);
    await migrateEventStore(db, schema);
    await migrateEventStore(db, schema);
    store = createEventStore(db, { schema });
  });

  afterAll(async () => {
    await db?.destroy();
    await tdb?.drop();
  });

  it('appends with an expected version and reads the stream back in order', async () => {
    const first = await store.append('order-1', 0, [
      { type: 'Opened', data: { n: 1 } },
      { type: 'Changed', data: { n: 2 }, metadata: { actor: 'test' } },
    ]);
    expect(first.nextExpectedVersion).toBe(2);
    expect(first.recorded.map((r) => r.streamVersion)).toEqual([1, 2]);
    await store.append('order-1', 2, [{ type: 'Closed', data: {} }]);
    const { currentVersion, events } = await store.readStream('order-1');
    expect(currentVersion).toBe(3);
    expect(events.map((e) => e.type)).toEqual(['Opened', 'Changed', 'Closed']);
    expect(events[1]!.metadata).toEqual({ actor: 'test' });
    expect(events[0]!.eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(events[0]!.recordedAt).toBeInstanceOf(Date);
    expect(await store.readStream('missing')).toEqual({ currentVersion: 0, events: [] });
  });

  it('a stale expected version fails with version_conflict and writes nothing', async () => {
    await store.append('order-2', 0, [{ type: 'Opened', data: {} }]);
    const err = await store.append('order-2', 0, [{ type: 'Opened', data: {} }]).catch((e: unknown) => e);
    expect(isCofferError(err) && err.code).toBe('version_conflict');
    expect((await store.readStream('order-2')).currentVersion).toBe(1);
  });

  it('a version conflict names no stream: stream ids hold secret coordinates and actor ids', async () => {
    const streamId = 'secret-coffer_workspace_w1_secret_s1';
    await store.append(streamId, 0, [{ type: 'Opened', data: {} }]);
    const err = await store.append(streamId, 0, [{ type: 'Opened', data: {} }]).catch((e: unknown) => e);
    expect(isCofferError(err) && err.code).toBe('version_conflict');
    expect((err as Error).message).toMatch(/changed concurrently/);
    expect(JSON.stringify({ message: (err as Error).message, details: (err as { details: unknown }).details })).not.toMatch(/secret-|_secret_|coffer_workspace/);
  });

  it('of concurrent writers with the same expected version exactly one wins', async () => {
    await store.append('race', 0, [{ type: 'Opened', data: {} }]);
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => store.append('race', 1, [{ type: 'Changed', data: { i } }])),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect(isCofferError(r.reason) && r.reason.code).toBe('version_conflict');
    }
    expect((await store.readStream('race')).currentVersion).toBe(2);
  });

  it('"any" appends after whatever is there, serialised per stream', async () => {
    await Promise.all(Array.from({ length: 6 }, (_, i) => store.append('audit', 'any', [{ type: 'Seen', data: { i } }])));
    const { events } = await store.readStream('audit');
    expect(events.map((e) => e.streamVersion)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('projections and outbox rows commit with the events, or nothing does', async () => {
    await sql`create table ${sql.id(schema)}.totals (id text primary key, n integer not null)`.execute(db);
    await store.append('sum-1', 0, [{ type: 'Added', data: { n: 5 } }], {
      project: (trx, recorded) => trx.withSchema(schema).insertInto('totals').values({ id: 'sum-1', n: recorded[0]!.data.n }).execute(),
      outbox: (recorded) => recorded.map((r) => ({ eventId: r.eventId, subject: 'test.added', headers: { 'ce-id': r.eventId }, body: '{}' })),
    });
    const failing = store.append('sum-2', 0, [{ type: 'Added', data: { n: 1 } }], {
      project: async () => {
        throw new Error('projection failed');
      },
      outbox: (recorded) => recorded.map((r) => ({ eventId: r.eventId, subject: 'test.added', headers: {}, body: '{}' })),
    });
    await expect(failing).rejects.toThrow('projection failed');
    expect((await store.readStream('sum-2')).currentVersion).toBe(0);
    const outbox = await sql<{ subject: string }>`select subject from ${sql.id(schema)}.outbox`.execute(db);
    expect(outbox.rows).toHaveLength(1);
    const totals = await db.withSchema(schema).selectFrom('totals').selectAll().execute();
    expect(totals).toEqual([{ id: 'sum-1', n: 5 }]);
  });

  it('refuses UPDATE, DELETE and TRUNCATE of events', async () => {
    await store.append('frozen', 0, [{ type: 'Written', data: { v: 1 } }]);
    const s = sql.id(schema);
    await expect(sql`update ${s}.events set data = '{}'::jsonb where stream_id = 'frozen'`.execute(db)).rejects.toThrow(/immutable/);
    await expect(sql`delete from ${s}.events where stream_id = 'frozen'`.execute(db)).rejects.toThrow(/immutable/);
    await expect(sql`truncate ${s}.events`.execute(db)).rejects.toThrow(/immutable/);
    expect((await store.readStream('frozen')).events[0]!.data).toEqual({ v: 1 });
  });

  it('readAll never returns an event behind one a still-open transaction could commit before', async () => {
    const start = await store.readAll({ limit: 10_000 });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let appended!: () => void;
    const inFlight = new Promise<void>((r) => (appended = r));
    // The slow transaction takes its transaction id first (as a consumer's inbox write does) and
    // appends only after a later transaction committed: its event must still come first.
    const slow = db.transaction().execute(async (trx) => {
      await sql`select pg_current_xact_id()`.execute(trx);
      appended();
      await held;
      await store.appendInTransaction(trx, 'slow', 0, [{ type: 'Slow', data: {} }]);
    });
    await inFlight;
    await store.append('fast', 0, [{ type: 'Fast', data: {} }]);
    const whileOpen = await store.readAll({ after: start.next });
    expect(whileOpen.events.map((e) => e.type)).not.toContain('Fast');
    release();
    await slow;
    // The snapshot xmin is cluster-wide: other test files' transactions may hold events back a moment.
    const ours = (events: { type: string }[]) => events.map((e) => e.type).filter((type) => type === 'Slow' || type === 'Fast');
    let after = await store.readAll({ after: start.next });
    for (const end = Date.now() + 15_000; ours(after.events).length < 2 && Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 20));
      after = await store.readAll({ after: start.next });
    }
    expect(ours(after.events)).toEqual(['Slow', 'Fast']);
    expect((await store.readAll({ after: after.next })).events).toEqual([]);
  });

  it('readAll pages through the whole log in numeric (transaction id, position) order', async () => {
    for (let i = 0; i < 110; i++) await store.append('many', 'any', [{ type: 'N', data: { i } }]);
    const seen: [bigint, bigint][] = [];
    let after;
    // readAll holds back what any older transaction of the whole server (other tests' databases
    // too) might still precede: an empty page before the last event means "not yet", so wait.
    const until = Date.now() + 30_000;
    let many = 0;
    for (;;) {
      const page = await store.readAll({ after, limit: 13 });
      if (page.events.length === 0) {
        if (many >= 110 || Date.now() > until) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      seen.push(...page.events.map((e) => [BigInt(e.transactionId), BigInt(e.globalPosition)] as [bigint, bigint]));
      many += page.events.filter((e) => e.streamId === 'many').length;
      after = page.next;
    }
    expect(many).toBe(110);
    const cmp = (a: [bigint, bigint], b: [bigint, bigint]) => (a[0] !== b[0] ? (a[0] < b[0] ? -1 : 1) : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);
    expect([...seen].sort(cmp)).toEqual(seen);
    expect(new Set(seen.map((s) => s[1])).size).toBe(seen.length);
  });

  it('the inbox tells a consumer whether it handled an event before', async () => {
    expect(await recordInbox(db, schema, 'worker', 'event-1')).toBe(true);
    expect(await recordInbox(db, schema, 'worker', 'event-1')).toBe(false);
    expect(await recordInbox(db, schema, 'other-worker', 'event-1')).toBe(true);
    await expect(
      db.transaction().execute(async (trx) => {
        expect(await recordInbox(trx, schema, 'worker', 'event-2')).toBe(true);
        throw new Error('effect failed');
      }),
    ).rejects.toThrow('effect failed');
    expect(await recordInbox(db, schema, 'worker', 'event-2')).toBe(true);
  });

  it('appends to many streams in batches: versions checked, chain intact, outbox filled; a stale version writes nothing', async () => {
    await store.append('many-0', 0, [{ type: 'Opened', data: {} }]);
    const appends = Array.from({ length: 7 }, (_, i) => ({ streamId: `many-${i}`, expected: i === 0 ? 1 : 0, events: [{ type: 'Written', data: { i } }] }));
    const recorded = await db.transaction().execute((trx) =>
      store.appendManyInTransaction(trx, appends, {
        batchSize: 3,
        outbox: (rs) => rs.map((r) => ({ eventId: r.eventId, subject: 'test.many', headers: {}, body: '{}' })),
      }),
    );
    expect(recorded.map((r) => [r.streamId, r.streamVersion])).toEqual(appends.map((a, i) => [a.streamId, i === 0 ? 2 : 1]));
    expect(await verifyEventChain(db, schema)).toMatchObject({ ok: true });
    const outbox = await sql<{ n: number }>`select count(*)::int as n from es_test.outbox where subject = 'test.many'`.execute(db);
    expect(outbox.rows[0]!.n).toBe(7);
    const before = await sql<{ n: number }>`select count(*)::int as n from es_test.events`.execute(db);
    const stale = [{ streamId: 'many-new', expected: 0, events: [{ type: 'Written', data: {} }] }, { streamId: 'many-1', expected: 0, events: [{ type: 'Written', data: {} }] }];
    const err = await db.transaction().execute((trx) => store.appendManyInTransaction(trx, stale)).catch((e: unknown) => e);
    expect(isCofferError(err) && err.code).toBe('version_conflict');
    expect((await sql<{ n: number }>`select count(*)::int as n from es_test.events`.execute(db)).rows).toEqual(before.rows);
  });

  it('refuses a schema name that is not a plain identifier', async () => {
    await expect(migrateEventStore(db, 'bad"; drop')).rejects.toThrow(/identifier/);
  });
});
