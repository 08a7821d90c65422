import { z } from 'zod';
import { checkCommonSettings, commonEnv, inTheSamePass, parseEnv, sqlIdentifier, metricsAddressSetting } from '@coffer/runtime';

const identity = z.object({
  clientId: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/),
  clientSecret: z.string().min(16, 'client secrets must be at least 16 characters'),
  role: z.enum(['auth', 'config', 'secrets', 'sync-worker', 'operator']),
});

const identitiesJson = z.string({ error: 'required: JSON array of {clientId, clientSecret, role}' }).transform((text, ctx) => {
  try {
    const parsed = z.array(identity).min(1).safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data;
    ctx.addIssue({ code: 'custom', message: `malformed: ${parsed.error.issues.map((i) => i.path.join('.') + ' ' + i.message).join('; ')}` });
  } catch {
    ctx.addIssue({ code: 'custom', message: 'not valid JSON' });
  }
  return z.NEVER;
});

// Checked here, with every other setting, so a bad key is reported at once and not after connecting.
const signingKeyJwk = z
  .string({ error: 'required: an Ed25519 private JWK with a kid' })
  .min(1, 'required: an Ed25519 private JWK with a kid')
  .superRefine((text, ctx) => {
    let jwk: Record<string, unknown>;
    try {
      jwk = JSON.parse(text) as Record<string, unknown>;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not valid JSON (an Ed25519 private JWK with a kid)' });
      return;
    }
    const missing = ['kty', 'crv', 'd', 'x', 'kid'].filter((k) => typeof jwk?.[k] !== 'string' || jwk[k] === '');
    if (missing.length) ctx.addIssue({ code: 'custom', message: `an Ed25519 private JWK needs ${missing.join(', ')}` });
    else if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') ctx.addIssue({ code: 'custom', message: 'must be an Ed25519 key (kty OKP, crv Ed25519)' });
  });

const ttl = (defaultSeconds: number, what: string) =>
  z.coerce.number().int().min(60).max(3600).default(defaultSeconds).describe(`lifetime of ${what} tokens, in seconds`);

/** Every setting of the auth service. */
export const authConfigSchema = z
  .object({
    ...commonEnv,
    AUTH_GRPC_ADDRESS: z.string().default('127.0.0.1:50051').describe('host:port the gRPC server binds (port 0: any free port)'),
    AUTH_METRICS_ADDRESS: metricsAddressSetting,
    AUTH_DB_SCHEMA: sqlIdentifier.default('auth').describe("Postgres schema of auth's tables"),
    AUTH_SIGNING_KEY: signingKeyJwk.describe('Ed25519 private JWK with a `kid`: the first signing key, and the root that seals later ones'),
    AUTH_SERVICE_IDENTITIES: identitiesJson.describe('JSON array of the service identities, `[{"clientId","clientSecret","role"}]` (secrets of at least 16 characters; roles auth, config, secrets, sync-worker, operator)'),
    AUTH_SERVICE_TOKEN_TTL_SECONDS: ttl(900, 'service'),
    AUTH_APPLICATION_TOKEN_TTL_SECONDS: ttl(900, 'application'),
    AUTH_SCOPED_TOKEN_TTL_SECONDS: ttl(1200, 'scoped'),
    AUTH_WIDGET_TOKEN_TTL_SECONDS: ttl(1200, 'widget'),
    AUTH_APPLICATION_SECRET_GRACE_SECONDS: z.coerce.number().int().min(0).max(30 * 86400).default(86400).describe('how long a rotated application secret keeps working, in seconds'),
    AUTH_SIGNING_KEY_ROTATION_SECONDS: z.coerce.number().int().min(60).default(86400).describe('how often a new signing key replaces the active one, in seconds'),
    CONFIG_ADDRESS: z.string().optional().describe("host:port of config, for creating end users' workspaces; unset, scoped tokens need a workspace_id"),
    AUTH_LOCKOUT_MAX_FAILURES: z.coerce.number().int().min(1).default(5).describe('wrong client secrets for one client id before it is locked'),
    AUTH_LOCKOUT_WINDOW_SECONDS: z.coerce.number().int().positive().default(900).describe('window in which those failures count, in seconds'),
    AUTH_LOCKOUT_SECONDS: z.coerce.number().int().positive().default(900).describe('how long a locked client id stays locked, in seconds'),
  })
  .superRefine(checkCommonSettings, inTheSamePass);

/** The parsed configuration of the auth service. */
export type AuthConfig = z.infer<typeof authConfigSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadAuthConfig(env: NodeJS.ProcessEnv): AuthConfig {
  return parseEnv(authConfigSchema, env, 'auth service');
}
