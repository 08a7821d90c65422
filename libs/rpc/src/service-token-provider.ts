import type * as grpc from '@grpc/grpc-js';
import { authV1, CofferError } from '@coffer/contracts';
import { createPromiseClient, type TokenProvider } from './promise-client';

/** Options of {@link createServiceTokenProvider}. */
export interface ServiceTokenProviderOptions {
  /** `host:port` of the auth service. */
  authAddress: string;
  clientId: string;
  clientSecret: string;
  /** The service the token is for, e.g. `secrets`. */
  audience: string;
  credentials?: grpc.ChannelCredentials;
  /** Deadline of the IssueServiceToken call; default 10 s. */
  deadlineMs?: number;
  /** Share of the token's lifetime after which it is renewed; default 0.8. */
  refreshAtFraction?: number;
  /** Milliseconds since the epoch; tests pass a fake clock. */
  now?: () => number;
}

/** A token provider that also owns a channel to auth. */
export type ServiceTokenProvider = TokenProvider & { close(): void };

/**
 * Gets service tokens from auth (IssueServiceToken) for one audience; caches each until ~80% of its
 * lifetime and shares one request between concurrent callers.
 */
export function createServiceTokenProvider(options: ServiceTokenProviderOptions): ServiceTokenProvider {
  const client = createPromiseClient(authV1.AuthServiceClient, options.authAddress, {
    credentials: options.credentials,
    deadlineMs: options.deadlineMs,
  });
  const now = options.now ?? Date.now;
  const fraction = options.refreshAtFraction ?? 0.8;
  let cached: { token: string; refreshAt: number } | undefined;
  let inflight: Promise<string> | undefined;

  async function issue(): Promise<string> {
    // Measured from before the request, so network time only makes the renewal earlier.
    const requestedAt = now();
    const res = await client.issueServiceToken({
      clientId: options.clientId,
      clientSecret: options.clientSecret,
      audience: options.audience,
    });
    if (!res.accessToken || !(res.expiresIn > 0)) throw new CofferError('unavailable', 'auth returned an unusable service token');
    cached = { token: res.accessToken, refreshAt: requestedAt + res.expiresIn * 1000 * fraction };
    return res.accessToken;
  }

  const provider = (async () => {
    if (cached && now() < cached.refreshAt) return cached.token;
    inflight ??= issue().finally(() => {
      inflight = undefined;
    });
    return inflight;
  }) as ServiceTokenProvider;
  provider.close = () => client.close();
  return provider;
}
