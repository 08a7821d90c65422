import type pg from 'pg';

/** Distinct statements one connection keeps prepared; later ones run unprepared. */
export const PREPARED_PER_CONNECTION = 256;

// "cached plan must not change result type": a table a prepared statement reads changed shape.
const PLAN_INVALID = '0A000';

/**
 * Makes a pooled connection prepare each parameterised statement it runs the first time and only
 * bind and execute it afterwards, so Postgres parses and plans a service's hot statements once per
 * connection instead of on every call. A statement is known by its text (its parameters travel
 * apart); statements without parameters (`begin`, `commit`) go as simple queries, as before. At most
 * `limit` statements are kept per connection (texts that vary with the number of rows, say, cannot
 * fill the server's memory). One whose cached plan a schema change made wrong fails once (Postgres
 * refuses it before running anything, and a transaction around it is aborted) and is never prepared
 * again on that connection: the caller's retry runs it unprepared.
 */
export function prepareRepeatedStatements(client: pg.PoolClient, limit = PREPARED_PER_CONNECTION): void {
  const names = new Map<string, string>();
  const unprepared = new Set<string>();
  let next = 0;
  // The connection's own query, as instrumentation may have wrapped it.
  const query = client.query.bind(client) as (config: unknown, values?: unknown) => Promise<pg.QueryResult>;
  const prepared = async (text: string, values: unknown[]): Promise<pg.QueryResult> => {
    let name = names.get(text);
    if (!name) {
      if (names.size >= limit || unprepared.has(text)) return query(text, values);
      name = `coffer_${(next++).toString(36)}`;
      names.set(text, name);
    }
    try {
      return await query({ name, text, values });
    } catch (err) {
      if ((err as { code?: string }).code === PLAN_INVALID) {
        names.delete(text);
        unprepared.add(text);
      }
      throw err;
    }
  };
  // Only the (text, values) form with parameters and no callback is taken over: kysely's.
  client.query = ((config: unknown, values?: unknown, callback?: unknown) => {
    if (typeof config === 'string' && Array.isArray(values) && values.length > 0 && callback === undefined) return prepared(config, values);
    return (query as (...args: unknown[]) => unknown)(config, values, callback);
  }) as typeof client.query;
}
