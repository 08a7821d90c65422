import type { Kysely } from 'kysely';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/nats-core';
import type { MessagingNamespace, ServiceName } from '@coffer/contracts';
import { createEventStore, createOutboxRelay, migrateEventStore, type EventStore, type OutboxRelay } from '@coffer/event-store';
import { connectNats, createJetStreamPublisher, DEFAULT_STREAM_SETTINGS, ensureServiceStream, type StreamSettings } from '@coffer/messaging';
import type { Logger, Redactor } from '@coffer/telemetry';
import { createDatabase } from './database';

/** What every service gets from its runtime: its database, event store, NATS and outbox relay. */
export interface ServiceRuntime {
  db: Kysely<any>;
  store: EventStore;
  nc: NatsConnection;
  namespace: MessagingNamespace;
  relay: OutboxRelay;
  logger: Logger;
  redactor: Redactor;
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
  /** Retention, size limits and replicas of the service's own stream, applied at every start (defaults when omitted). */
  stream?: StreamSettings;
  /** The app's own tables (read models), created after the event store's. */
  migrate?: (db: Kysely<any>, schema: string) => Promise<void>;
}

/** Connects Postgres and NATS, migrates, declares the service's stream and starts its outbox relay. */
export async function startRuntime(options: RuntimeOptions): Promise<ServiceRuntime> {
  const { logger } = options;
  const db = createDatabase(options.databaseUrl, {
    onConnectionError: (err) => logger.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'an idle Postgres connection dropped; the pool opens a new one'),
  });
  let nc: NatsConnection | undefined;
  try {
    await migrateEventStore(db, options.schema);
    await options.migrate?.(db, options.schema);
    nc = await connectNats({ servers: options.natsUrl, name: options.appName });
    await ensureServiceStream(nc, options.namespace, options.service, options.stream ?? DEFAULT_STREAM_SETTINGS);
    const store = createEventStore(db, { schema: options.schema });
    const relay = createOutboxRelay(db, {
      schema: options.schema,
      name: `${options.appName}-outbox`,
      publish: createJetStreamPublisher(nc),
      maxInFlight: 100,
      onError: (err) => logger.warn({ err }, 'outbox relay could not publish; will retry'),
      // Its own connection, outside the pool: LISTEN holds it for the life of the process.
      listen: () => new pg.Client({ connectionString: options.databaseUrl, application_name: `${options.appName}-outbox-listen`, keepAlive: true }),
      onListenError: (err) =>
        logger.warn({ err: { message: (err as Error)?.message, code: (err as { code?: string })?.code } }, 'outbox relay lost its LISTEN connection; polling until it reconnects'),
      onListenRestored: () => logger.info('outbox relay is listening for commits again'),
    });
    relay.start();
    const conn = nc;
    return {
      db,
      store,
      nc: conn,
      namespace: options.namespace,
      relay,
      logger,
      redactor: options.redactor,
      async close() {
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
