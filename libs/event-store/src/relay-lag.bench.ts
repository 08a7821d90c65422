/**
 * Relay lag benchmark: appends events at a fixed rate against real Postgres and NATS JetStream and
 * measures, per event, the time from the append's commit to its arrival at a subscriber of the
 * stream (a process of its own, as a real subscriber is). Prints p50/p95/p99/max and the achieved
 * rate, and checks per-stream order and that each event arrived exactly once.
 *
 *   npx tsx libs/event-store/src/relay-lag.bench.ts [--rate 1000] [--seconds 10] [--writers 4] [--streams 100] [--per-append 10] [--in-flight 100]
 *
 * `--per-append N` commits N events per transaction (one on each of N streams, as a multi-stream
 * append does); the rate counts events, so transactions run at rate / N. One event per
 * transaction at 1,000/s needs a Postgres that commits 1,000 appends a second: appends to one
 * schema take turns on its hash-chain lock. `--in-flight` is the relay's `maxInFlight` (the
 * services use 100).
 *
 * DATABASE_URL (an admin URL; a scratch database is created and dropped) and NATS_URL (a scratch
 * stream is created and deleted) default to 127.0.0.1. The relay publishes an event only once every
 * transaction that began before it on the whole Postgres server has ended, so long transactions of
 * other databases on the same server show up in the figures.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createJetStreamPublisher } from '@coffer/messaging';
import { createEventStore, createOutboxRelay, migrateEventStore, type EventStoreDatabase, type OutboxMessage } from './index';

/** Milliseconds on the wall clock, comparable between the writer's and the subscriber's processes. */
const wallNow = () => performance.timeOrigin + performance.now();

/** One arrival at the subscriber: event id, wall-clock time, stream id, stream version. */
type Arrival = [string, number, string, number];

// The subscriber process: follows the stream from its start and reports every arrival when told to stop.
const subscribeTo = process.env.RELAY_LAG_BENCH_STREAM;
if (subscribeTo) {
  const nc = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222', name: 'relay-lag-bench-subscriber' });
  const messages = await (await jetstream(nc).consumers.get(subscribeTo)).consume();
  process.on('message', () => messages.stop());
  process.send!({ ready: true });
  const arrivals: Arrival[] = [];
  const progress = setInterval(() => process.send!({ received: arrivals.length }), 50);
  for await (const m of messages) {
    arrivals.push([m.headers?.get('ce-id') ?? '', wallNow(), m.headers?.get('ce-subject') ?? '', Number(m.headers?.get('x-stream-version'))]);
  }
  clearInterval(progress);
  await nc.close();
  process.send!({ arrivals }, () => process.exit(0));
  await new Promise(() => undefined);
}

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    writers: { type: 'string', default: '4' },
    streams: { type: 'string', default: '100' },
    'per-append': { type: 'string', default: '10' },
    'in-flight': { type: 'string', default: '100' },
  },
});
const rate = Number(args.rate);
const seconds = Number(args.seconds);
const writers = Number(args.writers);
const streams = Number(args.streams);
const perAppend = Number(args['per-append']);
const inFlight = Number(args['in-flight']);
for (const [name, v] of Object.entries({ rate, seconds, writers, streams, 'per-append': perAppend, 'in-flight': inFlight })) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
}
if (!Number.isInteger(perAppend) || perAppend > streams) throw new Error('--per-append must be a whole number no larger than --streams');
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const natsUrl = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const out = (line: string) => process.stdout.write(`${line}\n`);

const id = randomBytes(4).toString('hex');
const database = `coffer_relay_bench_${id}`;
const schema = 'bench';
const streamName = `COFFER_RELAY_BENCH_${id.toUpperCase()}`;
const subject = `coffer_relay_bench_${id}.event`;

async function admin(query: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  c.on('error', () => undefined);
  await c.connect();
  try {
    await c.query(query);
  } finally {
    await c.end();
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

await admin(`CREATE DATABASE "${database}"`);
const dbUrl = new URL(adminUrl);
dbUrl.pathname = `/${database}`;
const pool = new pg.Pool({ connectionString: dbUrl.toString(), max: writers + 2 });
pool.on('error', () => undefined);
pool.on('connect', (client) => client.on('error', () => undefined));
const db = new Kysely<EventStoreDatabase>({ dialect: new PostgresDialect({ pool }) });
const nc = await connect({ servers: natsUrl, name: 'relay-lag-bench' });
const jsm = await jetstreamManager(nc);

try {
  await migrateEventStore(db, schema);
  await jsm.streams.add({ name: streamName, subjects: [`${subject.split('.')[0]}.>`], duplicate_window: 120_000_000_000 });
  const store = createEventStore(db, { schema });
  const publish = createJetStreamPublisher(nc);
  const ackedAt = new Map<string, number>();
  const relay = createOutboxRelay(db, {
    schema,
    name: 'bench',
    publish: async (m, previousEventId) => {
      await publish(m, previousEventId);
      ackedAt.set(m.eventId, wallNow());
    },
    maxInFlight: inFlight,
    listen: () => new pg.Client({ connectionString: dbUrl.toString(), application_name: 'relay-lag-bench-listen' }),
    onError: (err) => out(`relay error: ${(err as Error).message}`),
    onListenError: (err) => out(`listen error: ${(err as Error).message}`),
  });

  const committedAt = new Map<string, number>();
  const appendMs: number[] = [];
  const subscriber = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, NATS_URL: natsUrl, RELAY_LAG_BENCH_STREAM: streamName }, execArgv: process.execArgv });
  let received = 0;
  const arrivals = new Promise<Arrival[]>((resolve, reject) => {
    subscriber.on('message', (m: { received?: number; arrivals?: Arrival[] }) => {
      if (m.received !== undefined) received = m.received;
      if (m.arrivals) resolve(m.arrivals);
    });
    subscriber.on('exit', (code) => reject(new Error(`the subscriber exited (${code})`)));
  });
  await new Promise<void>((resolve, reject) => {
    subscriber.once('message', () => resolve());
    subscriber.once('error', reject);
  });

  relay.start();
  for (let i = 0; i < 500 && !relay.listening(); i++) await sleep(10);
  if (!relay.listening()) throw new Error('the relay did not start listening');

  const transactions = Math.round((rate * seconds) / perAppend);
  const total = transactions * perAppend;
  const interval = (1000 * perAppend) / rate;
  const toMessages = (recorded: { eventId: string; streamId: string; streamVersion: number }[]): OutboxMessage[] =>
    recorded.map((r) => ({
      eventId: r.eventId,
      subject,
      headers: { 'ce-id': r.eventId, 'ce-subject': r.streamId, 'x-stream-version': String(r.streamVersion) },
      body: JSON.stringify({ id: r.eventId }),
    }));
  let next = 0;
  let late = 0;
  const t0 = performance.now() + 50;
  // Each writer takes the next due transaction, waits for its time slot and commits it.
  const writer = async () => {
    while (next < transactions) {
      const i = next++;
      const due = t0 + i * interval;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      else if (wait < -5) late++;
      const started = performance.now();
      const appends = Array.from({ length: perAppend }, (_, j) => ({
        streamId: `bench-${(i * perAppend + j) % streams}`,
        expected: 'any' as const,
        events: [{ type: 'BenchEvent', data: { i, j } }],
      }));
      const recorded = await db.transaction().execute((trx) => store.appendManyInTransaction(trx, appends, { outbox: toMessages }));
      const done = performance.now();
      const committed = wallNow();
      for (const r of recorded) committedAt.set(r.eventId, committed);
      appendMs.push(done - started);
    }
  };
  await Promise.all(Array.from({ length: writers }, writer));
  const writeEnd = performance.now();
  const achieved = total / ((writeEnd - t0) / 1000);

  const drainDeadline = performance.now() + 30_000;
  while (received < committedAt.size && performance.now() < drainDeadline) await sleep(20);
  await relay.stop();
  subscriber.send('stop');
  const arrivedAt = new Map<string, number>();
  let duplicates = 0;
  let outOfOrder = 0;
  const lastVersion = new Map<string, number>();
  for (const [eventId, at, streamId, version] of await arrivals) {
    if (arrivedAt.has(eventId)) {
      duplicates++;
      continue;
    }
    arrivedAt.set(eventId, at);
    if ((lastVersion.get(streamId) ?? 0) + 1 !== version) outOfOrder++;
    lastVersion.set(streamId, version);
  }

  const lags = [...committedAt].filter(([e]) => arrivedAt.has(e)).map(([e, t]) => arrivedAt.get(e)! - t).sort((a, b) => a - b);
  const missing = committedAt.size - lags.length;
  const toAck = [...committedAt].filter(([e]) => ackedAt.has(e)).map(([e, t]) => ackedAt.get(e)! - t).sort((a, b) => a - b);
  appendMs.sort((a, b) => a - b);
  const f = (n: number) => n.toFixed(1);
  out(`machine: ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  out(`events appended: ${total} by ${writers} writers over ${streams} streams, ${perAppend} per transaction`);
  out(`target rate: ${rate}/s   achieved: ${achieved.toFixed(0)}/s over ${((writeEnd - t0) / 1000).toFixed(2)} s (${late} transactions started >5 ms late)`);
  out(`transaction (begin → commit acknowledged): p50 ${f(percentile(appendMs, 50))} ms  p99 ${f(percentile(appendMs, 99))} ms`);
  out(`commit → received on the stream: p50 ${f(percentile(lags, 50))} ms  p95 ${f(percentile(lags, 95))} ms  p99 ${f(percentile(lags, 99))} ms  max ${f(lags.at(-1) ?? NaN)} ms`);
  out(`of which commit → acknowledged to the relay: p50 ${f(percentile(toAck, 50))} ms  p99 ${f(percentile(toAck, 99))} ms`);
  out(`missing: ${missing}   duplicates: ${duplicates}   out of order within a stream: ${outOfOrder}`);
  if (missing > 0 || duplicates > 0 || outOfOrder > 0) process.exitCode = 1;
} finally {
  await jsm.streams.delete(streamName).catch(() => undefined);
  await nc.close();
  await db.destroy();
  await admin(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
}
