/**
 * An Airbyte-protocol source for tests, run as a child process: `spec`, `check`, `discover`,
 * `read --config --catalog [--state]`. It emits `records_per_stream` records (ids 1..N, cursor
 * `updated_at` = id) on each stream of `streams`, at most `records_per_second`, with a STATE message
 * every `state_every` records; with a state it emits only the records after the stream's cursor.
 * `fail_after` fails the read after that many records; `hostile` prints its config and throws an
 * error holding `api_key`; `hostile_state` puts `api_key` into the STATE message it emits after its
 * first record; `check_delay_ms` answers `check` only after that long.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

interface Config {
  api_key: string;
  streams?: string[];
  records_per_stream?: number;
  records_per_second?: number;
  state_every?: number;
  primary_key?: boolean;
  fail_after?: number;
  hostile?: boolean;
  hostile_state?: boolean;
  check_delay_ms?: number;
}

const spec = {
  type: 'object',
  required: ['api_key'],
  properties: {
    api_key: { type: 'string', airbyte_secret: true },
    streams: { type: 'array', items: { type: 'string' } },
    records_per_stream: { type: 'integer' },
    records_per_second: { type: 'number' },
    state_every: { type: 'integer' },
    primary_key: { type: 'boolean' },
    fail_after: { type: 'integer' },
    hostile: { type: 'boolean' },
    hostile_state: { type: 'boolean' },
    check_delay_ms: { type: 'integer' },
  },
};

const emit = (message: unknown) =>
  new Promise<void>((resolve) => {
    if (process.stdout.write(`${JSON.stringify(message)}\n`)) resolve();
    else process.stdout.once('drain', resolve);
  });
const log = (message: string) => emit({ type: 'LOG', log: { level: 'INFO', message } });
// The worker gone (its end of the pipe closed): nothing more to say to anyone.
process.stdout.on('error', () => process.exit(141));

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const readJson = <T>(name: string): T | undefined => {
  const path = arg(name);
  return path ? (JSON.parse(readFileSync(path, 'utf8')) as T) : undefined;
};

async function main(): Promise<void> {
  const verb = process.argv[2];
  if (verb === 'spec') return emit({ type: 'SPEC', spec: { connectionSpecification: spec } });
  const config = readJson<Config>('config');
  if (!config) throw new Error('--config is required');
  if (config.hostile) {
    // Everything a careless connector does with a credential.
    process.stdout.write(`my config is ${JSON.stringify(config)}\n`);
    process.stderr.write(`debug: api_key=${config.api_key}\n`);
    await log(`connecting with ${config.api_key}`);
    await emit({ type: 'TRACE', trace: { type: 'ERROR', emitted_at: Date.now(), error: { message: `the API refused ${config.api_key}`, internal_message: `key ${config.api_key}`, failure_type: 'config_error' } } });
    throw new Error(`cannot continue with ${config.api_key}`);
  }
  const streams = config.streams ?? ['items'];
  if (verb === 'check' && config.check_delay_ms) await sleep(config.check_delay_ms);
  if (verb === 'check') return emit({ type: 'CONNECTION_STATUS', connectionStatus: { status: config.api_key ? 'SUCCEEDED' : 'FAILED', message: config.api_key ? undefined : 'no api_key' } });
  if (verb === 'discover') {
    return emit({
      type: 'CATALOG',
      catalog: {
        streams: streams.map((name) => ({
          name,
          json_schema: { type: 'object', properties: { id: { type: 'integer' }, updated_at: { type: 'integer' }, name: { type: 'string' } } },
          supported_sync_modes: ['full_refresh', 'incremental'],
          source_defined_cursor: true,
          default_cursor_field: ['updated_at'],
          ...(config.primary_key !== false && { source_defined_primary_key: [['id']] }),
        })),
      },
    });
  }
  if (verb !== 'read') throw new Error(`unknown command ${verb}`);
  const configPath = arg('config')!;
  await log(`environment: ${Object.keys(process.env).filter((k) => !k.startsWith('TSX')).sort().join(',')}`);
  await log(`config file mode ${(statSync(configPath).mode & 0o777).toString(8)}, folder mode ${(statSync(dirname(configPath)).mode & 0o777).toString(8)}`);
  const catalog = readJson<{ streams: { stream: { name: string }; sync_mode: string }[] }>('catalog');
  if (!catalog) throw new Error('--catalog is required');
  const state = readJson<unknown>('state');
  const cursors = new Map<string, number>();
  if (Array.isArray(state)) {
    for (const s of state as { stream?: { stream_descriptor: { name: string }; stream_state?: { cursor?: number } } }[]) {
      if (s.stream && typeof s.stream.stream_state?.cursor === 'number') cursors.set(s.stream.stream_descriptor.name, s.stream.stream_state.cursor);
    }
  }
  const total = config.records_per_stream ?? 10;
  const every = Math.max(1, config.state_every ?? 10);
  const pause = config.records_per_second ? 1000 / config.records_per_second : 0;
  let emitted = 0;
  for (const configured of catalog.streams) {
    const name = configured.stream.name;
    const after = configured.sync_mode === 'incremental' ? (cursors.get(name) ?? 0) : 0;
    await log(`stream ${name}: reading after cursor ${after}, ${Math.max(0, total - after)} records`);
    let last = after;
    for (let id = after + 1; id <= total; id++) {
      if (config.fail_after !== undefined && emitted >= config.fail_after) {
        await emit({ type: 'TRACE', trace: { type: 'ERROR', emitted_at: Date.now(), error: { message: `failing after ${emitted} records as configured`, failure_type: 'system_error' } } });
        process.exit(1);
      }
      if (pause) await sleep(pause);
      await emit({ type: 'RECORD', record: { stream: name, data: { id, updated_at: id, name: `${name}-${id}` }, emitted_at: Date.now() } });
      emitted++;
      last = id;
      if (config.hostile_state && emitted === 1) {
        // A state that smuggles the credential out, for the worker to keep in its tables and events.
        await emit({ type: 'STATE', state: { type: 'STREAM', stream: { stream_descriptor: { name }, stream_state: { cursor: id, token: config.api_key } } } });
      }
      if ((id - after) % every === 0) await emit({ type: 'STATE', state: { type: 'STREAM', stream: { stream_descriptor: { name }, stream_state: { cursor: id } } } });
    }
    await emit({ type: 'STATE', state: { type: 'STREAM', stream: { stream_descriptor: { name }, stream_state: { cursor: last } } } });
  }
  await log(`emitted ${emitted} records`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
