/**
 * The parts of the Airbyte protocol (JSON lines on stdout) the sync worker speaks: the message
 * types, the configured catalog built from a source's discovered catalog, and per-stream state.
 * Pure functions only.
 */

/** A stream as a source discovers it. */
export interface AirbyteStream {
  name: string;
  namespace?: string;
  json_schema: Record<string, unknown>;
  supported_sync_modes?: ('full_refresh' | 'incremental')[];
  source_defined_cursor?: boolean;
  default_cursor_field?: string[];
  source_defined_primary_key?: string[][];
}

/** How one stream is synced. */
export interface ConfiguredStream {
  stream: AirbyteStream;
  sync_mode: 'full_refresh' | 'incremental';
  cursor_field: string[];
  /** `append` adds every record; `append_dedup` upserts by `primary_key`. */
  destination_sync_mode: 'append' | 'append_dedup' | 'overwrite';
  primary_key: string[][];
}

/** The catalog a sync reads and writes. */
export interface ConfiguredCatalog {
  streams: ConfiguredStream[];
}

/** A STATE message's `state`: per stream (`STREAM`), or the whole connection's blob (`LEGACY`, `data`). */
export interface StateMessage {
  type?: 'STREAM' | 'GLOBAL' | 'LEGACY';
  stream?: { stream_descriptor: { name: string; namespace?: string }; stream_state?: unknown };
  global?: unknown;
  data?: unknown;
}

/** What flows from a source to a destination. */
export type SyncMessage =
  | { type: 'RECORD'; record: { stream: string; namespace?: string; data: Record<string, unknown>; emitted_at: number } }
  | { type: 'STATE'; state: StateMessage };

/** Any message a connector prints. */
export interface AirbyteMessage {
  type: string;
  record?: { stream?: unknown; namespace?: unknown; data?: unknown; emitted_at?: unknown };
  state?: StateMessage;
  log?: { level?: string; message?: string };
  trace?: { type?: string; error?: { message?: string; internal_message?: string; failure_type?: string } };
  connectionStatus?: { status?: string; message?: string };
  catalog?: { streams?: AirbyteStream[] };
  spec?: Record<string, unknown>;
}

/** The built-in HTTP JSON source's one stream, and what a source without a catalog reads. */
export const RECORDS_CATALOG: ConfiguredCatalog = {
  streams: [{ stream: { name: 'records', json_schema: {}, supported_sync_modes: ['full_refresh'] }, sync_mode: 'full_refresh', cursor_field: [], destination_sync_mode: 'append', primary_key: [] }],
};

/** Parses one line of a connector's stdout; undefined when it is not a protocol message (connectors print other things too). */
export function parseMessage(line: string): AirbyteMessage | undefined {
  const text = line.trim();
  if (!text.startsWith('{')) return undefined;
  try {
    const value = JSON.parse(text) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value) && typeof (value as { type?: unknown }).type === 'string') return value as AirbyteMessage;
  } catch {
    // not JSON: logged as the connector's plain output
  }
  return undefined;
}

/**
 * The catalog a sync runs from a discovered one: a stream is read incrementally when it supports it
 * and names its cursor (source-defined or default), and upserted by its source-defined primary key
 * when it has one (`append_dedup`), else appended.
 */
export function configureCatalog(streams: AirbyteStream[]): ConfiguredCatalog {
  return {
    streams: streams.map((stream) => {
      const cursor = stream.default_cursor_field ?? [];
      const incremental = (stream.supported_sync_modes ?? []).includes('incremental') && (stream.source_defined_cursor === true || cursor.length > 0);
      const primaryKey = stream.source_defined_primary_key ?? [];
      return {
        stream,
        sync_mode: incremental ? 'incremental' : 'full_refresh',
        cursor_field: incremental ? cursor : [],
        destination_sync_mode: primaryKey.length > 0 ? 'append_dedup' : 'append',
        primary_key: primaryKey,
      };
    }),
  };
}

/** The key a stream's state is kept under: its namespace and name. */
export function stateKey(state: StateMessage): { namespace: string; stream: string } {
  if (state.type === 'STREAM' && state.stream?.stream_descriptor && typeof state.stream.stream_descriptor.name === 'string') {
    return { namespace: state.stream.stream_descriptor.namespace ?? '', stream: state.stream.stream_descriptor.name };
  }
  // A GLOBAL or LEGACY state covers the whole connection: one slot, replaced each time.
  return { namespace: '', stream: '' };
}

/** Whether a message's `state` is one the worker can keep. */
export function isStateMessage(value: unknown): value is StateMessage {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return false;
  const s = value as StateMessage;
  if (s.type === 'STREAM') return !!s.stream && typeof s.stream.stream_descriptor?.name === 'string';
  if (s.type === 'GLOBAL') return s.global !== undefined;
  return s.data !== undefined;
}

/** The state file a source reads: per-stream states as a list, or a legacy blob as it was. */
export function stateFileContent(states: StateMessage[]): unknown {
  const legacy = states.find((s) => s.type !== 'STREAM' && s.type !== 'GLOBAL');
  if (legacy && states.length === 1) return legacy.data;
  return states;
}

/** The value of a record's primary key, as text to upsert on; undefined when a key field is missing. */
export function recordKey(data: Record<string, unknown>, primaryKey: string[][]): string | undefined {
  const parts: unknown[] = [];
  for (const path of primaryKey) {
    let v: unknown = data;
    for (const field of path) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[field] : undefined;
    if (v === undefined || v === null) return undefined;
    parts.push(v);
  }
  return JSON.stringify(parts);
}
