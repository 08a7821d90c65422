import { loadMtls, type MtlsMaterial } from '@coffer/rpc';
import { z } from 'zod';
import { streamEnv } from './stream-env';

/** The values of `COFFER_ENV`: `development` relaxes what only a developer's machine may skip. */
export const cofferEnvironments = ['development', 'production'] as const;

/** What `<SERVICE>` does with its migrations at start-up (`COFFER_MIGRATIONS`). */
export const migrationModes = ['apply', 'check'] as const;
export type MigrationMode = (typeof migrationModes)[number];

/** The `COFFER_MIGRATIONS` setting (in {@link commonEnv}). */
export const migrationModeSetting = z
  .enum(migrationModes, { error: 'must be apply or check' })
  .default('apply')
  .describe(
    "`apply`: the service applies its schema's pending migrations at start-up (under kysely's advisory lock, so replicas take turns); `check`: it applies none and refuses to start, naming the pending migration, until `coffer migrate` has run (for deployments that migrate as a separate step, e.g. the Kubernetes Job)",
  );

/** Settings every service shares; spread into each app's own schema. */
export const commonEnv = {
  COFFER_ENV: z
    .enum(cofferEnvironments, { error: 'must be development or production' })
    .default('production')
    .describe('`development` on a developer\'s machine (the stack launcher sets it): the secrets service then defaults SECRETS_KMS_PROVIDER to `local`, and `coffer doctor` reports the local KMS as a warning instead of a failure'),
  DATABASE_URL: z.string({ error: 'required: a postgres:// URL' }).url('must be a postgres:// URL').describe('Postgres connection URL; the service keeps its tables in its own schema'),
  NATS_URL: z.string().default('nats://127.0.0.1:4222').describe('NATS server(s) with JetStream, comma-separated'),
  COFFER_SUBJECT_ROOT: z.string().regex(/^[A-Za-z0-9_-]+$/).default('coffer').describe('first token of every NATS subject (`<root>.<service>.<aggregate>.<event>`)'),
  COFFER_STREAM_PREFIX: z.string().regex(/^[A-Z0-9_]+$/).default('COFFER').describe('prefix of the JetStream stream names (`<prefix>_AUTH`, …)'),
  AUTH_ADDRESS: z.string().default('127.0.0.1:50051').describe('host:port of the auth service (JWKS, service tokens)'),
  COFFER_TOKEN_ISSUER: z.string().default('coffer-auth').describe('`iss` of every token auth issues and every service accepts'),
  COFFER_STARTUP_WAIT_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(3_600_000)
    .default(60_000)
    .describe('how long start-up keeps retrying Postgres (DATABASE_URL), NATS (NATS_URL) and auth\'s JWKS (AUTH_ADDRESS) before the service exits non-zero naming the setting, in ms'),
  COFFER_MIGRATIONS: migrationModeSetting,
  COFFER_DB_PREPARED_STATEMENTS: z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .default('true')
    .transform((v) => v === 'true')
    .describe('`true`: each Postgres connection prepares a parameterised statement the first time it runs it and only binds it afterwards (at most 256 per connection); `false` for a pooler in transaction mode that cannot carry prepared statements between transactions'),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info').describe('pino log level'),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional().describe('OTLP/gRPC endpoint for traces and metrics (pushed every minute); unset, nothing is exported. Services must be started with `--import` of the telemetry preload for gRPC and Postgres spans'),
  COFFER_TLS_CA_FILE: z.string().optional().describe('mutual TLS on every gRPC server and client: PEM file of the CA (all three COFFER_TLS_* files, or none)'),
  COFFER_TLS_CERT_FILE: z.string().optional().describe('mutual TLS: PEM certificate of this service (its CN names the service role)'),
  COFFER_TLS_KEY_FILE: z.string().optional().describe('mutual TLS: PEM private key of this service'),
  COFFER_REVOCATION_FAIL_OPEN: z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .default('false')
    .transform((v) => v === 'true')
    .describe('`true` accepts tokens while the revocation list cannot be read (a revoked token then works until it can); reported as a security finding'),
  /** Retention, size limits and replicas of the service's own stream (`COFFER_STREAM_*`). */
  ...streamEnv,
};

/**
 * Refinement options that run a check across settings even when some other setting is bad, so one
 * start-up lists every problem (by default zod skips object refinements after any field failed).
 */
export const inTheSamePass = { when: () => true } as const;

const tlsFiles = ['COFFER_TLS_CA_FILE', 'COFFER_TLS_CERT_FILE', 'COFFER_TLS_KEY_FILE'] as const;

/** The checks across the shared settings (today: the three TLS files go together); pass to `superRefine` with {@link inTheSamePass}. */
export function checkCommonSettings(settings: Partial<Record<string, unknown>>, ctx: z.RefinementCtx): void {
  const given = tlsFiles.filter((k) => typeof settings[k] === 'string' && settings[k] !== '');
  if (given.length > 0 && given.length < tlsFiles.length) {
    for (const k of tlsFiles.filter((f) => !given.includes(f))) {
      ctx.addIssue({ code: 'custom', path: [k], message: `required with ${given.join(' and ')}: the three COFFER_TLS_* files go together` });
    }
  }
}

/** The mutual-TLS material the settings name, or undefined when TLS is off; half a setting is an error. */
export function mtlsFromEnv(config: { COFFER_TLS_CA_FILE?: string; COFFER_TLS_CERT_FILE?: string; COFFER_TLS_KEY_FILE?: string }): MtlsMaterial | undefined {
  const files = { caFile: config.COFFER_TLS_CA_FILE, certFile: config.COFFER_TLS_CERT_FILE, keyFile: config.COFFER_TLS_KEY_FILE };
  const given = Object.values(files).filter(Boolean).length;
  if (given === 0) return undefined;
  if (given < 3) throw new Error('invalid configuration: COFFER_TLS_CA_FILE, COFFER_TLS_CERT_FILE and COFFER_TLS_KEY_FILE go together');
  try {
    return loadMtls(files as { caFile: string; certFile: string; keyFile: string });
  } catch (err) {
    throw new Error(`invalid configuration: cannot read the TLS files (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** The `<SERVICE>_METRICS_ADDRESS` setting of each service: where `/healthz`, `/readyz` and `/metrics` listen. */
export const metricsAddressSetting = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$/, 'must be host:port')
  .optional()
  .describe('host:port of the HTTP endpoint for orchestrators and scrapers: /healthz, /readyz and /metrics (Prometheus) (port 0: any free port); unset, nothing listens');

/** A lowercase SQL identifier, for schema names taken from configuration. */
export const sqlIdentifier = z.string().regex(/^[a-z_][a-z0-9_]*$/, 'must be a lowercase SQL identifier');

/** Thrown by {@link parseEnv}: every bad setting, one per line, never a value. */
export class SettingsError extends Error {
  constructor(
    readonly service: string,
    readonly problems: Array<{ setting: string; message: string }>,
  ) {
    super(`invalid ${service} configuration (${problems.length} ${problems.length === 1 ? 'setting' : 'settings'} to fix):\n${problems.map((p) => `  ${p.setting}: ${p.message}`).join('\n')}`);
    this.name = 'SettingsError';
  }
}

/** Parses the environment once; throws one SettingsError that lists every bad variable (never its value). */
export function parseEnv<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv, service: string): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new SettingsError(
      service,
      parsed.error.issues.map((i) => ({ setting: i.path.join('.') || '(settings)', message: i.message })),
    );
  }
  return parsed.data;
}
