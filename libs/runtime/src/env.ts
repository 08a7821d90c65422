import { loadMtls, type MtlsMaterial } from '@coffer/rpc';
import { z } from 'zod';
import { streamEnv } from './stream-env';

/** Settings every service shares; spread into each app's own schema. */
export const commonEnv = {
  DATABASE_URL: z.string().url('required: a postgres:// URL'),
  NATS_URL: z.string().default('nats://127.0.0.1:4222'),
  COFFER_SUBJECT_ROOT: z.string().regex(/^[A-Za-z0-9_-]+$/).default('coffer'),
  COFFER_STREAM_PREFIX: z.string().regex(/^[A-Z0-9_]+$/).default('COFFER'),
  AUTH_ADDRESS: z.string().default('127.0.0.1:50051'),
  COFFER_TOKEN_ISSUER: z.string().default('coffer-auth'),
  /**
   * How long start-up keeps retrying Postgres (DATABASE_URL), NATS (NATS_URL) and auth's JWKS
   * (AUTH_ADDRESS) before the service exits non-zero naming the setting. Default 60 s.
   */
  COFFER_STARTUP_WAIT_MS: z.coerce.number().int().min(0).max(3_600_000).default(60_000),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
  /** Mutual TLS on every gRPC server and client: all three PEM files, or none. */
  COFFER_TLS_CA_FILE: z.string().optional(),
  COFFER_TLS_CERT_FILE: z.string().optional(),
  COFFER_TLS_KEY_FILE: z.string().optional(),
  /**
   * `true` accepts tokens while the revocation list cannot be read (a revoked token then works until it
   * can); off by default, and reported by `securityFindings` at start-up.
   */
  COFFER_REVOCATION_FAIL_OPEN: z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .default('false')
    .transform((v) => v === 'true'),
  /** Retention, size limits and replicas of the service's own stream (`COFFER_STREAM_*`). */
  ...streamEnv,
};

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

/** A lowercase SQL identifier, for schema names taken from configuration. */
export const sqlIdentifier = z.string().regex(/^[a-z_][a-z0-9_]*$/, 'must be a lowercase SQL identifier');

/** Parses the environment once; throws one error that lists every bad variable (never its value). */
export function parseEnv<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv, service: string): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid ${service} configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
