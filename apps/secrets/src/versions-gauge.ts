import { metrics, type ObservableResult } from '@opentelemetry/api';
import { sql, type Kysely } from 'kysely';
import type { SecretsDatabase } from './secrets.database';

/**
 * `coffer.secrets.versions.active`: secret versions that still hydrate (not destroyed or expired).
 * Counted only when metrics are collected (a scrape or an export), at most once per `minIntervalMs`
 * (a count over millions of rows is not free); between counts the last one is reported again.
 */
export function observeActiveVersions(db: Kysely<SecretsDatabase>, schema: string, minIntervalMs = 15_000): () => void {
  const gauge = metrics.getMeter('@coffer/secrets').createObservableGauge('coffer.secrets.versions.active', { description: 'secret versions that can be hydrated (not destroyed or expired)' });
  let last: { at: number; n: number } | undefined;
  const observe = async (result: ObservableResult) => {
    if (!last || Date.now() - last.at >= minIntervalMs) {
      const counted = await sql<{ n: string }>`select count(*)::text as n from ${sql.id(schema)}.secret_versions where state = 'active'`
        .execute(db)
        .then((r) => Number(r.rows[0]!.n))
        .catch(() => undefined);
      if (counted !== undefined) last = { at: Date.now(), n: counted };
    }
    if (last) result.observe(last.n);
  };
  gauge.addCallback(observe);
  return () => gauge.removeCallback(observe);
}
