import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';

/** Options of `connectNats`. */
export interface ConnectNatsOptions {
  /** One URL or several separated by commas, e.g. `nats://127.0.0.1:4222`. */
  servers: string;
  /** Connection name shown by the server's monitoring (the app's name). */
  name: string;
  /** How long the first connection may take to be established (20 s). */
  timeoutMs?: number;
}

/**
 * Connects to NATS and, once connected, keeps reconnecting for as long as the process lives. The first
 * connection fails at once when nothing answers: start-up retries it with a bound (`waitForDependency`).
 */
export async function connectNats(options: ConnectNatsOptions): Promise<NatsConnection> {
  const servers = options.servers
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  // A service outlives NATS restarts: the outbox relay retries, so the connection must not give up.
  // noAsyncTraces: a request (every JetStream publish) then builds no error objects in advance to keep
  // the caller's stack; a failure still says what failed. It is the client's documented setting for publishers.
  return connect({ servers, name: options.name, maxReconnectAttempts: -1, noAsyncTraces: true, ...(options.timeoutMs !== undefined && { timeout: options.timeoutMs }) });
}
