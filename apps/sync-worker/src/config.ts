import { z } from 'zod';
import { commonEnv, parseEnv, sqlIdentifier } from '@coffer/runtime';
import { parseEgressAllowList } from './connectors/egress-policy';

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
  /**
   * What connectors may reach beyond public addresses: comma-separated CIDRs, IP addresses and host
   * names (each of the last two with an optional :port). Empty, the default, denies every loopback,
   * private, link-local and metadata address.
   */
  SYNC_WORKER_EGRESS_ALLOW: z
    .string()
    .default('')
    .transform((text, ctx) => {
      const { entries, errors } = parseEgressAllowList(text);
      for (const message of errors) ctx.addIssue({ code: 'custom', message });
      return entries;
    }),
});

/** The parsed configuration of the sync worker. */
export type SyncWorkerConfig = z.infer<typeof syncWorkerConfigSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadSyncWorkerConfig(env: NodeJS.ProcessEnv): SyncWorkerConfig {
  return parseEnv(syncWorkerConfigSchema, env, 'sync worker');
}
