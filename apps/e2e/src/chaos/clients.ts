import * as grpc from '@grpc/grpc-js';
import { configV1, secretsV1 } from '@coffer/contracts';
import type { Stack } from '@coffer/cli';
import { createServiceTokenProvider, type ServiceTokenProvider } from '@coffer/rpc';
import { call, rawClient, type Answer } from '../raw-grpc';

/** Raw gRPC clients of config and secrets, and the service tokens the suite calls them with. */
export interface ChaosClients {
  config: grpc.Client;
  secrets: grpc.Client;
  /** The operator, for config. */
  operator: ServiceTokenProvider;
  /** The config identity, for secrets (the writer of secrets). */
  configAtSecrets: ServiceTokenProvider;
  /** The sync-worker identity, for secrets (the only one that may hydrate). */
  hydrator: ServiceTokenProvider;
  close(): void;
}

// A restarted service is reached again within a second or two, not after grpc-js' default backoff of up to two minutes.
const channelOptions: grpc.ChannelOptions = { 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 1_000 };

/** Clients of the stack's config and secrets services (their ports stay the same across restarts). */
export function chaosClients(stack: Stack): ChaosClients {
  const auth = stack.services.auth.address;
  const provider = (who: 'operator' | 'config' | 'sync-worker', audience: string) =>
    createServiceTokenProvider({ authAddress: auth, ...stack.credentials.clients[who], audience, deadlineMs: 5_000 });
  const clients: ChaosClients = {
    config: rawClient(configV1.ConfigServiceClient, stack.services.config.address, configV1, channelOptions),
    secrets: rawClient(secretsV1.SecretsServiceClient, stack.services.secrets.address, secretsV1, channelOptions),
    operator: provider('operator', 'config'),
    configAtSecrets: provider('config', 'secrets'),
    hydrator: provider('sync-worker', 'secrets'),
    close() {
      for (const c of [clients.config, clients.secrets]) c.close();
      for (const p of [clients.operator, clients.configAtSecrets, clients.hydrator]) p.close();
    },
  };
  return clients;
}

/**
 * Statuses after which the caller cannot know whether the call took effect (the server may have
 * applied it and died before answering); a client retries these with the same request.
 */
const UNKNOWN_OUTCOME = new Set<grpc.status>([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
  grpc.status.UNKNOWN,
  grpc.status.INTERNAL,
  grpc.status.RESOURCE_EXHAUSTED,
  // A service that restarted may not have auth's keys yet.
  grpc.status.UNAUTHENTICATED,
]);

/** Whether an answer leaves the outcome of the call unknown (worth a retry). */
export function outcomeUnknown(status: grpc.status): boolean {
  return UNKNOWN_OUTCOME.has(status);
}

/** One call with a fresh token; a token that cannot be had (auth down) is answered as UNAVAILABLE. */
export async function callWith<Res>(client: grpc.Client, method: string, req: unknown, token: ServiceTokenProvider, deadlineMs: number): Promise<Answer<Res>> {
  let bearer: string;
  try {
    bearer = await token();
  } catch {
    return { status: grpc.status.UNAVAILABLE, message: 'no service token (auth unreachable)', fields: [], ms: 0 };
  }
  return call<Res>(client, method, req, bearer, undefined, deadlineMs);
}

/** How a retried call ended: its last answer, whether any attempt left the outcome unknown, and how many were made. */
export interface Retried<Res> {
  last: Answer<Res>;
  attempts: number;
  sawUnknown: boolean;
}

const RETRY_DELAYS_MS = [200, 400, 800, 1_600, 3_200, 4_000, 4_000];

/** Calls until an answer other than an unknown outcome, at most `RETRY_DELAYS_MS.length + 1` times, the same request each time. */
export async function callRetrying<Res>(client: grpc.Client, method: string, req: unknown, token: ServiceTokenProvider, deadlineMs = 15_000): Promise<Retried<Res>> {
  let sawUnknown = false;
  for (let attempt = 0; ; attempt++) {
    const last = await callWith<Res>(client, method, req, token, deadlineMs);
    if (!outcomeUnknown(last.status)) return { last, attempts: attempt + 1, sawUnknown };
    sawUnknown = true;
    const delay = RETRY_DELAYS_MS[attempt];
    if (delay === undefined) return { last, attempts: attempt + 1, sawUnknown };
    await new Promise((r) => setTimeout(r, delay));
  }
}
