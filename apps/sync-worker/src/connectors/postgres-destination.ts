import pg from 'pg';
import { ConnectorError, stringField, type DestinationConnector, type SyncRecord } from './connector';
import { createEgressPolicy, type EgressPolicy } from './egress-policy';

const NAME = 'builtin:postgres';
const BATCH = 500;

/**
 * Writes each record as a jsonb row of `<schema>.<table>` (created if missing: id bigserial, data
 * jsonb, synced_at), in read order, in one transaction: all records or none. It connects only where
 * the egress policy (deny private addresses by default) lets it, to the address the policy checked.
 */
export function postgresDestination(options: { egress?: EgressPolicy } = {}): DestinationConnector {
  const egress = options.egress ?? createEgressPolicy();
  return {
    async check(config) {
      const client = await clientFor(config, egress);
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('select 1');
      } catch (err) {
        throw new ConnectorError(`${NAME}: could not connect (${pgReason(err)})`);
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    async write(config, records, signal) {
      const schema = stringField(config, 'schema', NAME);
      const table = stringField(config, 'table', NAME);
      const client = await clientFor(config, egress);
      // A broken connection emits 'error' on the client; the failing query reports it.
      client.on('error', () => undefined);
      try {
        await client.connect();
      } catch (err) {
        throw new ConnectorError(`${NAME}: could not connect (${pgReason(err)})`);
      }
      const target = `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(table)}`;
      let written = 0;
      try {
        await client.query('begin');
        await client.query(`create schema if not exists ${client.escapeIdentifier(schema)}`);
        await client.query(
          `create table if not exists ${target} (id bigserial primary key, data jsonb not null, synced_at timestamptz not null default now())`,
        );
        let batch: SyncRecord[] = [];
        const flush = async () => {
          if (batch.length === 0) return;
          const placeholders = batch.map((_, i) => `($${i + 1}::jsonb)`).join(', ');
          await client.query(`insert into ${target} (data) values ${placeholders}`, batch.map((r) => JSON.stringify(r)));
          written += batch.length;
          batch = [];
        };
        for await (const record of records) {
          if (signal.aborted) throw new ConnectorError(`${NAME}: cancelled`);
          batch.push(record);
          if (batch.length >= BATCH) await flush();
        }
        await flush();
        await client.query('commit');
        return written;
      } catch (err) {
        await client.query('rollback').catch(() => undefined);
        // Only Postgres' own failures are this connector's to explain; anything else (a source that
        // crashed mid-stream) goes up as it is, so it is not blamed on the destination.
        if (err instanceof ConnectorError || !isPgError(err)) throw err;
        throw new ConnectorError(`${NAME}: write failed (${pgReason(err)})`);
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  };
}

async function clientFor(config: Record<string, unknown>, egress: EgressPolicy): Promise<pg.Client> {
  const port = config.port === undefined ? 5432 : Number(config.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConnectorError(`${NAME}: config field port must be a port number`);
  const database = stringField(config, 'database', NAME);
  const user = stringField(config, 'username', NAME);
  // pg resolves a name itself when it connects: give it the checked address, so no second answer counts.
  const target = await egress.resolve(stringField(config, 'host', NAME), port, NAME);
  return new pg.Client({
    host: target.address,
    port,
    database,
    user,
    password: typeof config.password === 'string' ? config.password : undefined,
    connectionTimeoutMillis: 10_000,
    application_name: 'coffer-sync-worker',
  });
}

function isPgError(err: unknown): boolean {
  return err instanceof pg.DatabaseError || (err instanceof Error && typeof (err as Error & { code?: unknown }).code === 'string');
}

// The SQLSTATE and Postgres' message, whole: cutting it here could leave the first characters of a
// secret that the runner's redactor no longer recognizes; the runner bounds the reason after redacting.
function pgReason(err: unknown): string {
  if (err instanceof Error && typeof (err as Error & { code?: unknown }).code === 'string') {
    return `${(err as Error & { code: string }).code}: ${err.message}`;
  }
  return err instanceof Error ? err.name : 'error';
}
