/**
 * An Airbyte-protocol destination for tests, run as a child process: `spec`, `check`,
 * `write --config --catalog`. Each stream goes to the table `<schema>.<stream>` (`record_key` text
 * unique, `data` jsonb): `append` inserts, `append_dedup` upserts by the catalog's primary key. It
 * commits the records read so far at each STATE message and only then echoes the STATE (the
 * protocol's contract); at the end of its input it commits the rest.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import pg from 'pg';

interface Config {
  host: string;
  port?: number;
  database: string;
  username: string;
  password?: string;
  schema: string;
}
interface ConfiguredStream {
  stream: { name: string };
  destination_sync_mode: string;
  primary_key: string[][];
}

const emit = (message: unknown) => process.stdout.write(`${JSON.stringify(message)}\n`);
process.stdout.on('error', () => process.exit(141));
const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};

async function main(): Promise<void> {
  const verb = process.argv[2];
  if (verb === 'spec') {
    emit({ type: 'SPEC', spec: { connectionSpecification: { type: 'object', properties: { password: { type: 'string', airbyte_secret: true } } } } });
    return;
  }
  const config = JSON.parse(readFileSync(arg('config')!, 'utf8')) as Config;
  const client = new pg.Client({ host: config.host, port: config.port ?? 5432, database: config.database, user: config.username, password: config.password, application_name: 'coffer-test-destination' });
  await client.connect();
  try {
    if (verb === 'check') {
      await client.query('select 1');
      emit({ type: 'CONNECTION_STATUS', connectionStatus: { status: 'SUCCEEDED' } });
      return;
    }
    if (verb !== 'write') throw new Error(`unknown command ${verb}`);
    const catalog = JSON.parse(readFileSync(arg('catalog')!, 'utf8')) as { streams: ConfiguredStream[] };
    const streams = new Map(catalog.streams.map((s) => [s.stream.name, s]));
    const schema = client.escapeIdentifier(config.schema);
    await client.query(`create schema if not exists ${schema}`);
    for (const s of catalog.streams) {
      await client.query(`create table if not exists ${schema}.${client.escapeIdentifier(s.stream.name)} (id bigserial primary key, record_key text unique, data jsonb not null, written_at timestamptz not null default now())`);
    }
    let open = false;
    let written = 0;
    for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
      if (!line.trim()) continue;
      const message = JSON.parse(line) as { type: string; record?: { stream: string; data: Record<string, unknown> }; state?: unknown };
      if (message.type === 'RECORD' && message.record) {
        const s = streams.get(message.record.stream);
        if (!s) throw new Error(`a record of stream ${message.record.stream}, which is not in the catalog`);
        if (!open) {
          await client.query('begin');
          open = true;
        }
        const table = `${schema}.${client.escapeIdentifier(s.stream.name)}`;
        const data = message.record.data;
        if (s.destination_sync_mode === 'append_dedup') {
          const key = JSON.stringify(s.primary_key.map((path) => path.reduce<unknown>((v, f) => (v as Record<string, unknown>)?.[f], data)));
          await client.query(`insert into ${table} (record_key, data) values ($1, $2) on conflict (record_key) do update set data = excluded.data, written_at = now()`, [key, data]);
        } else {
          await client.query(`insert into ${table} (data) values ($1)`, [data]);
        }
        written++;
      } else if (message.type === 'STATE') {
        if (open) await client.query('commit');
        open = false;
        emit(message);
      }
    }
    if (open) await client.query('commit');
    emit({ type: 'LOG', log: { level: 'INFO', message: `wrote ${written} records` } });
  } finally {
    await client.end();
  }
}

main().catch((err: unknown) => {
  emit({ type: 'TRACE', trace: { type: 'ERROR', emitted_at: Date.now(), error: { message: err instanceof Error ? err.message : 'failed' } } });
  process.exit(1);
});
