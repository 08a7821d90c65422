import { z } from 'zod';
import { commonEnv, parseEnv, sqlIdentifier } from '@coffer/runtime';

/** Every setting of the secrets service: the only app whose configuration accepts KMS settings. */
export const secretsConfigSchema = z.object({
  ...commonEnv,
  SECRETS_GRPC_ADDRESS: z.string().default('127.0.0.1:50053'),
  SECRETS_DB_SCHEMA: sqlIdentifier.default('secrets'),
  COFFER_COORDINATE_PREFIX: z.string().regex(/^[a-z0-9]+$/).default('coffer'),
  SECRETS_KMS_PROVIDER: z.enum(['local', 'pkcs11', 'aws-kms', 'gcp-kms']).default('local'),
  SECRETS_LOCAL_KEYRING_FILE: z.string().min(1).optional(),
  SECRETS_PKCS11_LIBRARY: z.string().min(1).optional(),
  SECRETS_PKCS11_TOKEN_LABEL: z.string().min(1).optional(),
  SECRETS_PKCS11_PIN: z.string().min(1).optional(),
  SECRETS_PKCS11_KEK_LABEL: z.string().min(1).default('coffer-kek'),
  SECRETS_AWS_REGION: z.string().min(1).optional(),
  SECRETS_AWS_KMS_ENDPOINT: z.string().url().optional(),
  SECRETS_AWS_KEK_ID: z.string().min(1).default('coffer-kek'),
  SECRETS_GCP_KMS_KEY_NAME: z.string().min(1).optional(),
  SECRETS_GCP_KMS_ENDPOINT: z.string().min(1).optional(),
  SECRETS_EPHEMERAL_TTL_SECONDS: z.coerce.number().int().positive().default(7200),
  SECRETS_EXPIRY_SWEEP_SECONDS: z.coerce.number().int().positive().default(60),
  SECRETS_KEK_ROTATION_DAYS: z.coerce.number().positive().default(365),
  SECRETS_KEK_ROTATION_CHECK_SECONDS: z.coerce.number().int().positive().default(3600),
  SECRETS_DATA_KEY_CACHE_ENTRIES: z.coerce.number().int().min(0).default(1000),
  SECRETS_DATA_KEY_CACHE_TTL_SECONDS: z.coerce.number().int().positive().default(300),
  SECRETS_MAX_SECRETS_PER_REQUEST: z.coerce.number().int().min(1).max(10_000).default(100),
  SECRETS_CONCURRENT_WRITES_PER_WORKSPACE: z.coerce.number().int().min(1).max(1000).default(1),
  SECRETS_CONCURRENT_HYDRATES_PER_WORKSPACE: z.coerce.number().int().min(1).max(1000).default(4),
  SECRETS_QUEUED_CALLS_PER_WORKSPACE: z.coerce.number().int().min(0).max(10_000).default(8),
}).superRefine((c, ctx) => {
  // No default for anything secret: the chosen provider's settings are required, and named when missing.
  const need = (key: keyof typeof c, why: string) => {
    if (!c[key]) ctx.addIssue({ code: 'custom', path: [key], message: `required with SECRETS_KMS_PROVIDER=${c.SECRETS_KMS_PROVIDER}: ${why}` });
  };
  if (c.SECRETS_KMS_PROVIDER === 'local') need('SECRETS_LOCAL_KEYRING_FILE', 'path of the local KMS keyring file');
  if (c.SECRETS_KMS_PROVIDER === 'aws-kms') need('SECRETS_AWS_REGION', 'the AWS region of the KMS keys (credentials come from the AWS SDK chain)');
  if (c.SECRETS_KMS_PROVIDER === 'gcp-kms') need('SECRETS_GCP_KMS_KEY_NAME', 'projects/…/locations/…/keyRings/…/cryptoKeys/…');
  if (c.SECRETS_KMS_PROVIDER === 'pkcs11') {
    need('SECRETS_PKCS11_LIBRARY', 'path of the PKCS#11 module');
    need('SECRETS_PKCS11_TOKEN_LABEL', 'label of the token holding the KEK');
    need('SECRETS_PKCS11_PIN', 'the token user PIN');
  }
});

/** The parsed configuration of the secrets service. */
export type SecretsConfig = z.infer<typeof secretsConfigSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadSecretsConfig(env: NodeJS.ProcessEnv): SecretsConfig {
  return parseEnv(secretsConfigSchema, env, 'secrets service');
}
