import { isCofferError } from './errors';

// SQLSTATE class 08 (connection exception) is matched by prefix; these are the rest that mean "the
// server went away or is not taking connections yet", where the same statement may work a moment later.
const LOST_SQLSTATES = new Set([
  '57P01', // admin_shutdown: pg_terminate_backend, or a fast shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: starting up or in recovery
  '53300', // too_many_connections
]);

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTCONN', 'ECONNABORTED', 'EAI_AGAIN']);

// nats.js error classes for a connection that is down, closing or not answering.
const NATS_NAMES = new Set(['ConnectionError', 'ClosedConnectionError', 'DrainingConnectionError', 'TimeoutError', 'NoResponders', 'RequestError']);

// node-postgres raises these as plain Errors with no code.
const PG_MESSAGES = [
  /^Connection terminated/,
  /^Client has encountered a connection error and is not queryable$/,
  /^Client was closed and is not queryable$/,
  /^timeout exceeded when trying to connect$/,
];

/**
 * What kind of lost connection `err` (or an error it wraps, through `cause` or an AggregateError's
 * `errors`) reports: `postgres:57P01`, `network:ECONNREFUSED`, `nats:ConnectionError`,
 * `postgres:connection terminated` — or undefined when it is something else. The kind quotes no
 * message, so it is safe to log and to return. A CofferError is never one: it was classified on purpose.
 */
export function connectionLoss(err: unknown, depth = 0): string | undefined {
  if (depth > 4 || !(err instanceof Error) || isCofferError(err)) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (/^08[0-9A-Z]{3}$/.test(code) || LOST_SQLSTATES.has(code)) return `postgres:${code}`;
    if (NETWORK_CODES.has(code)) return `network:${code}`;
  }
  if (NATS_NAMES.has(err.name)) return `nats:${err.name}`;
  if (PG_MESSAGES.some((re) => re.test(err.message))) return 'postgres:connection terminated';
  const nested = [(err as { cause?: unknown }).cause, ...(err instanceof AggregateError ? err.errors : [])];
  for (const inner of nested) {
    const kind = connectionLoss(inner, depth + 1);
    if (kind) return kind;
  }
  return undefined;
}

/** True when `err` reports a lost or refused Postgres, NATS or network connection: retry later, not a bug. */
export function isConnectionLoss(err: unknown): boolean {
  return connectionLoss(err) !== undefined;
}
