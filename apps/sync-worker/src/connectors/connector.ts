/** One record read from a source; written to the destination as is. */
export type SyncRecord = Record<string, unknown>;

/** What a source offers: one entry per stream, with the JSON Schema of its records. */
export interface Catalog {
  streams: { name: string; json_schema: Record<string, unknown> }[];
}

/** A source reads records with a hydrated config; it must not log or return the config. */
export interface SourceConnector {
  read(config: Record<string, unknown>, signal: AbortSignal): AsyncIterable<SyncRecord>;
  /** Resolves when the config works; throws a ConnectorError saying why not. */
  check(config: Record<string, unknown>, signal: AbortSignal): Promise<void>;
  discover(config: Record<string, unknown>, signal: AbortSignal): Promise<Catalog>;
}

/** A destination writes every record or none; it returns how many it wrote. */
export interface DestinationConnector {
  write(config: Record<string, unknown>, records: AsyncIterable<SyncRecord>, signal: AbortSignal): Promise<number>;
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
