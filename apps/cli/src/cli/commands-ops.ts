import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CofferError, configV1, secretsV1 } from '@coffer/contracts';
import { verifyEventChain, type EventStoreDatabase } from '@coffer/event-store';
import { createPromiseClient, createServiceTokenProvider } from '@coffer/rpc';
import { createDatabase } from '@coffer/runtime';
import { parseEnvFile, STACK_ENV_DIR_NAME } from '../doctor';
import type { CofferHome } from '../home';
import { stackServices, type StackService } from '../stack';
import { integerOption, UsageError, type ParsedCommand } from './args';
import type { CliContext } from './commands';
import { fields, table } from './format';
import { opsCommandSpecs } from './ops-command-specs';
import { createPrompter, promptForConfig } from './prompt';
import { loadLogin, operatorCredentials, readSavedStack, readStackState, resolveEndpoints } from './session';

/** True for the commands this module runs. */
export function isOpsCommand(command: string): boolean {
  return Object.hasOwn(opsCommandSpecs, command);
}

function emit(ctx: CliContext, parsed: ParsedCommand, value: unknown, human: () => string): void {
  ctx.out(parsed.json ? JSON.stringify(value, null, 2) : human());
}

async function withClient<C extends { close(): void }, R>(client: C, fn: (c: C) => Promise<R>): Promise<R> {
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

async function applicationConfig(ctx: CliContext) {
  const login = await loadLogin(ctx.home, ctx.now());
  return createPromiseClient(configV1.ConfigServiceClient, login.endpoints.config, { tokenProvider: async () => login.accessToken });
}

/** The secrets service's address: COFFER_SECRETS_ADDRESS, else the running stack's. */
async function secretsEndpoint(home: CofferHome, env: NodeJS.ProcessEnv): Promise<string> {
  const address = env.COFFER_SECRETS_ADDRESS || (await readStackState(home))?.endpoints.secrets;
  if (!address) throw new CofferError('failed_precondition', `no secrets endpoint: start the stack (npm start) with COFFER_HOME=${home.dir}, or set COFFER_SECRETS_ADDRESS`);
  return address;
}

/**
 * The secrets service as the operator: the only identity besides config and sync-worker that
 * secrets accepts, and it holds `secrets.admin` alone (the KEK), never a secret's value.
 */
async function operatorSecrets(ctx: CliContext) {
  const endpoints = await resolveEndpoints(ctx.home, ctx.env);
  const address = await secretsEndpoint(ctx.home, ctx.env);
  const tokens = createServiceTokenProvider({ authAddress: endpoints.auth, ...operatorCredentials(await readSavedStack(ctx.home), ctx.env), audience: 'secrets' });
  const client = createPromiseClient(secretsV1.SecretsServiceClient, address, { tokenProvider: tokens });
  const closeClient = client.close.bind(client);
  return Object.assign(client, {
    close: () => {
      closeClient();
      tokens.close();
    },
  });
}

const connectionRow = (c: configV1.Connection) => [c.connectionId, c.name, c.sourceId, c.destinationId, String(c.version)];
const connectionHeaders = ['id', 'name', 'source', 'destination', 'version'];

/** A secret field as the CLI shows it: versions and states, never a value. */
function secretView(s: configV1.ActorSecret) {
  return {
    field: s.field,
    baseCoordinate: s.baseCoordinate,
    currentVersion: Number(s.currentVersion),
    versions: s.versions.map((v) => ({ version: Number(v.version), state: v.state, createdAt: v.createdAt, current: v.current })),
  };
}

function secretsHuman(views: ReturnType<typeof secretView>[]): string {
  const rows = views.flatMap((s) => s.versions.map((v) => [s.field, String(v.version), v.state, v.createdAt, v.current ? 'yes' : '']));
  return table(['field', 'version', 'state', 'created', 'current'], rows);
}

/** Where `coffer audit verify` reads: one database URL with the schemas to check in it, and where that came from. */
export interface AuditTarget {
  url: string;
  schemas: string[];
  source: string;
}

const defaultSchemas: Record<StackService, { setting: string; schema: string }> = {
  auth: { setting: 'AUTH_DB_SCHEMA', schema: 'auth' },
  secrets: { setting: 'SECRETS_DB_SCHEMA', schema: 'secrets' },
  config: { setting: 'CONFIG_DB_SCHEMA', schema: 'config' },
  'sync-worker': { setting: 'SYNC_WORKER_DB_SCHEMA', schema: 'sync' },
};

/**
 * The databases `audit verify` checks: DATABASE_URL when set; else those of the development stack
 * running from COFFER_HOME (each service's DATABASE_URL and schema, as it left them in stack-env/; or
 * its embedded Postgres, as recorded in stack.json); never a guessed server.
 */
export async function auditTargets(home: CofferHome, env: NodeJS.ProcessEnv, schemas?: string[]): Promise<AuditTarget[]> {
  const all = Object.values(defaultSchemas).map((d) => d.schema);
  if (env.DATABASE_URL) return [{ url: env.DATABASE_URL, schemas: schemas ?? all, source: 'DATABASE_URL' }];
  const stackEnv = join(home.dir, STACK_ENV_DIR_NAME);
  const byUrl = new Map<string, string[]>();
  for (const service of stackServices) {
    const text = await readFile(join(stackEnv, `${service}.env`), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const serviceEnv = parseEnvFile(text);
    if (!serviceEnv.DATABASE_URL) continue;
    const schema = serviceEnv[defaultSchemas[service].setting] || defaultSchemas[service].schema;
    if (schemas && !schemas.includes(schema)) continue;
    byUrl.set(serviceEnv.DATABASE_URL, [...(byUrl.get(serviceEnv.DATABASE_URL) ?? []), schema]);
  }
  if (byUrl.size > 0) return [...byUrl].map(([url, s]) => ({ url, schemas: s, source: `the running development stack (${stackEnv})` }));
  const state = await readStackState(home);
  const password = (await readSavedStack(home))?.postgres?.password;
  if (state?.endpoints.postgres && password) {
    return [{ url: `postgres://postgres:${encodeURIComponent(password)}@${state.endpoints.postgres}/coffer`, schemas: schemas ?? all, source: `the development stack's embedded Postgres (${home.stateFile})` }];
  }
  throw new CofferError('failed_precondition', `no database to verify: set DATABASE_URL, or start the development stack (npm start) with COFFER_HOME=${home.dir}`);
}

/** A database URL without its credentials, for messages. */
function where(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

/** Recomputes the hash chains of the targets' event logs; resolves whether every chain is intact. */
export async function verifyAudit(targets: AuditTarget[], print: (line: string) => void): Promise<{ ok: boolean; results: { database: string; schema: string; ok: boolean; checked: number; broken?: unknown; reason?: string }[] }> {
  const results: { database: string; schema: string; ok: boolean; checked: number; broken?: unknown; reason?: string }[] = [];
  for (const target of targets) {
    const database = where(target.url);
    print(`verifying ${target.schemas.join(', ')} in ${database}, from ${target.source}`);
    const db = createDatabase<EventStoreDatabase>(target.url, { max: 2, connectionTimeoutMs: 5_000 });
    try {
      for (const schema of target.schemas) {
        const verdict = await verifyEventChain(db, schema);
        if (verdict.ok) {
          results.push({ database, schema, ok: true, checked: verdict.checked });
          print(`${schema}: ${verdict.checked} events, chain intact`);
        } else {
          const b = verdict.broken;
          results.push({ database, schema, ok: false, checked: verdict.checked, broken: b, reason: verdict.reason });
          print(`${schema}: BROKEN at global position ${b.globalPosition} (event ${b.eventId}, ${b.type} in ${b.streamId}): ${verdict.reason}; ${verdict.checked} events before it verified`);
        }
      }
    } finally {
      await db.destroy();
    }
  }
  return { ok: results.every((r) => r.ok), results };
}

/** Refuses `sources create` / `destinations create` without --config when nobody can answer questions. */
export function requireTerminalForPrompts(parsed: ParsedCommand, stdinIsTTY = process.stdin.isTTY === true): void {
  if (!stdinIsTTY) throw new UsageError(`${parsed.command}: --config is required when the input is not a terminal (interactive entry asks field by field)`);
}

/** Asks for a config on the terminal, field by field from the definition's spec; resolves its JSON. */
export async function interactiveConfigJson(
  config: { getConnectorDefinition(r: configV1.GetConnectorDefinitionRequest): Promise<configV1.GetConnectorDefinitionResponse> },
  definitionId: string,
): Promise<string> {
  const def = (await config.getConnectorDefinition({ definitionId })).definition!;
  let spec: unknown;
  try {
    spec = JSON.parse(def.specJson);
  } catch {
    throw new CofferError('internal', 'the definition\'s spec is not valid JSON');
  }
  const prompter = createPrompter(process.stdin, process.stderr, true);
  try {
    prompter.say(`${def.name} (${def.connector}): enter its config field by field; secret fields are not echoed; Ctrl-C cancels.`);
    return JSON.stringify(await promptForConfig(spec, prompter));
  } finally {
    prompter.close();
  }
}

/** Runs one of the operator commands (connections list/get, secrets, kek, audit verify); resolves the exit code. */
export async function runOpsCommand(ctx: CliContext, parsed: ParsedCommand): Promise<number> {
  const o = parsed.options as Record<string, string | undefined>;
  const p = parsed.positionals;
  switch (parsed.command) {
    case 'connections list':
      return withClient(await applicationConfig(ctx), async (config) => {
        const all: configV1.Connection[] = [];
        let pageToken = '';
        // Bounded: a server that kept answering page tokens must not keep the CLI looping.
        for (let page = 0; page < 1000; page++) {
          const res = await config.listConnections({ workspaceId: o.workspace!, page: { pageSize: 200, pageToken } });
          all.push(...res.connections);
          if (!res.nextPageToken) break;
          pageToken = res.nextPageToken;
        }
        emit(ctx, parsed, all, () => table(connectionHeaders, all.map(connectionRow)));
        return 0;
      });
    case 'connections get':
      return withClient(await applicationConfig(ctx), async (config) => {
        const c = (await config.getConnection({ connectionId: p[0]! })).connection!;
        emit(ctx, parsed, c, () => fields([['id', c.connectionId], ['name', c.name], ['workspace', c.workspaceId], ['source', c.sourceId], ['destination', c.destinationId], ['version', String(c.version)]]));
        return 0;
      });
    case 'secrets versions':
      return withClient(await applicationConfig(ctx), async (config) => {
        const views = (await config.listActorSecretVersions({ actorId: p[0]!, field: o.field ?? '' })).secrets.map(secretView);
        emit(ctx, parsed, views, () => secretsHuman(views));
        return 0;
      });
    case 'secrets rollback': {
      const toVersion = integerOption(parsed, 'to', 0);
      if (toVersion < 1) throw new UsageError('secrets rollback: --to must be a version number (1 or more)');
      const expectedVersion = integerOption(parsed, 'expected-version', 0);
      return withClient(await applicationConfig(ctx), async (config) => {
        const res = await config.rollbackActorSecret({ actorId: p[0]!, field: o.field!, toVersion, expectedVersion });
        const secret = secretView(res.secret!);
        const actorVersion = Number(res.actor!.version);
        emit(ctx, parsed, { actorId: p[0], actorVersion, secret }, () => `${secret.field}: version ${secret.currentVersion} is current, holding the value of version ${toVersion} (actor ${p[0]} now at version ${actorVersion})\n${secretsHuman([secret])}`);
        return 0;
      });
    }
    case 'kek list':
      return withClient(await operatorSecrets(ctx), async (secrets) => {
        const res = await secrets.listKeyEncryptionKeyVersions({});
        const versions = res.versions.map((v) => ({ kekVersion: v.kekVersion, state: v.state, dataKeys: Number(v.dataKeys) }));
        emit(ctx, parsed, { provider: res.provider, kekId: res.kekId, versions }, () => `KEK ${res.kekId} (${res.provider})\n${table(['version', 'state', 'data keys'], versions.map((v) => [String(v.kekVersion), v.state, String(v.dataKeys)]))}`);
        return 0;
      });
    case 'kek rotate':
      return withClient(await operatorSecrets(ctx), async (secrets) => {
        const res = await secrets.rotateKeyEncryptionKey({ resumeOnly: parsed.options.resume === true });
        const view = { kekVersion: res.kekVersion, rewrapped: Number(res.rewrapped) };
        emit(ctx, parsed, view, () => `KEK version ${view.kekVersion} is primary; ${view.rewrapped} data key(s) re-wrapped under it`);
        return 0;
      });
    case 'kek retire': {
      if (!/^\d{1,9}$/.test(p[0]!) || Number(p[0]) < 1) throw new UsageError('kek retire: <version> must be a KEK version number');
      const kekVersion = Number(p[0]);
      return withClient(await operatorSecrets(ctx), async (secrets) => {
        await secrets.retireKeyEncryptionKeyVersion({ kekVersion });
        emit(ctx, parsed, { retired: kekVersion }, () => `KEK version ${kekVersion} retired`);
        return 0;
      });
    }
    case 'audit verify': {
      const schemas = o.schema?.split(',').map((s) => s.trim()).filter(Boolean);
      if (schemas?.some((s) => !/^[a-z_][a-z0-9_]{0,62}$/.test(s))) throw new UsageError('audit verify: --schema takes schema names, comma-separated');
      const targets = await auditTargets(ctx.home, ctx.env, schemas);
      const report = await verifyAudit(targets, parsed.json ? ctx.progress : ctx.out);
      if (parsed.json) ctx.out(JSON.stringify(report, null, 2));
      return report.ok ? 0 : 1;
    }
  }
  throw new UsageError(`unknown command "${parsed.command}"`);
}
