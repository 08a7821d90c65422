import { z } from 'zod';
import { commonEnv, parseEnv, sqlIdentifier } from '@coffer/runtime';

/** Every setting of the secrets service: the only app whose configuration accepts KMS settings. */
export const secretsConfigSchema = z.object({
  ...commonEnv,
  SECRETS_GRPC_ADDRESS: z.string().default('127.0.0.1:50053'),
  SECRETS_DB_SCHEMA: sqlIdentifier.default('secrets'),
  COFFER_COORDINATE_PREFIX: z.string().regex(/^[a-z0-9]+$/).default('coffer'),
  SECRETS_KMS_PROVIDER: z.enum(['local']).default('local'),
  SECRETS_LOCAL_KEYRING_FILE: z.string({ error: 'required: path of the local KMS keyring file' }).min(1),
  SECRETS_EPHEMERAL_TTL_SECONDS: z.coerce.number().int().positive().default(7200),
});

/** The parsed configuration of the secrets service. */
export type SecretsConfig = z.infer<typeof secretsConfigSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadSecretsConfig(env: NodeJS.ProcessEnv): SecretsConfig {
  return parseEnv(secretsConfigSchema, env, 'secrets service');
}
