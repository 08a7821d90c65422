import { z } from 'zod';
import { commonEnv, parseEnv, sqlIdentifier } from '@coffer/runtime';
import { FAULT_POINTS } from './fault-points';

/** Every setting of the config service; key management is the secrets service's alone. */
export const configServiceSchema = z.object({
  ...commonEnv,
  CONFIG_GRPC_ADDRESS: z.string().default('127.0.0.1:50052'),
  CONFIG_DB_SCHEMA: sqlIdentifier.default('config'),
  SECRETS_ADDRESS: z.string().default('127.0.0.1:50053'),
  CONFIG_CLIENT_ID: z.string().min(1).default('config'),
  CONFIG_CLIENT_SECRET: z.string({ error: 'required: the config service identity secret' }).min(16, 'must be at least 16 characters'),
  COFFER_COORDINATE_PREFIX: z.string().regex(/^[a-z0-9]+$/).default('coffer'),
  CONFIG_SHRED_RETRY_SECONDS: z.coerce.number().int().positive().default(5),
  // Far above the secrets call's deadline (10 s): an intent this old belongs to a change that died.
  CONFIG_WRITE_INTENT_GRACE_SECONDS: z.coerce.number().int().positive().default(60),
  // Tests only: the process kills itself (SIGKILL) at this point of a cross-service write.
  COFFER_FAULT_POINT: z.enum(FAULT_POINTS).optional(),
  CONFIG_MAX_CONFIG_BYTES: z.coerce.number().int().positive().default(256 * 1024),
  CONFIG_CHECK_TIMEOUT_SECONDS: z.coerce.number().int().positive().default(60),
  CONFIG_MAX_SECRETS_PER_CONFIG: z.coerce.number().int().min(1).max(10_000).default(100),
  CONFIG_CONCURRENT_SECRET_WRITES_PER_WORKSPACE: z.coerce.number().int().min(1).max(1000).default(2),
  CONFIG_QUEUED_SECRET_WRITES_PER_WORKSPACE: z.coerce.number().int().min(0).max(10_000).default(8),
});

/** The parsed configuration of the config service. */
export type ConfigServiceConfig = z.infer<typeof configServiceSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadConfigServiceConfig(env: NodeJS.ProcessEnv): ConfigServiceConfig {
  return parseEnv(configServiceSchema, env, 'config service');
}
