import { z } from 'zod';
import { checkCommonSettings, commonEnv, inTheSamePass, parseEnv, sqlIdentifier, metricsAddressSetting } from '@coffer/runtime';
import { FAULT_POINTS } from './fault-points';

/** Every setting of the config service; key management is the secrets service's alone. */
export const configServiceSchema = z
  .object({
    ...commonEnv,
    CONFIG_GRPC_ADDRESS: z.string().default('127.0.0.1:50052').describe('host:port the gRPC server binds (port 0: any free port)'),
    CONFIG_METRICS_ADDRESS: metricsAddressSetting,
    CONFIG_DB_SCHEMA: sqlIdentifier.default('config').describe("Postgres schema of config's tables"),
    SECRETS_ADDRESS: z.string().default('127.0.0.1:50053').describe('host:port of the secrets service'),
    SYNC_WORKER_ADDRESS: z.string().default('127.0.0.1:50054').describe('host:port of the sync worker: ProxyRequest is forwarded there, and it runs the token request of an OAuth authorization code flow'),
    CONFIG_CLIENT_ID: z.string().min(1).default('config').describe("client id of config's service identity at auth"),
    CONFIG_CLIENT_SECRET: z
      .string({ error: 'required: the config service identity secret' })
      .min(16, 'must be at least 16 characters')
      .describe("client secret of config's service identity (as in auth's AUTH_SERVICE_IDENTITIES)"),
    COFFER_COORDINATE_PREFIX: z.string().regex(/^[a-z0-9]+$/).default('coffer').describe('prefix of secret coordinates (`<prefix>_workspace_…`)'),
    CONFIG_SHRED_RETRY_SECONDS: z.coerce.number().int().positive().default(5).describe('how often secrets that could not be shredded right away are retried, in seconds'),
    // Far above the secrets call's deadline (10 s): an intent this old belongs to a change that died.
    CONFIG_WRITE_INTENT_GRACE_SECONDS: z.coerce.number().int().positive().default(60).describe('age after which an unfinished secrets write (an intent) counts as interrupted and is recovered, in seconds'),
    COFFER_FAULT_POINT: z.enum(FAULT_POINTS).optional().describe('tests only: the process kills itself (SIGKILL) at this point of a cross-service write'),
    CONFIG_MAX_CONFIG_BYTES: z.coerce.number().int().positive().default(256 * 1024).describe('largest connector configuration accepted, in bytes'),
    CONFIG_CHECK_TIMEOUT_SECONDS: z.coerce.number().int().positive().default(60).describe('how long a CheckConfig / DiscoverSchema waits for the sync worker, in seconds'),
    CONFIG_MAX_SECRETS_PER_CONFIG: z.coerce.number().int().min(1).max(10_000).default(100).describe('most secret fields one configuration may hold'),
    CONFIG_CONCURRENT_SECRET_WRITES_PER_WORKSPACE: z.coerce.number().int().min(1).max(1000).default(2).describe('secret writes to the secrets service running at once per workspace'),
    CONFIG_OAUTH_REDIRECT_URIS: z
      .string()
      .default('')
      .transform((text, ctx) => {
        const uris = text.split(',').map((u) => u.trim()).filter(Boolean);
        for (const u of uris) {
          let url: URL | undefined;
          try {
            url = new URL(u);
          } catch {
            url = undefined;
          }
          if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.hash || url.username || url.password) ctx.addIssue({ code: 'custom', message: `${u.slice(0, 200)} is not an http(s) URL without fragment or credentials` });
        }
        return uris;
      })
      .describe('comma-separated redirect URIs of this deployment that an OAuth authorization code flow may use (each also registered at the provider); empty: no flow can start'),
    CONFIG_OAUTH_FLOW_TTL_SECONDS: z.coerce.number().int().min(60).max(3600).default(600).describe('how long the state of an OAuth authorization code flow is accepted, in seconds'),
    CONFIG_QUEUED_SECRET_WRITES_PER_WORKSPACE: z.coerce.number().int().min(0).max(10_000).default(8).describe('secret writes waiting per workspace before RESOURCE_EXHAUSTED'),
  })
  .superRefine(checkCommonSettings, inTheSamePass);

/** The parsed configuration of the config service. */
export type ConfigServiceConfig = z.infer<typeof configServiceSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadConfigServiceConfig(env: NodeJS.ProcessEnv): ConfigServiceConfig {
  return parseEnv(configServiceSchema, env, 'config service');
}
