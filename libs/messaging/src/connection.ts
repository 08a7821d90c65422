import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';

/** Options of `connectNats`. */
export interface ConnectNatsOptions {
  /** One URL or several separated by commas, e.g. `nats://127.0.0.1:4222`. */
  servers: string;
  /** Connection name shown by the server's monitoring (the app's name). */
  name: string;
}

/** Connects to NATS and keeps reconnecting for as long as the process lives. */
export async function connectNats(options: ConnectNatsOptions): Promise<NatsConnection> {
  const servers = options.servers
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  // A service outlives NATS restarts: the outbox relay retries, so the connection must not give up.
  return connect({ servers, name: options.name, maxReconnectAttempts: -1 });
}
