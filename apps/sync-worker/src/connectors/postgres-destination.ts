import pg from 'pg';
import { RECORDS_CATALOG, recordKey, type SyncMessage } from './airbyte-protocol';
import { ConnectorError, stringField, type DestinationConnector } from './connector';
import { createEgressPolicy, type EgressPolicy } from './egress-policy';

const NAME = 'builtin:postgres';
const BATCH = 500;

/**
 * Writes each record as a jsonb row of `<schema>.<table>` (created if missing: id bigserial, data
 * jsonb, synced_at, stream, record_key), in read order: appended, or upserted by the catalog's
 * primary key (`append_dedup`, unique on stream and key). The records before each STATE message
 * commit in one transaction before the state is handed back; without states, all records or none.
 * It connects only where the egress policy (deny private addresses by default) lets it, to the
 * address the policy checked.
 */
export function postgresDestination(options: { egress?: EgressPolicy } = {}): DestinationConnector {
  const egress = options.egress ?? createEgressPolicy();
  const destination: DestinationConnector = {
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
      async function* asMessages(): AsyncGenerator<SyncMessage> {
        for await (const data of records) yield { type: 'RECORD', record: { stream: 'records', data, emitted_at: 0 } };
      }
      return destination.writeMessages!(config, RECORDS_CATALOG, asMessages(), async () => undefined, signal);
    },
    async writeMessages(config, catalog, messages, committed, signal) {
      const schema = stringField(config, 'schema', NAME);
      const table = stringField(config, 'table', NAME);
      const streams = new Map(catalog.streams.map((s) => [streamId(s.stream.name, s.stream.namespace), s]));
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
      let open = false;
      try {
        await client.query(`create schema if not exists ${client.escapeIdentifier(schema)}`);
        await client.query(`create table if not exists ${target} (id bigserial primary key, data jsonb not null, synced_at timestamptz not null default now())`);
        await client.query(`alter table ${target} add column if not exists stream text, add column if not exists record_key text`);
        await client.query(`create unique index if not exists ${client.escapeIdentifier(`${table}_stream_key`)} on ${target} (stream, record_key)`);
        let batch: { stream: string; key?: string; data: Record<string, unknown> }[] = [];
        let dedup = false;
        const flush = async () => {
          if (batch.length === 0) return;
          if (!open) {
            await client.query('begin');
            open = true;
          }
          // One statement may not upsert a key twice: the last record of a key wins, as it would row by row.
          const rows = dedup ? [...new Map(batch.map((r) => [r.key, r])).values()] : batch;
          const placeholders = rows.map((_, i) => `($${i * 3 + 1}, $${i * 3 + 2}, $${i * 3 + 3}::jsonb)`).join(', ');
          const conflict = dedup ? ' on conflict (stream, record_key) do update set data = excluded.data, synced_at = now()' : '';
          await client.query(`insert into ${target} (stream, record_key, data) values ${placeholders}${conflict}`, rows.flatMap((r) => [r.stream, r.key ?? null, JSON.stringify(r.data)]));
          written += batch.length;
          batch = [];
        };
        const commit = async () => {
          await flush();
          if (open) await client.query('commit');
          open = false;
        };
        for await (const message of messages) {
          if (signal.aborted) throw new ConnectorError(`${NAME}: cancelled`);
          if (message.type === 'STATE') {
            // Every record before this state is durable before the state is handed back.
            await commit();
            await committed(message.state);
            continue;
          }
          const id = streamId(message.record.stream, message.record.namespace);
          const configured = streams.get(id);
          if (!configured) throw new ConnectorError(`${NAME}: a record of stream ${message.record.stream}, which the catalog does not name`);
          const upsert = configured.destination_sync_mode === 'append_dedup' && configured.primary_key.length > 0;
          let key: string | undefined;
          if (upsert) {
            key = recordKey(message.record.data, configured.primary_key);
            if (key === undefined) throw new ConnectorError(`${NAME}: a record of stream ${message.record.stream} lacks its primary key`);
          }
          if (batch.length > 0 && (batch[0]!.stream !== id || dedup !== upsert)) await flush();
          dedup = upsert;
          batch.push({ stream: id, key, data: message.record.data });
          if (batch.length >= BATCH) await flush();
        }
        await commit();
        return written;
      } catch (err) {
        if (open) await client.query('rollback').catch(() => undefined);
        // Only Postgres' own failures are this connector's to explain; anything else (a source that
        // crashed mid-stream) goes up as it is, so it is not blamed on the destination.
        if (err instanceof ConnectorError || !isPgError(err)) throw err;
        throw new ConnectorError(`${NAME}: write failed (${pgReason(err)})`);
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  };
  return destination;
}

/** A stream's name in the table: `namespace.name`, or the name alone. */
function streamId(name: string, namespace?: string): string {
  return namespace ? `${namespace}.${name}` : name;
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
