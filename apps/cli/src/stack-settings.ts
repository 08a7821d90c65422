import { z } from 'zod';
import { parseEnv } from '@coffer/runtime';

const unsetWhenEmpty = (v: unknown) => (v === '' ? undefined : v);

/** The settings of `coffer stack` (`npm start`), read from the environment once in main.ts. */
export const stackSettingsSchema = z.object({
  /** An external Postgres (the `coffer` database is created on it if missing); unset: an embedded Postgres under COFFER_HOME. */
  DATABASE_URL: z.preprocess(unsetWhenEmpty, z.string().url('must be a postgres:// URL').optional()),
  /** An external NATS server with JetStream; unset: a `nats-server` child with its store under COFFER_HOME. */
  NATS_URL: z.preprocess(unsetWhenEmpty, z.string().regex(/^(nats|tls):\/\/\S+$/, 'must be a nats:// URL').optional()),
  /** Where the stack keeps credentials, keyring, data and logs; default `.coffer` in the working directory. */
  COFFER_HOME: z.preprocess(unsetWhenEmpty, z.string().optional()),
  LOG_LEVEL: z.preprocess(unsetWhenEmpty, z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).optional()),
  SYNC_WORKER_EGRESS_ALLOW: z.preprocess(unsetWhenEmpty, z.string().optional()),
  PATH: z.string().default(''),
});

/** The parsed settings of `coffer stack`. */
export type StackSettings = z.infer<typeof stackSettingsSchema> & {
  /** Passed through to every service: OTEL_* (OpenTelemetry's own settings) and LOG_LEVEL. */
  serviceEnv: Record<string, string>;
};

/** Variables the launcher hands on to every service as they are. */
export function passThroughEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && (key.startsWith('OTEL_') || key === 'LOG_LEVEL')) out[key] = value;
  }
  return out;
}

/** Parses the stack's settings, listing every bad variable at once. */
export function parseStackSettings(env: NodeJS.ProcessEnv): StackSettings {
  return { ...parseEnv(stackSettingsSchema, env, 'coffer stack'), serviceEnv: passThroughEnv(env) };
}
