import { readFile } from 'node:fs/promises';
import { authV1, CofferError, configV1, isCofferError, syncV1 } from '@coffer/contracts';
import { createPromiseClient, createServiceTokenProvider } from '@coffer/rpc';
import type { CofferHome } from '../home';
import { integerOption, UsageError, type ParsedCommand } from './args';
import { isAuthCommand, runAuthCommand } from './commands-auth';
import { interactiveConfigJson, requireTerminalForPrompts } from './commands-ops';
import { actorTypeName, actorTypeOption, definitionFromFile } from './definition-file';
import { fields, syncProgressLine, table } from './format';
import { loadLogin, operatorCredentials, readSavedStack, resolveEndpoints, saveLogin, type Endpoints } from './session';

/** What a command needs from the outside world, so tests and the demo can run it in-process. */
export interface CliContext {
  home: CofferHome;
  env: NodeJS.ProcessEnv;
  /** Standard output: results. */
  out: (text: string) => void;
  /** Standard error: progress. */
  progress: (text: string) => void;
  now: () => Date;
}

async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    // The parser's message may quote the file's content, which may be a secret.
    throw new UsageError(`${file}: not valid JSON`);
  }
}

async function applicationConfig(ctx: CliContext) {
  const login = await loadLogin(ctx.home, ctx.now());
  return createPromiseClient(configV1.ConfigServiceClient, login.endpoints.config, { tokenProvider: async () => login.accessToken });
}

/** A client of `service` authenticated as the operator (service token for its audience). */
async function operatorClient<C extends import('@grpc/grpc-js').Client>(ctx: CliContext, Ctor: new (address: string, creds: import('@grpc/grpc-js').ChannelCredentials) => C, audience: 'config' | 'sync-worker', endpoints?: Endpoints) {
  const ep = endpoints ?? (await resolveEndpoints(ctx.home, ctx.env));
  const tokens = createServiceTokenProvider({ authAddress: ep.auth, ...operatorCredentials(await readSavedStack(ctx.home), ctx.env), audience });
  const client = createPromiseClient(Ctor, ep[audience], { tokenProvider: tokens });
  const closeClient = client.close.bind(client);
  return Object.assign(client, {
    close: () => {
      closeClient();
      tokens.close();
    },
  });
}

function emit(ctx: CliContext, parsed: ParsedCommand, value: unknown, human: () => string): void {
  ctx.out(parsed.json ? JSON.stringify(value, null, 2) : human());
}

const workspaceRow = (w: configV1.Workspace) => [w.workspaceId, w.name, String(w.version)];
const definitionRow = (d: configV1.ConnectorDefinition) => [d.definitionId, actorTypeName(d.actorType), d.connector, d.name];

function actorView(a: configV1.Actor) {
  return { actorId: a.actorId, workspaceId: a.workspaceId, definitionId: a.definitionId, type: actorTypeName(a.actorType), name: a.name, version: a.version, config: JSON.parse(a.configJson || '{}') as unknown };
}

function actorHuman(a: configV1.Actor): string {
  const v = actorView(a);
  return fields([
    ['id', v.actorId],
    ['type', v.type],
    ['name', v.name],
    ['workspace', v.workspaceId],
    ['definition', v.definitionId],
    ['version', String(v.version)],
    ['config', JSON.stringify(v.config)],
  ]);
}

/** `coffer login`: client credentials → application token, cached in COFFER_HOME. */
async function login(ctx: CliContext, parsed: ParsedCommand): Promise<void> {
  const endpoints = await resolveEndpoints(ctx.home, ctx.env);
  const seed = (await readSavedStack(ctx.home))?.seed?.application;
  const clientId = (parsed.options['client-id'] as string | undefined) ?? ctx.env.COFFER_CLIENT_ID ?? seed?.clientId;
  const clientSecret = ctx.env.COFFER_CLIENT_SECRET ?? (clientId === seed?.clientId ? seed?.clientSecret : undefined);
  if (!clientId || !clientSecret) throw new UsageError('login: no client credentials: set COFFER_CLIENT_ID and COFFER_CLIENT_SECRET, or start the stack with npm start');
  const auth = createPromiseClient(authV1.AuthServiceClient, endpoints.auth);
  try {
    const res = await auth.issueApplicationToken({ clientId, clientSecret });
    const expiresAt = new Date(ctx.now().getTime() + res.expiresIn * 1000).toISOString();
    const file = await saveLogin(ctx.home, { endpoints, clientId, accessToken: res.accessToken, expiresAt });
    emit(ctx, parsed, { clientId, expiresAt, cachedIn: file, endpoints }, () => `logged in as application ${clientId}; token valid until ${expiresAt}, cached in ${file}`);
  } finally {
    auth.close();
  }
}

async function listAll<T>(fetchPage: (pageToken: string) => Promise<{ items: T[]; nextPageToken: string }>): Promise<T[]> {
  const all: T[] = [];
  let token = '';
  // Bounded: a server that kept answering page tokens must not keep the CLI looping.
  for (let page = 0; page < 1000; page++) {
    const res = await fetchPage(token);
    all.push(...res.items);
    if (!res.nextPageToken) break;
    token = res.nextPageToken;
  }
  return all;
}

async function withClient<C extends { close(): void }, R>(client: C, fn: (c: C) => Promise<R>): Promise<R> {
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** Requests a sync and follows its job to the end; resolves the job (or throws on timeout). */
export async function followSync(
  ctx: CliContext,
  options: { connectionId: string; timeoutMs: number; endpoints?: Endpoints; config: { requestSync(r: configV1.RequestSyncRequest): Promise<configV1.RequestSyncResponse> }; tty: boolean },
): Promise<syncV1.SyncJob> {
  const { jobId } = await options.config.requestSync({ connectionId: options.connectionId });
  const sync = await operatorClient(ctx, syncV1.SyncServiceClient, 'sync-worker', options.endpoints);
  const began = ctx.now().getTime();
  let last = '';
  try {
    // Bounded by the timeout: the job row appears once the worker has taken the request.
    for (;;) {
      const elapsed = ctx.now().getTime() - began;
      let job: syncV1.SyncJob | undefined;
      try {
        job = (await sync.getSyncJob({ jobId })).job;
      } catch (err) {
        if (!isCofferError(err) || err.code !== 'not_found') throw err;
      }
      const status = job ? statusName(job.status) : 'requested';
      const line = syncProgressLine(jobId, status, Number(job?.recordsSynced ?? 0), elapsed);
      if (options.tty) ctx.progress(`\r${line}`);
      else if (status !== last) ctx.progress(line);
      last = status;
      // Queued (waiting for its first attempt or for a retry) and running jobs have not ended yet.
      if (job && TERMINAL_STATUSES.has(job.status)) {
        if (options.tty) ctx.progress('\n');
        return job;
      }
      if (elapsed > options.timeoutMs) throw new CofferError('unavailable', `sync job ${jobId} did not end within ${options.timeoutMs / 1000} s (last seen: ${status})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    sync.close();
  }
}

/** The word for a job status. */
export function statusName(status: syncV1.SyncJobStatus): string {
  return (
    {
      [syncV1.SyncJobStatus.SYNC_JOB_STATUS_QUEUED]: 'queued',
      [syncV1.SyncJobStatus.SYNC_JOB_STATUS_RUNNING]: 'running',
      [syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED]: 'succeeded',
      [syncV1.SyncJobStatus.SYNC_JOB_STATUS_FAILED]: 'failed',
      [syncV1.SyncJobStatus.SYNC_JOB_STATUS_CANCELLED]: 'cancelled',
    }[status as number] ?? 'unknown'
  );
}

const TERMINAL_STATUSES = new Set<syncV1.SyncJobStatus>([
  syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED,
  syncV1.SyncJobStatus.SYNC_JOB_STATUS_FAILED,
  syncV1.SyncJobStatus.SYNC_JOB_STATUS_CANCELLED,
]);

/** A job as the CLI shows it. */
export function jobView(job: syncV1.SyncJob) {
  return {
    jobId: job.jobId,
    connectionId: job.connectionId,
    status: statusName(job.status),
    recordsSynced: Number(job.recordsSynced),
    attempts: job.attempts,
    failureCode: job.failureCode,
    failureReason: job.failureReason,
    startedAt: job.startedAt,
    endedAt: job.endedAt,
  };
}

function jobHuman(view: ReturnType<typeof jobView>): string {
  return fields([
    ['job', view.jobId],
    ['connection', view.connectionId],
    ['status', view.status],
    ['records', String(view.recordsSynced)],
    ['attempts', String(view.attempts)],
    ...(view.failureCode ? [['failure', view.failureCode] as const] : []),
    ...(view.failureReason ? [['reason', view.failureReason] as const] : []),
    ['started', view.startedAt],
    ['ended', view.endedAt || '-'],
  ]);
}

/** Runs one parsed command (everything but `demo`); resolves the exit code. */
export async function runCommand(ctx: CliContext, parsed: ParsedCommand): Promise<number> {
  if (isAuthCommand(parsed.command)) return runAuthCommand(ctx, parsed);
  const [group, verb] = parsed.command.split(' ') as [string, string | undefined];
  const o = parsed.options as Record<string, string | undefined>;
  const p = parsed.positionals;
  switch (parsed.command) {
    case 'login':
      await login(ctx, parsed);
      return 0;
    case 'workspaces create':
      return withClient(await applicationConfig(ctx), async (config) => {
        const w = (await config.createWorkspace({ name: p[0]!, organizationId: '' })).workspace!;
        emit(ctx, parsed, w, () => table(['id', 'name', 'version'], [workspaceRow(w)]));
        return 0;
      });
    case 'workspaces list':
      return withClient(await applicationConfig(ctx), async (config) => {
        const all = await listAll(async (pageToken) => {
          const r = await config.listWorkspaces({ page: { pageSize: 200, pageToken } });
          return { items: r.workspaces, nextPageToken: r.nextPageToken };
        });
        emit(ctx, parsed, all, () => table(['id', 'name', 'version'], all.map(workspaceRow)));
        return 0;
      });
    case 'definitions register': {
      const def = definitionFromFile(p[0]!, await readJsonFile(p[0]!), { name: o.name, type: o.type, connector: o.connector });
      return withClient(await operatorClient(ctx, configV1.ConfigServiceClient, 'config'), async (config) => {
        const d = (await config.registerConnectorDefinition({ name: def.name, actorType: def.actorType, connector: def.connector, specJson: JSON.stringify(def.spec) })).definition!;
        emit(ctx, parsed, { ...d, spec: JSON.parse(d.specJson) as unknown, specJson: undefined }, () => table(['id', 'type', 'connector', 'name'], [definitionRow(d)]));
        return 0;
      });
    }
    case 'definitions list': {
      const actorType = actorTypeOption(o.type) ?? configV1.ActorType.ACTOR_TYPE_UNSPECIFIED;
      return withClient(await applicationConfig(ctx), async (config) => {
        const all = await listAll(async (pageToken) => {
          const r = await config.listConnectorDefinitions({ page: { pageSize: 200, pageToken }, actorType });
          return { items: r.definitions, nextPageToken: r.nextPageToken };
        });
        emit(ctx, parsed, all.map((d) => ({ definitionId: d.definitionId, type: actorTypeName(d.actorType), connector: d.connector, name: d.name, version: d.version })), () => table(['id', 'type', 'connector', 'name'], all.map(definitionRow)));
        return 0;
      });
    }
    case 'definitions show':
      return withClient(await applicationConfig(ctx), async (config) => {
        const d = (await config.getConnectorDefinition({ definitionId: p[0]! })).definition!;
        const spec = JSON.parse(d.specJson) as unknown;
        const view = { definitionId: d.definitionId, type: actorTypeName(d.actorType), connector: d.connector, name: d.name, version: d.version, spec };
        emit(ctx, parsed, view, () => `${fields([['id', view.definitionId], ['type', view.type], ['connector', view.connector], ['name', view.name], ['version', String(view.version)]])}\nspec:\n${JSON.stringify(spec, null, 2)}`);
        return 0;
      });
    case 'connections create':
      return withClient(await applicationConfig(ctx), async (config) => {
        const c = (await config.createConnection({ workspaceId: o.workspace!, sourceId: o.source!, destinationId: o.destination!, name: o.name ?? 'connection' })).connection!;
        emit(ctx, parsed, c, () => table(['id', 'workspace', 'source', 'destination', 'name'], [[c.connectionId, c.workspaceId, c.sourceId, c.destinationId, c.name]]));
        return 0;
      });
    case 'jobs list': {
      if (!o.workspace && !o.connection) throw new UsageError('jobs list: --workspace or --connection is required');
      const limit = integerOption(parsed, 'limit', 50);
      return withClient(await operatorClient(ctx, syncV1.SyncServiceClient, 'sync-worker'), async (sync) => {
        const jobs: syncV1.SyncJob[] = [];
        let pageToken = '';
        // Bounded by the limit: pages of up to 500 until it is reached or the server has no more.
        while (jobs.length < limit) {
          const res = await sync.listSyncJobs({ workspaceId: o.workspace ?? '', connectionId: o.connection ?? '', pageSize: Math.min(500, limit - jobs.length), pageToken });
          jobs.push(...res.jobs);
          if (!res.nextPageToken || !res.jobs.length) break;
          pageToken = res.nextPageToken;
        }
        const views = jobs.map(jobView);
        emit(ctx, parsed, views, () => table(['job', 'connection', 'status', 'records', 'started', 'ended'], views.map((v) => [v.jobId, v.connectionId, v.status, String(v.recordsSynced), v.startedAt, v.endedAt || '-'])));
        return 0;
      });
    }
    case 'jobs show':
      return withClient(await operatorClient(ctx, syncV1.SyncServiceClient, 'sync-worker'), async (sync) => {
        const view = jobView((await sync.getSyncJob({ jobId: p[0]! })).job!);
        emit(ctx, parsed, view, () => jobHuman(view));
        return 0;
      });
    case 'sync': {
      const timeoutMs = integerOption(parsed, 'timeout', 120) * 1000;
      const login = await loadLogin(ctx.home, ctx.now());
      return withClient(await applicationConfig(ctx), async (config) => {
        const job = await followSync(ctx, { connectionId: p[0]!, timeoutMs, endpoints: login.endpoints, config, tty: !parsed.json && process.stderr.isTTY === true });
        const view = jobView(job);
        emit(ctx, parsed, view, () => jobHuman(view));
        return job.status === syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED ? 0 : 1;
      });
    }
  }
  if (group === 'sources' || group === 'destinations') {
    if (verb === 'create' && !o.config) requireTerminalForPrompts(parsed);
    return withClient(await applicationConfig(ctx), async (config) => {
      const show = (a: configV1.Actor) => emit(ctx, parsed, actorView(a), () => actorHuman(a));
      if (verb === 'create') {
        const configJson = o.config ? JSON.stringify(await readJsonFile(o.config)) : await interactiveConfigJson(config, o.definition!);
        show((await config.createActor({ workspaceId: o.workspace!, definitionId: o.definition!, name: o.name ?? group.slice(0, -1), configJson })).actor!);
      } else if (verb === 'get') {
        show((await config.getActor({ actorId: p[0]! })).actor!);
      } else if (verb === 'update') {
        const configJson = JSON.stringify(await readJsonFile(o.config!));
        const current = (await config.getActor({ actorId: p[0]! })).actor!;
        show((await config.updateActor({ actorId: p[0]!, expectedVersion: integerOption(parsed, 'expected-version', 0), name: o.name ?? current.name, configJson })).actor!);
      } else {
        await config.deleteActor({ actorId: p[0]!, expectedVersion: integerOption(parsed, 'expected-version', 0) });
        emit(ctx, parsed, { deleted: p[0] }, () => `deleted ${p[0]}`);
      }
      return 0;
    });
  }
  throw new UsageError(`unknown command "${parsed.command}"`);
}
