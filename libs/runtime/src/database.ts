import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';

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
}

/**
 * A kysely instance over a pg pool; the pool is closed by `db.destroy()`. A pool or client with no
 * 'error' listener ends the process when its connection drops: the pool's listener covers idle
 * connections only, so every client gets its own as it connects, which covers one checked out for a
 * query or a transaction. The query in flight fails (and maps to UNAVAILABLE); the dead connection
 * leaves the pool on release, and the next query opens a new one.
 */
export function createDatabase(url: string, options: DatabaseOptions = {}): Kysely<any> {
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
    // A dying connection can emit twice (the server's FATAL message, then the closed socket): report the first.
    let reported = false;
    client.on('error', (err) => {
      if (reported) return;
      reported = true;
      options.onConnectionError?.(err);
    });
  });
  return new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
}
