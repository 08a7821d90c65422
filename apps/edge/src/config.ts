import { z } from 'zod';
import { checkCommonSettings, commonEnv, inTheSamePass, parseEnv } from '@coffer/runtime';

/** The shared settings the edge reads: it has no database and no NATS connection of its own. */
const shared = {
  COFFER_ENV: commonEnv.COFFER_ENV,
  AUTH_ADDRESS: commonEnv.AUTH_ADDRESS,
  COFFER_TOKEN_ISSUER: commonEnv.COFFER_TOKEN_ISSUER,
  COFFER_STARTUP_WAIT_MS: commonEnv.COFFER_STARTUP_WAIT_MS,
  LOG_LEVEL: commonEnv.LOG_LEVEL,
  OTEL_EXPORTER_OTLP_ENDPOINT: commonEnv.OTEL_EXPORTER_OTLP_ENDPOINT,
  COFFER_TLS_CA_FILE: commonEnv.COFFER_TLS_CA_FILE,
  COFFER_TLS_CERT_FILE: commonEnv.COFFER_TLS_CERT_FILE,
  COFFER_TLS_KEY_FILE: commonEnv.COFFER_TLS_KEY_FILE,
};

const origin = z.string().refine((v) => {
  try {
    return new URL(v).origin === v;
  } catch {
    return false;
  }
}, 'each entry must be an origin (scheme://host[:port])');

/** Every setting of the edge: where it listens, where auth and config are, and its limits. */
export const edgeConfigSchema = z
  .object({
    ...shared,
    EDGE_HTTP_ADDRESS: z.string().default('127.0.0.1:8080').describe('host:port the HTTP server (HTTP/1.1 and cleartext HTTP/2 on one port) binds (port 0: any free port)'),
    CONFIG_ADDRESS: z.string().default('127.0.0.1:50052').describe('host:port of the config service'),
    EDGE_ALLOWED_ORIGINS: z
      .string()
      .default('')
      .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
      .pipe(z.array(origin))
      .describe('comma-separated browser origins allowed to call with application or scoped tokens (a widget token is allowed only from the origin it is bound to)'),
    EDGE_MAX_REQUEST_BYTES: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024).describe('largest request body accepted, in bytes (larger: 413)'),
    EDGE_RATE_PER_SECOND: z.coerce.number().positive().max(100_000).default(20).describe('calls per second one token may make on average'),
    EDGE_RATE_BURST: z.coerce.number().int().min(1).max(100_000).default(40).describe('calls one token may make at once before EDGE_RATE_PER_SECOND applies (beyond: 429 with Retry-After)'),
    EDGE_ANONYMOUS_RATE_PER_SECOND: z.coerce.number().positive().max(100_000).default(20).describe('calls per second one client address may make without a token (exchanging client credentials, the JWKS)'),
    EDGE_ANONYMOUS_RATE_BURST: z.coerce.number().int().min(1).max(100_000).default(40).describe('calls one client address may make at once without a token (beyond: 429 with Retry-After)'),
    EDGE_UPSTREAM_DEADLINE_MS: z.coerce.number().int().min(100).max(600_000).default(30_000).describe('deadline of a forwarded call when the caller sets none, in ms'),
  })
  .superRefine(checkCommonSettings, inTheSamePass);

/** The parsed configuration of the edge. */
export type EdgeConfig = z.infer<typeof edgeConfigSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadEdgeConfig(env: NodeJS.ProcessEnv): EdgeConfig {
  return parseEnv(edgeConfigSchema, env, 'edge');
}
