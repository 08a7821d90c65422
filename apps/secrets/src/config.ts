import { z } from 'zod';
import { checkCommonSettings, commonEnv, inTheSamePass, parseEnv, sqlIdentifier, metricsAddressSetting } from '@coffer/runtime';

/** The KMS providers the secrets service can use. */
export const kmsProviders = ['local', 'pkcs11', 'aws-kms', 'gcp-kms'] as const;
/** One of {@link kmsProviders}. */
export type KmsProviderName = (typeof kmsProviders)[number];

/** Every setting of the secrets service: the only app whose configuration accepts KMS settings. */
export const secretsConfigSchema = z
  .object({
    ...commonEnv,
    SECRETS_GRPC_ADDRESS: z.string().default('127.0.0.1:50053').describe('host:port the gRPC server binds (port 0: any free port)'),
    SECRETS_METRICS_ADDRESS: metricsAddressSetting,
    SECRETS_DB_SCHEMA: sqlIdentifier.default('secrets').describe("Postgres schema of the secrets service's tables"),
    COFFER_COORDINATE_PREFIX: z.string().regex(/^[a-z0-9]+$/).default('coffer').describe('prefix of secret coordinates (`<prefix>_workspace_…`)'),
    SECRETS_KMS_PROVIDER: z
      .enum(kmsProviders, { error: `must be one of ${kmsProviders.join(', ')}` })
      .optional()
      .describe('the KMS that wraps data keys: local, pkcs11, aws-kms or gcp-kms; required unless COFFER_ENV=development, where it defaults to `local` (a key file: development only)'),
    SECRETS_LOCAL_KEYRING_FILE: z.string().min(1).optional().describe('local KMS: path of the keyring file (required with SECRETS_KMS_PROVIDER=local)'),
    SECRETS_PKCS11_LIBRARY: z.string().min(1).optional().describe('pkcs11 KMS: path of the PKCS#11 module (required with pkcs11)'),
    SECRETS_PKCS11_TOKEN_LABEL: z.string().min(1).optional().describe('pkcs11 KMS: label of the token holding the KEK (required with pkcs11)'),
    SECRETS_PKCS11_PIN: z.string().min(1).optional().describe('pkcs11 KMS: the token user PIN (required with pkcs11)'),
    SECRETS_PKCS11_KEK_LABEL: z.string().min(1).default('coffer-kek').describe('pkcs11 KMS: label of the KEK versions on the token'),
    SECRETS_AWS_REGION: z.string().min(1).optional().describe('aws-kms: region of the KMS keys (required with aws-kms; credentials come from the AWS SDK chain)'),
    SECRETS_AWS_KMS_ENDPOINT: z.string().url().optional().describe('aws-kms: endpoint override (e.g. a VPC endpoint)'),
    SECRETS_AWS_KEK_ID: z.string().min(1).default('coffer-kek').describe('aws-kms: alias name of the KEK'),
    SECRETS_GCP_KMS_KEY_NAME: z.string().min(1).optional().describe('gcp-kms: projects/…/locations/…/keyRings/…/cryptoKeys/… (required with gcp-kms)'),
    SECRETS_GCP_KMS_ENDPOINT: z.string().min(1).optional().describe('gcp-kms: endpoint override'),
    SECRETS_EPHEMERAL_TTL_SECONDS: z.coerce.number().int().positive().default(7200).describe('lifetime of the secrets written for a check or discover run, in seconds'),
    SECRETS_EXPIRY_SWEEP_SECONDS: z.coerce.number().int().positive().default(60).describe('how often expired ephemeral secrets are shredded, in seconds'),
    SECRETS_KEK_ROTATION_DAYS: z.coerce.number().positive().default(365).describe('age of the primary KEK version after which it is rotated, in days'),
    SECRETS_KEK_ROTATION_CHECK_SECONDS: z.coerce.number().int().positive().default(3600).describe('how often the KEK age is checked, in seconds'),
    SECRETS_DATA_KEY_CACHE_ENTRIES: z.coerce.number().int().min(0).default(1000).describe('unwrapped data keys kept in memory (0: none)'),
    SECRETS_DATA_KEY_CACHE_TTL_SECONDS: z.coerce.number().int().positive().default(300).describe('how long an unwrapped data key stays cached, in seconds'),
    SECRETS_MAX_SECRETS_PER_REQUEST: z.coerce.number().int().min(1).max(10_000).default(100).describe('most secrets one write or hydrate request may carry'),
    SECRETS_CONCURRENT_WRITES_PER_WORKSPACE: z.coerce.number().int().min(1).max(1000).default(1).describe('writes running at once per workspace'),
    SECRETS_CONCURRENT_HYDRATES_PER_WORKSPACE: z.coerce.number().int().min(1).max(1000).default(4).describe('hydrates running at once per workspace'),
    SECRETS_WRITE_RATE_PER_WORKSPACE: z.coerce.number().int().min(0).max(1_000_000).default(100).describe('secret versions one workspace may write per second, sustained (bursts up to SECRETS_MAX_SECRETS_PER_REQUEST at once; a write waits for its share, and is refused with UNAVAILABLE only when that wait outlasts its deadline); 0: no rate'),
    SECRETS_QUEUED_CALLS_PER_WORKSPACE: z.coerce.number().int().min(0).max(10_000).default(8).describe('calls waiting per workspace before RESOURCE_EXHAUSTED'),
  })
  .superRefine(checkCommonSettings, inTheSamePass)
  // Runs even when another setting is bad, so the KMS settings are listed in the same pass as the rest.
  .superRefine((c, ctx) => {
    const development = c.COFFER_ENV === 'development';
    if (c.SECRETS_KMS_PROVIDER === undefined && !development) {
      ctx.addIssue({
        code: 'custom',
        path: ['SECRETS_KMS_PROVIDER'],
        message: `required outside development: one of ${kmsProviders.join(', ')} (COFFER_ENV=development defaults it to local)`,
      });
      return;
    }
    const provider = c.SECRETS_KMS_PROVIDER ?? 'local';
    if (!kmsProviders.includes(provider)) return;
    // No default for anything secret: the chosen provider's settings are required, and named when missing.
    const need = (key: keyof typeof c, why: string) => {
      if (!c[key]) ctx.addIssue({ code: 'custom', path: [key], message: `required with SECRETS_KMS_PROVIDER=${provider}: ${why}` });
    };
    if (provider === 'local') need('SECRETS_LOCAL_KEYRING_FILE', 'path of the local KMS keyring file');
    if (provider === 'aws-kms') need('SECRETS_AWS_REGION', 'the AWS region of the KMS keys (credentials come from the AWS SDK chain)');
    if (provider === 'gcp-kms') need('SECRETS_GCP_KMS_KEY_NAME', 'projects/…/locations/…/keyRings/…/cryptoKeys/…');
    if (provider === 'pkcs11') {
      need('SECRETS_PKCS11_LIBRARY', 'path of the PKCS#11 module');
      need('SECRETS_PKCS11_TOKEN_LABEL', 'label of the token holding the KEK');
      need('SECRETS_PKCS11_PIN', 'the token user PIN');
    }
  }, inTheSamePass);

/** The parsed configuration of the secrets service (the KMS provider resolved). */
export type SecretsConfig = Omit<z.infer<typeof secretsConfigSchema>, 'SECRETS_KMS_PROVIDER'> & { SECRETS_KMS_PROVIDER: KmsProviderName };

/** Parses the environment once, listing every bad variable at once; in development the KMS provider defaults to `local`. */
export function loadSecretsConfig(env: NodeJS.ProcessEnv): SecretsConfig {
  const parsed = parseEnv(secretsConfigSchema, env, 'secrets service');
  return { ...parsed, SECRETS_KMS_PROVIDER: parsed.SECRETS_KMS_PROVIDER ?? 'local' };
}
