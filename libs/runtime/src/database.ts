import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';

/** A kysely instance over a pg pool; the pool is closed by `db.destroy()`. */
export function createDatabase(url: string, options: { max?: number } = {}): Kysely<any> {
  return new Kysely<any>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: options.max ?? 10 }) }),
  });
}
