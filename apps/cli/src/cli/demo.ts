import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { authV1, CofferError, configV1, defaultNamespace, syncV1 } from '@coffer/contracts';
import { createPromiseClient, createServiceTokenProvider } from '@coffer/rpc';
import { STACK_ENV_DIR_NAME } from '../doctor';
import { integerOption, type ParsedCommand } from './args';
import { followSync, jobView, type CliContext } from './commands';
import { operatorCredentials, readSavedStack, readStackState, resolveEndpoints } from './session';

const demoDefinitionName = 'Coffer demo API';

/** What the demo saw, for `--json` and for its caller. */
export interface DemoResult {
  organizationId: string;
  clientId: string;
  workspaceId: string;
  sourceId: string;
  destinationId: string;
  connectionId: string;
  maskedConfig: unknown;
  job: ReturnType<typeof jobView>;
  endpointRequests: { withSecretV2: number; refused: number };
  events: { stream: string; subject: string; type: string }[];
}

/** Reads `KEY=value` lines of an env file the stack wrote; empty when the stack wrote none. */
async function readEnvFile(file: string): Promise<Record<string, string>> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** Whether an egress allow-list (SYNC_WORKER_EGRESS_ALLOW) names 127.0.0.1 or a range holding it. */
export function egressAllowsLoopback(allow: string | undefined): boolean {
  return (allow ?? '').split(',').some((entry) => /^(127\.0\.0\.1|127\.0\.0\.0\/8|localhost|0\.0\.0\.0\/0)(:\d+)?$/.test(entry.trim()));
}

/**
 * `coffer demo`: the main path against the running development stack, printing each step: the
 * organization's application token, a workspace and its scoped token, the definitions, a source with
 * a secret (an HTTP endpoint served here that answers only its second version), the masked read,
 * the update to v2, a sync into the built-in Postgres destination, the job's end and the events a
 * plain JetStream consumer saw. Resolves the exit code (1 when the sync did not succeed).
 */
export async function runDemo(ctx: CliContext, parsed: ParsedCommand): Promise<number> {
  const timeoutMs = integerOption(parsed, 'timeout', 120) * 1000;
  const started = ctx.now();
  let n = 0;
  const step = (text: string) => {
    if (!parsed.json) ctx.out(`[${++n}] ${text}`);
  };
  const detail = (text: string) => {
    if (!parsed.json) ctx.out(`    ${text}`);
  };

  const endpoints = await resolveEndpoints(ctx.home, ctx.env);
  const state = await readStackState(ctx.home);
  const saved = await readSavedStack(ctx.home);
  const seed = saved?.seed;
  if (!state || !seed) throw new CofferError('failed_precondition', `no development stack runs from ${ctx.home.dir}: start one with npm start (COFFER_HOME=${ctx.home.dir})`);
  const stackEnv = join(ctx.home.dir, STACK_ENV_DIR_NAME);
  const databaseUrl = (await readEnvFile(join(stackEnv, 'config.env'))).DATABASE_URL;
  const egressAllow = (await readEnvFile(join(stackEnv, 'sync-worker.env'))).SYNC_WORKER_EGRESS_ALLOW;
  if (!databaseUrl) throw new CofferError('failed_precondition', `${stackEnv}/config.env names no DATABASE_URL for the Postgres destination`);

  const secretV1 = `demo-v1-${randomBytes(12).toString('hex')}`;
  const secretV2 = `demo-v2-${randomBytes(12).toString('hex')}`;
  const requests = { withSecretV2: 0, refused: 0 };
  const records = [
    { id: 1, city: 'Lisbon', temperature: 21 },
    { id: 2, city: 'Oslo', temperature: 4 },
    { id: 3, city: 'Nairobi', temperature: 25 },
  ];
  const http = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${secretV2}`) {
      requests.refused++;
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized"}');
      return;
    }
    requests.withSecretV2++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(records));
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/records`;

  const auth = createPromiseClient(authV1.AuthServiceClient, endpoints.auth);
  const operatorTokens = createServiceTokenProvider({ authAddress: endpoints.auth, ...operatorCredentials(saved, ctx.env), audience: 'config' });
  const operator = createPromiseClient(configV1.ConfigServiceClient, endpoints.config, { tokenProvider: operatorTokens });
  let application: ReturnType<typeof createPromiseClient<configV1.ConfigServiceClient>> | undefined;
  let scoped: typeof application;
  try {
    step(`organization "${seed.organization.name}" (${seed.organization.organizationId}), application ${seed.application.clientId}`);
    const appToken = await auth.issueApplicationToken({ clientId: seed.application.clientId, clientSecret: seed.application.clientSecret });
    detail(`application token issued (organization admin, expires in ${appToken.expiresIn} s)`);
    application = createPromiseClient(configV1.ConfigServiceClient, endpoints.config, { tokenProvider: async () => appToken.accessToken });

    const workspace = (await application.createWorkspace({ name: `demo ${started.toISOString()}`, organizationId: '' })).workspace!;
    step(`workspace "${workspace.name}" (${workspace.workspaceId})`);
    const authAsApp = createPromiseClient(authV1.AuthServiceClient, endpoints.auth, { tokenProvider: async () => appToken.accessToken });
    const scopedToken = await authAsApp.issueScopedToken({ workspaceId: workspace.workspaceId, externalUserId: '', createWorkspace: false, role: 'workspace_editor' }).finally(() => authAsApp.close());
    detail(`scoped token issued for it (workspace_editor, expires in ${scopedToken.expiresIn} s); the steps below use it`);
    scoped = createPromiseClient(configV1.ConfigServiceClient, endpoints.config, { tokenProvider: async () => scopedToken.accessToken });

    const definitions = (await scoped.listConnectorDefinitions({ page: { pageSize: 500, pageToken: '' }, actorType: configV1.ActorType.ACTOR_TYPE_UNSPECIFIED })).definitions;
    let source = definitions.find((d) => d.name === demoDefinitionName && d.connector === 'builtin:http-json');
    const postgres = definitions.find((d) => d.connector === 'builtin:postgres' && d.actorType === configV1.ActorType.ACTOR_TYPE_DESTINATION);
    if (!postgres) throw new CofferError('failed_precondition', 'the built-in Postgres destination definition is not registered: restart npm start to register it');
    if (!source) {
      source = (
        await operator.registerConnectorDefinition({
          name: demoDefinitionName,
          actorType: configV1.ActorType.ACTOR_TYPE_SOURCE,
          connector: 'builtin:http-json',
          specJson: JSON.stringify({
            $schema: 'http://json-schema.org/draft-07/schema#',
            title: demoDefinitionName,
            type: 'object',
            required: ['url', 'api_token'],
            additionalProperties: false,
            properties: { url: { type: 'string', format: 'uri', order: 0 }, api_token: { type: 'string', airbyte_secret: true, order: 1 } },
          }),
        })
      ).definition!;
      step(`definition "${source.name}" registered by the operator (${source.definitionId}, connector ${source.connector}; api_token is a secret field)`);
    } else {
      step(`definition "${source.name}" (${source.definitionId}, connector ${source.connector}; api_token is a secret field), registered by an earlier demo`);
    }
    detail(`destination definition "${postgres.name}" (${postgres.definitionId}, built in)`);

    step(`serving ${url}: it answers only "Authorization: Bearer <the secret's version 2>"`);
    const created = (await scoped.createActor({ workspaceId: workspace.workspaceId, definitionId: source.definitionId, name: 'demo api', configJson: JSON.stringify({ url, api_token: secretV1 }) })).actor!;
    step(`source created with secret version 1 (${created.actorId})`);
    const read = (await scoped.getActor({ actorId: created.actorId })).actor!;
    const masked = JSON.parse(read.configJson) as unknown;
    step(`masked read: ${JSON.stringify(masked)}`);
    const updated = (await scoped.updateActor({ actorId: created.actorId, expectedVersion: read.version, name: read.name, configJson: JSON.stringify({ url, api_token: secretV2 }) })).actor!;
    step(`source updated to secret version 2 (config version ${updated.version}); read back: ${updated.configJson}`);

    const db = new URL(databaseUrl);
    const table = `records_${workspace.workspaceId.slice(0, 8)}`;
    const destination = (
      await scoped.createActor({
        workspaceId: workspace.workspaceId,
        definitionId: postgres.definitionId,
        name: 'demo warehouse',
        configJson: JSON.stringify({
          host: db.hostname,
          port: Number(db.port || 5432),
          database: decodeURIComponent(db.pathname.slice(1)),
          username: decodeURIComponent(db.username),
          password: decodeURIComponent(db.password),
          schema: 'coffer_demo',
          table,
        }),
      })
    ).actor!;
    step(`destination: the stack's Postgres, table coffer_demo.${table} (${destination.actorId}); its password is a secret too`);
    const connection = (await scoped.createConnection({ workspaceId: workspace.workspaceId, sourceId: created.actorId, destinationId: destination.actorId, name: 'demo api → warehouse' })).connection!;
    step(`connection ${connection.connectionId}; requesting a sync …`);
    if (!egressAllowsLoopback(egressAllow)) {
      detail(`warning: the sync worker's egress allow-list (${egressAllow ?? 'unset'}) does not name 127.0.0.1, so connectors may not reach this endpoint or the local Postgres: start the stack with SYNC_WORKER_EGRESS_ALLOW=127.0.0.1 npm start`);
    }
    const job = await followSync(ctx, { connectionId: connection.connectionId, timeoutMs, endpoints, config: scoped, tty: !parsed.json && process.stderr.isTTY === true });
    const view = jobView(job);
    step(`sync job ${view.jobId} ${view.status}: ${view.recordsSynced} record(s)${view.failureReason ? `; ${view.failureReason}` : ''}`);
    detail(`the endpoint answered ${requests.withSecretV2} request(s) presenting version 2 and refused ${requests.refused}`);

    const events = await eventsSince(state.endpoints.nats, started, [workspace.workspaceId, connection.connectionId, job.jobId]);
    step(`a plain JetStream consumer (ordered, from ${started.toISOString()}) saw ${events.length} event(s) of this demo:`);
    for (const e of events) detail(`${e.stream.padEnd(16)} ${e.type}`);

    const result: DemoResult = {
      organizationId: seed.organization.organizationId,
      clientId: seed.application.clientId,
      workspaceId: workspace.workspaceId,
      sourceId: created.actorId,
      destinationId: destination.actorId,
      connectionId: connection.connectionId,
      maskedConfig: masked,
      job: view,
      endpointRequests: { ...requests },
      events,
    };
    if (parsed.json) ctx.out(JSON.stringify(result, null, 2));
    else ctx.out(job.status === syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED ? 'demo complete.' : 'demo ended: the sync did not succeed.');
    return job.status === syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED ? 0 : 1;
  } finally {
    application?.close();
    scoped?.close();
    auth.close();
    operator.close();
    operatorTokens.close();
    await new Promise<void>((r) => http.close(() => r()));
  }
}

/**
 * Reads every Coffer stream from `since` with an ordered consumer (a plain JetStream client, no
 * Coffer code), keeping the events whose data names one of `ids`; waits (bounded) for the job's
 * outcome, which the relay publishes after the job row ends.
 */
async function eventsSince(natsUrl: string, since: Date, ids: string[]): Promise<DemoResult['events']> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const seen = new Map<string, DemoResult['events'][number] & { at: bigint }>();
    // In the order the server stored them, across streams.
    const inOrder = () => [...seen.values()].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0)).map(({ at: _at, ...e }) => e);
    const streams: string[] = [];
    for await (const si of jsm.streams.list()) if (si.config.name.startsWith(`${defaultNamespace.streamPrefix}_`)) streams.push(si.config.name);
    const consumers = await Promise.all(streams.map(async (stream) => ({ stream, consumer: await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since.toISOString() }) })));
    // Bounded: up to 10 rounds of a second each, ending once the job's outcome is in.
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        consumers.map(async ({ stream, consumer }) => {
          const batch = await consumer.fetch({ max_messages: 500, expires: 1000 });
          for await (const m of batch) {
            const data = new TextDecoder().decode(m.data);
            if (!ids.some((id) => data.includes(id))) continue;
            seen.set(`${stream}:${m.seq}`, { stream, subject: m.subject, type: m.headers?.get('ce-type') ?? m.subject, at: BigInt(m.info.timestampNanos) });
          }
        }),
      );
      const events = inOrder();
      if (events.some((e) => /SyncSucceeded|SyncFailed/.test(e.type))) return events;
    }
    return inOrder();
  } finally {
    await nc.close();
  }
}
