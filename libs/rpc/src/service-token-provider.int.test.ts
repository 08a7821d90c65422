import { setTimeout as sleep } from 'node:timers/promises';
import type { JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1, CofferError, secretsV1 } from '@coffer/contracts';
import { createTokenVerifier, isServiceRole } from '@coffer/tokens';
import { defineService } from './define-service';
import { createGrpcServer, type GrpcServer } from './grpc-server';
import { createPromiseClient } from './promise-client';
import { createServiceTokenProvider } from './service-token-provider';
import { captureLogger, createTestIssuer, ISSUER, unservedAuthMethods, type TestIssuer } from '../test/fixtures';

const identities: Record<string, { secret: string; role: string }> = {
  'config-client': { secret: 'config-secret-123', role: 'config' },
  'worker-client': { secret: 'worker-secret-456', role: 'sync-worker' },
};

describe('createServiceTokenProvider', () => {
  let issuer: TestIssuer;
  let auth: GrpcServer;
  let secrets: GrpcServer;
  let authAddress: string;
  let secretsAddress: string;
  let issued = 0;
  let issueDelayMs = 0;
  let expiresIn = 100;

  beforeAll(async () => {
    issuer = await createTestIssuer();
    // A tiny real AuthService: checks client credentials and signs tokens with the test key.
    auth = createGrpcServer({
      logger: captureLogger().logger,
      services: [
        defineService(authV1.AuthServiceService, 'coffer.auth.v1.AuthService', {
          issueServiceToken: {
            permission: 'public',
            handler: async (req: authV1.IssueServiceTokenRequest) => {
              const identity = identities[req.clientId];
              if (!identity || identity.secret !== req.clientSecret) throw new CofferError('unauthenticated', 'invalid client credentials');
              if (!isServiceRole(identity.role)) throw new CofferError('internal', 'bad role');
              issued += 1;
              if (issueDelayMs) await sleep(issueDelayMs);
              const accessToken = await issuer.sign({ role: identity.role, subject: req.clientId, audience: req.audience, ttlSeconds: expiresIn });
              return { accessToken, expiresIn, tokenType: 'Bearer' };
            },
          },
          getJwks: { permission: 'public', handler: async () => ({ jwksJson: JSON.stringify(issuer.jwks) }) },
          ...unservedAuthMethods(),
        } as never),
      ],
    });
    authAddress = `127.0.0.1:${await auth.listen('127.0.0.1:0')}`;

    // A secrets-like server that verifies tokens against auth's JWKS fetched over gRPC.
    const jwksClient = createPromiseClient(authV1.AuthServiceClient, authAddress);
    const verifier = createTokenVerifier({
      issuer: ISSUER,
      audience: 'secrets',
      fetchJwks: async () => JSON.parse((await jwksClient.getJwks({})).jwksJson) as { keys: JWK[] },
    });
    secrets = createGrpcServer({
      logger: captureLogger().logger,
      verifier,
      services: [
        defineService(secretsV1.SecretsServiceService, 'coffer.secrets.v1.SecretsService', {
          writeSecrets: { permission: 'secrets.write', handler: async () => ({ secrets: [] }) },
          hydrateConfig: { permission: 'secrets.hydrate', handler: async (_req, ctx) => ({ configJson: JSON.stringify({ by: ctx.principal?.subject }) }) },
          deleteSecrets: { permission: 'secrets.delete', handler: async () => ({ destroyed: [] }) },
          listSecretVersions: { permission: 'secrets.list', handler: async () => ({ versions: [] }) },
          getLatestSecretVersions: { permission: 'secrets.list', handler: async () => ({ versions: [] }) },
          deleteWorkspaceSecrets: { permission: 'secrets.delete', handler: async () => ({ destroyedCount: 0 }) },
          rollbackSecret: { permission: 'secrets.write', handler: async () => ({ secret: undefined }) },
          rotateKeyEncryptionKey: { permission: 'secrets.admin', handler: async () => ({ kekVersion: 1, rewrapped: 0 }) },
          retireKeyEncryptionKeyVersion: { permission: 'secrets.admin', handler: async () => ({}) },
          listKeyEncryptionKeyVersions: { permission: 'secrets.admin', handler: async () => ({ provider: 'local', kekId: 'k', versions: [] }) },
        }),
      ],
    });
    secretsAddress = `127.0.0.1:${await secrets.listen('127.0.0.1:0')}`;
  });

  afterAll(async () => {
    await secrets?.shutdown();
    await auth?.shutdown();
  });

  it('gets a token that the peer accepts', async () => {
    const provider = createServiceTokenProvider({ authAddress, clientId: 'worker-client', clientSecret: 'worker-secret-456', audience: 'secrets' });
    const client = createPromiseClient(secretsV1.SecretsServiceClient, secretsAddress, { tokenProvider: provider });
    try {
      const res = await client.hydrateConfig({ ownerId: '', workspaceId: 'w', partialConfigJson: '{}', reason: 'test' });
      expect(JSON.parse(res.configJson)).toEqual({ by: 'worker-client' });
    } finally {
      client.close();
      provider.close();
    }
  });

  it('caches the token until 80% of its lifetime', async () => {
    let now = 1_000_000;
    expiresIn = 100;
    const provider = createServiceTokenProvider({
      authAddress,
      clientId: 'config-client',
      clientSecret: 'config-secret-123',
      audience: 'secrets',
      now: () => now,
    });
    try {
      const before = issued;
      const first = await provider();
      now += 79_000;
      expect(await provider()).toBe(first);
      expect(issued - before).toBe(1);
      now += 2_000;
      await provider();
      expect(issued - before).toBe(2);
    } finally {
      provider.close();
    }
  });

  it('shares one request between concurrent callers', async () => {
    issueDelayMs = 100;
    const provider = createServiceTokenProvider({ authAddress, clientId: 'config-client', clientSecret: 'config-secret-123', audience: 'secrets' });
    try {
      const before = issued;
      const tokens = await Promise.all(Array.from({ length: 5 }, () => provider()));
      expect(new Set(tokens).size).toBe(1);
      expect(issued - before).toBe(1);
    } finally {
      issueDelayMs = 0;
      provider.close();
    }
  });

  it('fails with auth\'s error on bad credentials and does not cache the failure', async () => {
    const provider = createServiceTokenProvider({ authAddress, clientId: 'config-client', clientSecret: 'wrong', audience: 'secrets' });
    try {
      const err = await provider().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CofferError);
      expect(err).toMatchObject({ code: 'unauthenticated', message: 'invalid client credentials' });
      expect(String((err as Error).message)).not.toContain('wrong');
      await expect(provider()).rejects.toMatchObject({ code: 'unauthenticated' });
    } finally {
      provider.close();
    }
  });

  it('surfaces a role the peer refuses as permission_denied', async () => {
    const provider = createServiceTokenProvider({ authAddress, clientId: 'config-client', clientSecret: 'config-secret-123', audience: 'secrets' });
    const client = createPromiseClient(secretsV1.SecretsServiceClient, secretsAddress, { tokenProvider: provider });
    try {
      await expect(client.hydrateConfig({ ownerId: '', workspaceId: 'w', partialConfigJson: '{}', reason: 'test' })).rejects.toMatchObject({ code: 'permission_denied' });
      await expect(client.listSecretVersions({ workspaceId: 'w', baseCoordinate: 'b' })).resolves.toEqual({ versions: [] });
    } finally {
      client.close();
      provider.close();
    }
  });

  it('fails with unavailable when auth is unreachable', async () => {
    const provider = createServiceTokenProvider({ authAddress: '127.0.0.1:1', clientId: 'c', clientSecret: 's', audience: 'secrets', deadlineMs: 2_000 });
    try {
      await expect(provider()).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      provider.close();
    }
  });
});
