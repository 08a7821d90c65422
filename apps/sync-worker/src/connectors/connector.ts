import type { ConfiguredCatalog, StateMessage, SyncMessage } from './airbyte-protocol';

/** One record read from a source; written to the destination as is. */
export type SyncRecord = Record<string, unknown>;

/** What a source offers: one entry per stream, with the JSON Schema of its records. */
export interface Catalog {
  streams: { name: string; json_schema: Record<string, unknown> }[];
}

/** A source reads records with a hydrated config; it must not log or return the config. */
export interface SourceConnector {
  read(config: Record<string, unknown>, signal: AbortSignal): AsyncIterable<SyncRecord>;
  /**
   * The catalog a sync reads: each stream with its sync mode, cursor, and how the destination
   * writes it. Without it the source is one full-refresh stream `records` appended as it is.
   */
  configure?(config: Record<string, unknown>, signal: AbortSignal): Promise<ConfiguredCatalog>;
  /** Records and STATE messages for `catalog`, resuming each stream after the `state` given (the last committed). */
  readMessages?(config: Record<string, unknown>, catalog: ConfiguredCatalog, state: StateMessage[], signal: AbortSignal): AsyncIterable<SyncMessage>;
  /** Resolves when the config works; throws a ConnectorError saying why not. */
  check(config: Record<string, unknown>, signal: AbortSignal): Promise<void>;
  discover(config: Record<string, unknown>, signal: AbortSignal): Promise<Catalog>;
}

/** A destination writes every record or none; it returns how many it wrote. */
export interface DestinationConnector {
  write(config: Record<string, unknown>, records: AsyncIterable<SyncRecord>, signal: AbortSignal): Promise<number>;
  /**
   * Writes RECORD messages by the catalog's destination sync mode and primary key, and calls
   * `committed` with each STATE message only once every record before it is durably written
   * (the Airbyte protocol's contract); resolves with the records written.
   */
  writeMessages?(
    config: Record<string, unknown>,
    catalog: ConfiguredCatalog,
    messages: AsyncIterable<SyncMessage>,
    committed: (state: StateMessage) => Promise<void>,
    signal: AbortSignal,
  ): Promise<number>;
  /** Resolves when the config works; throws a ConnectorError saying why not. */
  check(config: Record<string, unknown>, signal: AbortSignal): Promise<void>;
}

/** A connector failure whose message is safe to record: it names what failed, never a config value. */
export class ConnectorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectorError';
  }
}

/** @internal Reads a required string field of a hydrated config. */
export function stringField(config: Record<string, unknown>, field: string, connector: string): string {
  const v = config[field];
  if (typeof v !== 'string' || v === '') throw new ConnectorError(`${connector}: config field ${field} must be a non-empty string`);
  return v;
}

/**
 * @internal Parses a JSON object, failing with a ConnectorError that names only `what`: a parse
 * error's own message quotes the text around the fault, which may be a secret.
 */
export function parseObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ConnectorError(`${what} is not valid JSON`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConnectorError(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** The API refused the credential (HTTP 401): with OAuth, the access token is refreshed and the run tried once more. */
export class AccessTokenRejectedError extends ConnectorError {
  constructor(message: string) {
    super(message);
    this.name = 'AccessTokenRejectedError';
  }
}
