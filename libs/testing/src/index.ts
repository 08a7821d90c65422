import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { MessagingNamespace } from '@coffer/contracts';
import type {} from './provided-context';

export { latencyFigures, median, p99, timedSeries } from './latency';

/** The admin Postgres URL of this test run (container or DATABASE_URL). */
export function adminDatabaseUrl(): string {
  return inject('databaseUrl');
}

/** The NATS URL of this test run (container or NATS_URL). */
export function testNatsUrl(): string {
  return inject('natsUrl');
}

/** A short random lowercase id for names that must not collide between test files. */
export function uniqueId(): string {
  return randomBytes(5).toString('hex');
}

/** A database of one test file's own, dropped by `drop()`. */
export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Creates a fresh database on the run's Postgres server; a database costs milliseconds, a server seconds. */
export function createTestDatabase(prefix = 'coffer_test'): Promise<TestDatabase> {
  return createDatabase(adminDatabaseUrl(), prefix);
}

/** Creates a fresh database named `<prefix>_<random>` on the server of `admin` (outside vitest too, e.g. the benchmark). */
export async function createDatabase(admin: string, prefix: string): Promise<TestDatabase> {
  const name = `${prefix}_${uniqueId()}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  return {
    name,
    url: withDatabase(admin, name),
    async drop() {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A messaging namespace (subject root and stream prefix) no other test file uses. */
export function uniqueNamespace(): MessagingNamespace {
  const id = uniqueId();
  return { subjectRoot: `coffer_t${id}`, streamPrefix: `COFFER_T${id.toUpperCase()}` };
}

/** Deletes every JetStream stream whose name starts with the namespace's prefix. */
export async function deleteStreams(natsUrl: string, ns: MessagingNamespace): Promise<void> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    for await (const si of jsm.streams.list()) {
      if (si.config.name.startsWith(`${ns.streamPrefix}_`)) await jsm.streams.delete(si.config.name);
    }
  } finally {
    await nc.close();
  }
}
