import { Kysely, PostgresDialect, type ColumnType } from 'kysely';
import pg from 'pg';
import { prepareRepeatedStatements } from './prepared-statements';

/** A `timestamptz` column of a `Database` interface: read as a Date, written as a Date or an ISO string. */
export type Timestamp = ColumnType<Date, Date | string, Date | string>;

/** A nullable `timestamptz` column (null when not given on insert). */
export type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

/** Options of {@link createDatabase}. */
export interface DatabaseOptions {
  /** Most connections the pool opens (10). */
  max?: number;
  /** How long opening a connection may take before the query fails (10 s); a blackholed server fails the call instead of hanging it. */
  connectionTimeoutMs?: number;
  /**
   * Told when a pooled connection dies (the server restarted or terminated it), idle or checked out;
   * the query in flight on it fails, and the pool opens a new connection on next use.
   */
  onConnectionError?: (err: Error) => void;
  /**
   * Prepare parameterised statements once per connection (true): for a server behind a pooler
   * that cannot carry prepared statements from one transaction to the next, false.
   */
  preparedStatements?: boolean;
}

/**
 * A kysely instance over a pg pool; the pool is closed by `db.destroy()`. A pool or client with no
 * 'error' listener ends the process when its connection drops: the pool's listener covers idle
 * connections only, so every client gets its own as it connects, which covers one checked out for a
 * query or a transaction. The query in flight fails (and maps to UNAVAILABLE); the dead connection
 * leaves the pool on release, and the next query opens a new one. `DB` is the schema's tables (a
 * service's `Database` interface).
 */
export function createDatabase<DB>(url: string, options: DatabaseOptions = {}): Kysely<DB> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
    // A peer that vanished without a FIN (a crashed host, a dropped route) is noticed on a held connection too.
    keepAlive: true,
  });
  // The pool re-emits an idle client's error, which the client's own listener has already reported.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    if (options.preparedStatements !== false) prepareRepeatedStatements(client);
    // A dying connection can emit twice (the server's FATAL message, then the closed socket): report the first.
    let reported = false;
    client.on('error', (err) => {
      if (reported) return;
      reported = true;
      options.onConnectionError?.(err);
    });
  });
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
}
