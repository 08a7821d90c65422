import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { checkCommonSettings, commonEnv, inTheSamePass, parseEnv, sqlIdentifier, metricsAddressSetting } from '@coffer/runtime';
import { parseEgressAllowList } from './connectors/egress-policy';

/** Every setting of the sync worker; it reaches secrets through the secrets service only. */
export const syncWorkerConfigSchema = z
  .object({
    ...commonEnv,
    SYNC_WORKER_GRPC_ADDRESS: z.string().default('127.0.0.1:50054').describe('host:port the gRPC server binds (port 0: any free port)'),
    SYNC_WORKER_METRICS_ADDRESS: metricsAddressSetting,
    SYNC_WORKER_DB_SCHEMA: sqlIdentifier.default('sync').describe("Postgres schema of the sync worker's tables"),
    CONFIG_ADDRESS: z.string().default('127.0.0.1:50052').describe('host:port of the config service'),
    SECRETS_ADDRESS: z.string().default('127.0.0.1:50053').describe('host:port of the secrets service'),
    SYNC_WORKER_CLIENT_ID: z.string().min(1).default('sync-worker').describe("client id of the sync worker's service identity at auth"),
    SYNC_WORKER_CLIENT_SECRET: z
      .string({ error: 'required: the sync-worker service identity secret' })
      .min(16, 'must be at least 16 characters')
      .describe("client secret of the sync worker's service identity (as in auth's AUTH_SERVICE_IDENTITIES)"),
    SYNC_WORKER_JOB_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(3).describe('attempts of a sync, check or discover job before it fails for good and is dead-lettered'),
    SYNC_WORKER_JOB_BACKOFF_MS: z.coerce.number().int().min(0).default(5_000).describe('wait before the 2nd attempt; doubled for each further attempt'),
    SYNC_WORKER_JOB_BACKOFF_MAX_MS: z.coerce.number().int().min(0).default(300_000).describe('longest wait between attempts'),
    SYNC_WORKER_JOB_TIMEOUT_MS: z.coerce.number().int().min(1_000).default(3_600_000).describe('a sync attempt running longer is aborted and retried'),
    SYNC_WORKER_CHECK_TIMEOUT_MS: z.coerce.number().int().min(1_000).default(30_000).describe('a check or discover attempt running longer is aborted and retried (keep attempts × timeout under config\'s CONFIG_CHECK_TIMEOUT_SECONDS)'),
    SYNC_WORKER_HEARTBEAT_INTERVAL_MS: z.coerce.number().int().min(100).default(5_000).describe('how often a running job heartbeats'),
    SYNC_WORKER_HEARTBEAT_TIMEOUT_MS: z.coerce.number().int().min(500).default(30_000).describe('a running job without a heartbeat this long is retried by another replica'),
    SYNC_WORKER_POLL_INTERVAL_MS: z.coerce.number().int().min(50).default(1_000).describe('how often a replica looks for due jobs'),
    SYNC_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(4).describe('sync jobs one replica runs at once'),
    SYNC_WORKER_PROXY_TIMEOUT_MS: z.coerce.number().int().min(100).max(110_000).default(30_000).describe('how long one proxied API request may take (an OAuth refresh and its one retry included)'),
    // gRPC's default message bound is 4 MiB: the answer must fit in it with its headers.
    SYNC_WORKER_PROXY_MAX_RESPONSE_BYTES: z.coerce.number().int().min(1024).max(3 * 1024 * 1024).default(2 * 1024 * 1024).describe('largest API response body a proxied request passes back, in bytes'),
    SYNC_WORKER_MAX_DELIVER: z.coerce.number().int().min(1).max(100).default(5).describe('deliveries of a sync or check request before it goes to the dead-letter subject'),
    /**
     * What connectors may reach beyond public addresses: comma-separated CIDRs, IP addresses and host
     * names (each of the last two with an optional :port). Empty, the default, denies every loopback,
     * private, link-local and metadata address.
     */
    SYNC_WORKER_EGRESS_ALLOW: z
      .string()
      .default('')
      .transform((text, ctx) => {
        const { entries, errors } = parseEgressAllowList(text);
        for (const message of errors) ctx.addIssue({ code: 'custom', message });
        return entries;
      })
      .describe('what connectors may reach although it is loopback, private, link-local or metadata: comma-separated CIDRs, addresses or host names (optionally with :port); empty denies them all'),
    SYNC_WORKER_AIRBYTE_COMMANDS: z
      .string()
      .default('')
      .transform((text, ctx) => {
        const { commands, errors } = parseAirbyteCommands(text);
        for (const message of errors) ctx.addIssue({ code: 'custom', message });
        return commands;
      })
      .describe('Airbyte-protocol commands a definition may name as airbyte:<name>: a JSON object of name to an absolute executable path, or to an array of it and fixed arguments'),
    SYNC_WORKER_CONNECTOR_WORK_DIR: z
      .string()
      .default(join(tmpdir(), 'coffer-sync-worker'))
      .refine((p) => isAbsolute(p), 'must be an absolute path')
      .describe('folder (created 0700) under which each Airbyte-protocol connector run gets a fresh folder for its config file, removed after the run'),
  })
  .superRefine(checkCommonSettings, inTheSamePass)
  .superRefine((c, ctx) => {
    if (c.SYNC_WORKER_HEARTBEAT_TIMEOUT_MS <= c.SYNC_WORKER_HEARTBEAT_INTERVAL_MS) {
      ctx.addIssue({ code: 'custom', path: ['SYNC_WORKER_HEARTBEAT_TIMEOUT_MS'], message: 'must be longer than SYNC_WORKER_HEARTBEAT_INTERVAL_MS' });
    }
  });

/** The parsed configuration of the sync worker. */
export type SyncWorkerConfig = z.infer<typeof syncWorkerConfigSchema>;

/** Parses the environment once, listing every bad variable at once. */
export function loadSyncWorkerConfig(env: NodeJS.ProcessEnv): SyncWorkerConfig {
  return parseEnv(syncWorkerConfigSchema, env, 'sync worker');
}

/** Parses SYNC_WORKER_AIRBYTE_COMMANDS: every problem listed, so one start-up names them all. */
export function parseAirbyteCommands(text: string): { commands: Record<string, string[]>; errors: string[] } {
  const commands: Record<string, string[]> = {};
  const errors: string[] = [];
  if (!text.trim()) return { commands, errors };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { commands, errors: ['must be a JSON object of name to command'] };
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return { commands, errors: ['must be a JSON object of name to command'] };
  for (const [name, command] of Object.entries(value)) {
    const argv = typeof command === 'string' ? [command] : command;
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(name)) errors.push(`${name}: a name is letters, digits, ".", "_" and "-"`);
    else if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string')) errors.push(`${name}: must be a path or an array of strings`);
    else if (!isAbsolute(argv[0]!)) errors.push(`${name}: the executable must be an absolute path`);
    else commands[name] = argv as string[];
  }
  return { commands, errors };
}
