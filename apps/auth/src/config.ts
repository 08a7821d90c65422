import { z } from 'zod';
import { commonEnv, parseEnv, sqlIdentifier } from '@coffer/runtime';

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

/** Every setting of the auth service. */
export const authConfigSchema = z.object({
  ...commonEnv,
  AUTH_GRPC_ADDRESS: z.string().default('127.0.0.1:50051'),
  AUTH_DB_SCHEMA: sqlIdentifier.default('auth'),
  AUTH_SIGNING_KEY: z.string({ error: 'required: an Ed25519 private JWK with a kid' }).min(1),
  AUTH_SERVICE_IDENTITIES: identitiesJson,
  AUTH_SERVICE_TOKEN_TTL_SECONDS: z.coerce.number().int().min(60).max(3600).default(900),
  AUTH_APPLICATION_TOKEN_TTL_SECONDS: z.coerce.number().int().min(60).max(3600).default(900),
  AUTH_SCOPED_TOKEN_TTL_SECONDS: z.coerce.number().int().min(60).max(3600).default(1200),
  AUTH_WIDGET_TOKEN_TTL_SECONDS: z.coerce.number().int().min(60).max(3600).default(1200),
  /** How long a rotated application secret keeps working: one day by default. */
  AUTH_APPLICATION_SECRET_GRACE_SECONDS: z.coerce.number().int().min(0).max(30 * 86400).default(86400),
  /** How often the signing key is replaced: one day by default. */
  AUTH_SIGNING_KEY_ROTATION_SECONDS: z.coerce.number().int().min(60).default(86400),
  /** Where config answers, for creating end users' workspaces; without it, scoped tokens need a workspace_id. */
  CONFIG_ADDRESS: z.string().optional(),
  AUTH_LOCKOUT_MAX_FAILURES: z.coerce.number().int().min(1).default(5),
  AUTH_LOCKOUT_WINDOW_SECONDS: z.coerce.number().int().positive().default(900),
  AUTH_LOCKOUT_SECONDS: z.coerce.number().int().positive().default(900),
});

/** The parsed configuration of the auth service. */
export type AuthConfig = z.infer<typeof authConfigSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadAuthConfig(env: NodeJS.ProcessEnv): AuthConfig {
  return parseEnv(authConfigSchema, env, 'auth service');
}
