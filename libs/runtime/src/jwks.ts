import type * as grpc from '@grpc/grpc-js';
import { authV1 } from '@coffer/contracts';
import { createPromiseClient } from '@coffer/rpc';
import type { JWK } from 'jose';

/** Fetches auth's public JWKS over gRPC; tokens are then verified locally (the verifier caches it). */
export function jwksFromAuth(authAddress: string, credentials?: grpc.ChannelCredentials): () => Promise<{ keys: JWK[] }> {
  const client = createPromiseClient(authV1.AuthServiceClient, authAddress, { deadlineMs: 5_000, credentials });
  return async () => {
    const res = await client.getJwks({});
    const doc = JSON.parse(res.jwksJson) as { keys?: JWK[] };
    return { keys: doc.keys ?? [] };
  };
}
