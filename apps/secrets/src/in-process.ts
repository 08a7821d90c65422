import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { MessagingNamespace } from '@coffer/contracts';
import { createEventStore } from '@coffer/event-store';
import { applyMigrations } from '@coffer/runtime';
import { createDataKeyCache } from './data-key-cache';
import { createLocalKms, generateKeyringDocument, parseKeyring } from './kms/local-kms';
import { createSecretsService, secretsChainOf, type SecretsService } from './secrets.service';
import type { SecretsDatabase } from './secrets.database';
import { secretsMigrations } from './secrets.migrations';

/**
 * The real secrets service on a database of the caller's, with a fresh local keyring, without its
 * gRPC server: for other apps' integration tests, so their ports talk to the real thing while the
 * KMS stays inside this app.
 */
export async function startInProcessSecretsService(options: { db: Kysely<SecretsDatabase>; namespace: MessagingNamespace; schema?: string }): Promise<SecretsService> {
  const schema = options.schema ?? 'secrets';
  await applyMigrations(options.db, schema, secretsMigrations);
  return createSecretsService({
    db: options.db,
    store: createEventStore(options.db, { schema, chainOf: secretsChainOf }),
    kms: createLocalKms(parseKeyring(generateKeyringDocument('in-process'))),
    schema,
    coordinatePrefix: 'coffer',
    namespace: options.namespace,
    ephemeralTtlMs: 7_200_000,
    cache: createDataKeyCache({ maxEntries: 100, ttlMs: 60_000, clock: Date.now }),
    rotationPeriodMs: 365 * 24 * 3600 * 1000,
    clock: () => new Date(),
    newId: randomUUID,
  });
}

/**
 * Config's secrets port served by an in-process secrets service (what config's gRPC adapter does in
 * `apps/config/src/main.ts`), acting as the config service.
 */
export function inProcessSecretsPort(service: SecretsService) {
  const actor = { subject: 'config' };
  return {
    write: async (ws: string, writes: { baseCoordinate: string; expectedVersion: number; value: string }[], owner: { ownerId: string; ownerWorkspaceId?: string; writeId?: string }) =>
      void (await service.writeSecrets(ws, writes, actor, owner)),
    delete: async (ws: string, coordinates: string[], ownerId: string, writeId?: string) => void (await service.deleteSecrets(ws, coordinates, actor, ownerId, writeId)),
    deleteWorkspace: async (ws: string) => void (await service.deleteWorkspaceSecrets(ws, actor)),
    latestVersions: async (ws: string, bases: string[]) => new Map((await service.latestVersions(ws, bases)).map((v) => [v.baseCoordinate, v.version])),
    listVersions: async (ws: string, base: string) => (await service.listSecretVersions(ws, base)).map((v) => ({ version: v.version, state: v.state, createdAt: v.createdAt })),
    rollback: async (ws: string, base: string, toVersion: number, expectedVersion: number, owner: { ownerId: string; writeId?: string }) =>
      void (await service.rollbackSecret(ws, base, toVersion, expectedVersion, actor, { ownerId: owner.ownerId, writeId: owner.writeId })),
  };
}
