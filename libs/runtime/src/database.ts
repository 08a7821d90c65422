import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';

/** Options of {@link createDatabase}. */
export interface DatabaseOptions {
  /** Most connections the pool opens (10). */
  max?: number;
  /** Told when an idle pooled connection dies (the server restarted or terminated it); the pool replaces it on next use. */
  onConnectionError?: (err: Error) => void;
}

/**
 * A kysely instance over a pg pool; the pool is closed by `db.destroy()`. A pool with no 'error'
 * listener ends the process when an idle connection drops, so one is always attached: the dead
 * connection leaves the pool and the next query opens a new one.
 */
export function createDatabase(url: string, options: DatabaseOptions = {}): Kysely<any> {
  const pool = new pg.Pool({ connectionString: url, max: options.max ?? 10 });
  pool.on('error', (err) => options.onConnectionError?.(err));
  return new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
}
