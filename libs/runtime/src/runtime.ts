import { hostname } from 'node:os';
import { metrics, type ObservableResult } from '@opentelemetry/api';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/nats-core';
import type { MessagingNamespace, ServiceName } from '@coffer/contracts';
import { createEventStore, createOutboxRelay, outboxBacklog, type EventStore, type EventStoreDatabase, type EventStoreOptions, type OutboxRelay } from '@coffer/event-store';
import { connectNats, createJetStreamPublisher, DEFAULT_STREAM_SETTINGS, ensureServiceStream, type StreamSettings } from '@coffer/messaging';
import type { Logger, ReadinessCheck, Redactor } from '@coffer/telemetry';
import { connectionLoss } from '@coffer/contracts';
import { createDatabase } from './database';
import { createJobLease, type JobLease, type JobLeaseDatabase } from './job-lease';
import type { MigrationMode } from './env';
import { applyMigrations, assertMigrationsCurrent, type ServiceMigrations } from './migrations';
import { DEFAULT_STARTUP_WAIT_MS, defaultStartupRetryable, waitForDependency } from './startup-wait';

/** The tables the runtime itself uses in every service's schema: the event store's and the job lease's. */
export interface RuntimeDatabase extends EventStoreDatabase, JobLeaseDatabase {}

/**
 * What every service gets from its runtime: its database (typed by the service's `Database`
 * interface, which extends {@link RuntimeDatabase}), event store, NATS and outbox relay.
 */
export interface ServiceRuntime<DB extends RuntimeDatabase = RuntimeDatabase> {
  db: Kysely<DB>;
  store: EventStore<DB>;
  nc: NatsConnection;
  namespace: MessagingNamespace;
  relay: OutboxRelay;
  logger: Logger;
  redactor: Redactor;
  /** How long start-up waits for a dependency (`COFFER_STARTUP_WAIT_MS`); the token verification waits as long for auth. */
  startupWaitMs: number;
  /** The lease background jobs run under, so replicas of the service take turns (`startBackgroundJobs(…, { lease })`). */
  jobLease: JobLease;
  /** `/readyz` checks of what the runtime holds: `postgres` (a query answers) and `nats` (the server answers a ping). */
  readiness: Record<'postgres' | 'nats', ReadinessCheck>;
  /** Stops the relay, drains NATS and closes the pool, in that order. */
  close(): Promise<void>;
}

export interface RuntimeOptions {
  service: ServiceName;
  appName: string;
  databaseUrl: string;
  schema: string;
  natsUrl: string;
  namespace: MessagingNamespace;
  logger: Logger;
  redactor: Redactor;
  /**
   * How long start-up keeps retrying Postgres and NATS before giving up with an error naming
   * `DATABASE_URL` or `NATS_URL` (`COFFER_STARTUP_WAIT_MS`). Default 60 s.
   */
  startupWaitMs?: number;
  /** Retention, size limits and replicas of the service's own stream, applied at every start (defaults when omitted). */
  stream?: StreamSettings;
  /** The service's numbered migrations (its event store, job lease and read models), applied or checked at start-up. */
  migrations: ServiceMigrations;
  /**
   * `apply` (default): apply pending migrations (replicas take turns on kysely's advisory lock);
   * `check`: apply none, and fail with an error naming the pending migrations (`COFFER_MIGRATIONS`).
   */
  migrationMode?: MigrationMode;
  /** Prepare parameterised statements once per connection (`COFFER_DB_PREPARED_STATEMENTS`, default true). */
  preparedStatements?: boolean;
  /** Streams that get a hash chain of their own (see `EventStoreOptions.chainOf`). */
  chainOf?: EventStoreOptions['chainOf'];
}

/** NATS errors that pass once the server is up and JetStream has started. */
function natsRetryable(err: unknown): boolean {
  if (defaultStartupRetryable(err)) return true;
  const name = err instanceof Error ? err.name : '';
  return name === 'JetStreamNotEnabled' || name === 'JetStreamStatusError';
}

/** Logs the NATS connection's state changes: a lost broker is a warning and a reconnect, never an exit. */
function watchNats(nc: NatsConnection, logger: Logger): void {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') logger.warn({ server: s.server }, 'lost the NATS connection; reconnecting (the outbox keeps events until it is back)');
      else if (s.type === 'reconnect') logger.info({ server: s.server }, 'NATS connection re-established');
      else if (s.type === 'error') logger.warn({ err: { name: s.error.name, message: s.error.message } }, 'NATS reported an error');
    }
  })().catch(() => undefined);
  // With unlimited reconnects the connection closes only when we close it, or on a fatal server refusal.
  void nc.closed().then((err) => {
    if (err) logger.error({ err: { name: err.name, message: err.message } }, 'the NATS connection closed for good; events wait in the outbox');
  });
}

/**
 * Connects Postgres and NATS (each retried with back-off for up to `startupWaitMs`, naming its
 * setting), applies its migrations (or, in `check` mode, refuses a schema that is not current),
 * declares the service's stream and starts its outbox relay.
 */
export async function startRuntime<DB extends RuntimeDatabase = RuntimeDatabase>(options: RuntimeOptions): Promise<ServiceRuntime<DB>> {
  const { logger } = options;
  const startupWaitMs = options.startupWaitMs ?? DEFAULT_STARTUP_WAIT_MS;
  // One pool, seen as the service's tables by the service and as the runtime's own by the runtime:
  // TypeScript cannot relate kysely instances over a generic table map, though DB extends RuntimeDatabase.
  const serviceDb = createDatabase<DB>(options.databaseUrl, {
    preparedStatements: options.preparedStatements,
    onConnectionError: (err) =>
      logger.warn({ connection: connectionLoss(err) ?? 'postgres', code: (err as { code?: string }).code }, 'a Postgres connection dropped; the pool opens a new one on next use'),
  });
  const db = serviceDb as unknown as Kysely<RuntimeDatabase>;
  let nc: NatsConnection | undefined;
  try {
    await waitForDependency(() => sql`select 1`.execute(db), { what: 'Postgres', setting: 'DATABASE_URL', totalMs: startupWaitMs, logger });
    if (options.migrationMode === 'check') {
      await assertMigrationsCurrent(db, options.schema, options.migrations);
    } else {
      const applied = await applyMigrations(db, options.schema, options.migrations);
      if (applied.length > 0) logger.info({ schema: options.schema, migrations: applied }, 'applied database migrations');
    }
    nc = await waitForDependency(
      async (remainingMs) => {
        const conn = await connectNats({ servers: options.natsUrl, name: options.appName, timeoutMs: Math.min(remainingMs, 20_000) });
        try {
          await ensureServiceStream(conn, options.namespace, options.service, options.stream ?? DEFAULT_STREAM_SETTINGS);
        } catch (err) {
          await conn.close().catch(() => undefined);
          throw err;
        }
        return conn;
      },
      { what: 'NATS JetStream', setting: 'NATS_URL', totalMs: startupWaitMs, logger, retryable: natsRetryable },
    );
    watchNats(nc, logger);
    const store = createEventStore(serviceDb, { schema: options.schema, chainOf: options.chainOf });
    const relay = createOutboxRelay(db, {
      schema: options.schema,
      name: `${options.appName}-outbox`,
      publish: createJetStreamPublisher(nc),
      maxInFlight: 100,
      onError: (err) => logger.warn({ err, connection: connectionLoss(err) }, 'outbox relay round failed; it retries from the last acknowledged event'),
      // Its own connection, outside the pool: LISTEN holds it for the life of the process.
      listen: () => new pg.Client({ connectionString: options.databaseUrl, application_name: `${options.appName}-outbox-listen`, keepAlive: true }),
      onListenError: (err) =>
        logger.warn({ err: { message: (err as Error)?.message, code: (err as { code?: string })?.code } }, 'outbox relay lost its LISTEN connection; polling until it reconnects'),
      onListenRestored: () => logger.info('outbox relay is listening for commits again'),
    });
    relay.start();
    const conn = nc;
    const relayName = `${options.appName}-outbox`;
    // Counted only when metrics are collected (a scrape or an export), never on a timer of its own.
    const backlog = metrics.getMeter('@coffer/runtime').createObservableGauge('coffer.outbox.backlog', { description: 'outbox messages not yet published (counted up to 100 000)' });
    const observeBacklog = async (result: ObservableResult) => {
      const n = await outboxBacklog(db, options.schema, relayName).catch(() => undefined);
      if (n !== undefined) result.observe(n);
    };
    backlog.addCallback(observeBacklog);
    return {
      db: serviceDb,
      store,
      nc: conn,
      namespace: options.namespace,
      relay,
      logger,
      redactor: options.redactor,
      startupWaitMs,
      jobLease: createJobLease(db, options.schema, `${options.appName}@${hostname()}:${process.pid}`),
      readiness: {
        postgres: () => sql`select 1`.execute(db),
        nats: async () => {
          if (conn.isClosed()) throw new Error('closed');
          await conn.flush();
        },
      },
      async close() {
        backlog.removeCallback(observeBacklog);
        await relay.stop();
        await conn.drain();
        await db.destroy();
      },
    };
  } catch (err) {
    await nc?.close().catch(() => undefined);
    await db.destroy().catch(() => undefined);
    throw err;
  }
}
