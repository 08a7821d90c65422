import { z } from 'zod';
import { commonEnv, parseEnv, sqlIdentifier } from '@coffer/runtime';

/** Every setting of the sync worker; it reaches secrets through the secrets service only. */
export const syncWorkerConfigSchema = z.object({
  ...commonEnv,
  SYNC_WORKER_GRPC_ADDRESS: z.string().default('127.0.0.1:50054'),
  SYNC_WORKER_DB_SCHEMA: sqlIdentifier.default('sync'),
  CONFIG_ADDRESS: z.string().default('127.0.0.1:50052'),
  SECRETS_ADDRESS: z.string().default('127.0.0.1:50053'),
  SYNC_WORKER_CLIENT_ID: z.string().min(1).default('sync-worker'),
  SYNC_WORKER_CLIENT_SECRET: z.string({ error: 'required: the sync-worker service identity secret' }).min(16, 'must be at least 16 characters'),
  SYNC_WORKER_MAX_DELIVER: z.coerce.number().int().min(1).max(100).default(5),
});

/** The parsed configuration of the sync worker. */
export type SyncWorkerConfig = z.infer<typeof syncWorkerConfigSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadSyncWorkerConfig(env: NodeJS.ProcessEnv): SyncWorkerConfig {
  return parseEnv(syncWorkerConfigSchema, env, 'sync worker');
}
