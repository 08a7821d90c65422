import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventSubject, streamName, syncV1, type MessagingNamespace } from '@coffer/contracts';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createJetStreamPublisher, integrationEventMessage } from '@coffer/messaging';
import { createGrpcServer, createPromiseClient, type GrpcServer, type PromiseClient } from '@coffer/rpc';
import { createDatabase, startRuntime, type ServiceRuntime } from '@coffer/runtime';
import { createLogger, createRedactor } from '@coffer/telemetry';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createTokenVerifier, TOKEN_TYPES } from '@coffer/tokens';
import { createCheckRunner } from './check-runner';
import { airbyteConnectors } from './connectors/airbyte-command';
import { startConsumers } from './consumers';
import { createSyncRunner, defaultJobSettings, type SyncRunner } from './sync-runner';
import { syncGrpcService } from './sync.grpc';
import { createConfigService, type ConfigService } from '../../config/src/config.service';
import { migrateConfigReadModel } from '../../config/src/config.postgres';
import { inProcessSecretsPort, startInProcessSecretsService } from '../../secrets/src/in-process';
import type { SecretsService } from '../../secrets/src/secrets.service';
import { syncMigrations } from './sync.migrations';

// The job lifecycle of sync, check and discover jobs: the sync runner's scheduler in this process,
// the Airbyte-protocol test source and destination as real child processes, real Postgres and NATS
// (requests in, outcomes out through the outbox), CancelSyncJob and GetSyncJob over a real gRPC
// server, and the real config and secrets services composed in-process behind the runner's ports.

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const tsx = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href;
const testing = join(here, 'connectors/testing');
const schema = 'sync';
const ISSUER = 'coffer-auth';
const operator = { subject: 'operator' };
const secret = { type: 'string', airbyte_secret: true };
const sourceSpec = {
  type: 'object',
  required: ['api_key'],
  properties: {
    api_key: secret,
    streams: { type: 'array', items: { type: 'string' } },
    records_per_stream: { type: 'integer' },
    records_per_second: { type: 'number' },
    state_every: { type: 'integer' },
    fail_after: { type: 'integer' },
    hostile_state: { type: 'boolean' },
    check_delay_ms: { type: 'integer' },
  },
};
const destinationSpec = {
  type: 'object',
  properties: { host: { type: 'string' }, port: { type: 'integer' }, database: { type: 'string' }, username: { type: 'string' }, password: secret, schema: { type: 'string' } },
};
const jobSettings = { ...defaultJobSettings, maxAttempts: 2, backoffBaseMs: 100, backoffMaxMs: 200, timeoutMs: 180_000, checkTimeoutMs: 60_000, heartbeatIntervalMs: 300, heartbeatTimeoutMs: 5_000, pollIntervalMs: 100 };

type Job = { status: string; kind: string; attempts: number; failure_code: string | null; failure_reason: string | null; records_synced: string; records_per_stream: Record<string, number> | null };
type Message = { subject: string; type: string; data: Record<string, unknown> };

describe('job lifecycle: cancel, timeout, retries to the dead letter, records per stream, hostile state, check and discover jobs', { timeout: 120_000 }, () => {
  let tdb: TestDatabase;
  let ns: MessagingNamespace;
  let runtime: ServiceRuntime;
  let runner: SyncRunner;
  let makeRunner: (jobs: typeof jobSettings, workerId: string) => SyncRunner;
  let consumers: { stop(): Promise<void> };
  let server: GrpcServer;
  let sync: PromiseClient<syncV1.SyncServiceClient>;
  let closeClient: (() => void) | undefined;
  let configService: ConfigService;
  let secretsService: SecretsService;
  let closeServicesDb: (() => Promise<void>) | undefined;
  let workDir = '';
  let workspaceId = '';
  const definitions: Record<string, string> = {};
  const logLines: string[] = [];
  const apiKeys: string[] = [];
  const redactor = createRedactor();

  async function query<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: tdb.url });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as T[];
    } finally {
      await client.end();
    }
  }

  async function connection(sourceSettings: Record<string, unknown>, destinationSchema: string): Promise<{ connectionId: string; apiKey: string }> {
    const apiKey = `canary-api-key-${randomUUID()}`;
    apiKeys.push(apiKey);
    const source = await configService.createActor({ workspaceId, definitionId: definitions.source!, name: randomUUID(), configJson: JSON.stringify({ api_key: apiKey, ...sourceSettings }) }, operator);
    const u = new URL(tdb.url);
    const destination = await configService.createActor(
      {
        workspaceId,
        definitionId: definitions.destination!,
        name: randomUUID(),
        configJson: JSON.stringify({ host: u.hostname, port: Number(u.port || 5432), database: tdb.name, username: decodeURIComponent(u.username || 'postgres'), password: u.password ? decodeURIComponent(u.password) : 'unused', schema: destinationSchema }),
      },
      operator,
    );
    const created = await configService.createConnection({ workspaceId, sourceId: source.actorId, destinationId: destination.actorId, name: randomUUID() }, operator);
    return { connectionId: created.connectionId, apiKey };
  }

  /** Publishes config's SyncRequested for a new job, as RequestSync does. */
  async function requestSync(connectionId: string, workspace = workspaceId): Promise<string> {
    const jobId = randomUUID();
    const message = integrationEventMessage(ns, 'SyncRequested', { jobId, connectionId, workspaceId: workspace, occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/config', subject: connectionId, time: new Date() });
    await createJetStreamPublisher(runtime.nc)(message);
    return jobId;
  }

  /** Publishes config's CheckRequested for a new check or discover job, as CheckConfig and DiscoverSchema do. */
  async function requestCheck(kind: 'check' | 'discover', config: Record<string, unknown>): Promise<string> {
    const jobId = randomUUID();
    const body = { jobId, kind, connector: 'airbyte:test-source', partialConfigJson: JSON.stringify(config), workspaceId, occurredAt: new Date().toISOString() };
    await createJetStreamPublisher(runtime.nc)(integrationEventMessage(ns, 'CheckRequested', body, { eventId: randomUUID(), source: 'coffer/config', subject: jobId, time: new Date() }));
    return jobId;
  }

  async function waitForJob(jobId: string, done: (j: Job) => boolean, timeoutMs = 90_000): Promise<Job> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [job] = await query<Job>('select status, kind, attempts, failure_code, failure_reason, records_synced, records_per_stream from sync.sync_jobs where job_id = $1', [jobId]);
      if (job && done(job)) return job;
      if (Date.now() > deadline) throw new Error(`job ${jobId} is ${JSON.stringify(job)}`);
      await sleep(100);
    }
  }
  const ended = (j: Job) => ['succeeded', 'failed', 'cancelled'].includes(j.status);

  /** Every message of the sync stream so far. */
  async function syncMessages(): Promise<Message[]> {
    const jsm = await jetstreamManager(runtime.nc);
    const stream = streamName(ns, 'sync');
    const { state } = await jsm.streams.info(stream);
    const out: Message[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (!m) continue;
      out.push({ subject: m.subject, type: m.header?.get('ce-type') ?? '', data: JSON.parse(m.string()) as Record<string, unknown> });
    }
    return out;
  }

  /** The messages of one job on the sync stream, once `until` holds for them. */
  async function messagesOf(jobId: string, until: (ms: Message[]) => boolean): Promise<Message[]> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const mine = (await syncMessages()).filter((m) => m.data.jobId === jobId);
      if (until(mine)) return mine;
      if (Date.now() > deadline) throw new Error(`messages of ${jobId}: ${JSON.stringify(mine)}`);
      await sleep(200);
    }
  }
  const typeOf = (m: Message) => m.type.split('.').pop();

  const eventTypes = async (jobId: string) =>
    (await query<{ type: string }>('select type from sync.events where stream_id = $1 order by stream_version', [`sync-job-${jobId}`])).map((e) => e.type);

  /** Pids of running test-source `read` processes of this test's work folder. */
  async function sourceChildren(): Promise<number[]> {
    const pids: number[] = [];
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
      const args = cmdline.split('\0');
      if (args.some((a) => a.endsWith('test-source.ts')) && args.includes('read') && cmdline.includes(workDir)) pids.push(Number(entry));
    }
    return pids;
  }
  const runFolders = async () => (await readdir(workDir).catch(() => [] as string[])).filter((n) => n.startsWith('run-'));
  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(100);
    }
  }

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_sync_jobs');
    ns = uniqueNamespace();
    workDir = join(await mkdtemp(join(tmpdir(), 'coffer-jobs-int-')), 'work');
    const logger = createLogger({ service: 'sync-worker', level: 'debug', redactor, destination: { write: (line: string) => void logLines.push(line) } });
    const servicesDb = createDatabase(tdb.url, { max: 4 });
    closeServicesDb = () => servicesDb.destroy();
    await migrateEventStore(servicesDb, 'config');
    await migrateConfigReadModel(servicesDb, 'config');
    secretsService = await startInProcessSecretsService({ db: servicesDb, namespace: ns });
    configService = createConfigService({
      db: servicesDb,
      store: createEventStore(servicesDb, { schema: 'config' }),
      schema: 'config',
      namespace: ns,
      secrets: inProcessSecretsPort(secretsService),
      coordinatePrefix: 'coffer',
      maxConfigBytes: 256 * 1024,
      logger: createLogger({ service: 'config', level: 'silent', redactor: createRedactor() }),
      clock: () => new Date(),
      newId: randomUUID,
    });
    workspaceId = (await configService.createWorkspace({ name: 'jobs' }, operator)).workspaceId;
    const register = async (connector: string, actorType: 'source' | 'destination', spec: unknown) =>
      (await configService.registerDefinition({ name: connector, actorType, connector, specJson: JSON.stringify(spec) }, operator)).definitionId;
    definitions.source = await register('airbyte:test-source', 'source', sourceSpec);
    definitions.destination = await register('airbyte:test-destination', 'destination', destinationSpec);

    runtime = await startRuntime({ service: 'sync', appName: 'coffer-sync-jobs-test', databaseUrl: tdb.url, schema, natsUrl: testNatsUrl(), namespace: ns, logger, redactor, migrations: syncMigrations });
    const airbyte = airbyteConnectors({
      commands: {
        'test-source': [process.execPath, '--import', tsx, join(testing, 'test-source.ts')],
        'test-destination': [process.execPath, '--import', tsx, join(testing, 'test-destination.ts')],
      },
      workDir,
      logger,
      redactor,
      killGraceMs: 1_000,
    });
    const deps = {
      db: runtime.db,
      store: runtime.store,
      schema,
      namespace: ns,
      ports: {
        getSyncPlan: (connectionId: string) => configService.getSyncPlan(connectionId),
        hydrate: (ws: string, partialConfigJson: string, reason: string, ownerId: string) => secretsService.hydrateConfig(ws, partialConfigJson, reason, { subject: 'sync-worker' }, ownerId),
      },
      connectors: { sources: airbyte.sources, destinations: airbyte.destinations },
      redactor,
      logger,
      clock: () => new Date(),
    };
    makeRunner = (jobs, workerId) => createSyncRunner({ ...deps, checks: createCheckRunner(deps), workerId, jobs, endRetryDelaysMs: [50], sweep: () => airbyte.sweep() });
    runner = makeRunner(jobSettings, `test:${process.pid}:jobs`);
    runner.start();
    const queue = await startConsumers(runtime.nc, ns, { sync: runner }, { maxDeliver: 2, retryDelayMs: () => 50, logger });
    consumers = { stop: async () => (await queue.stop(), await runner.stop()) };

    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'test', alg: 'EdDSA', use: 'sig' };
    const sign = () =>
      new SignJWT({ role: 'operator' })
        .setProtectedHeader({ alg: 'EdDSA', kid: 'test', typ: TOKEN_TYPES.service })
        .setIssuer(ISSUER)
        .setAudience('sync-worker')
        .setSubject('operator')
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'sync-worker', fetchJwks: async () => ({ keys: [jwk] }) });
    server = createGrpcServer({ services: [syncGrpcService(runtime.db, schema, runner)], verifier, logger: createLogger({ service: 'sync-worker', level: 'silent' }) });
    const client = createPromiseClient(syncV1.SyncServiceClient, `127.0.0.1:${await server.listen('127.0.0.1:0')}`, { tokenProvider: sign });
    sync = client;
    closeClient = () => client.close();
  }, 120_000);

  afterAll(async () => {
    closeClient?.();
    await server?.shutdown();
    await consumers?.stop();
    await runtime?.close();
    await closeServicesDb?.();
    await deleteStreams(testNatsUrl(), ns);
    await tdb?.drop();
    if (workDir) await rm(dirname(workDir), { recursive: true, force: true });
  }, 60_000);

  /** Runs `fn` while a replica with short attempt timeouts (sync 4 s, check 3 s) is the only one claiming jobs. */
  async function withShortTimeouts(fn: () => Promise<void>): Promise<void> {
    await runner.stop();
    const short = makeRunner({ ...jobSettings, timeoutMs: 4_000, checkTimeoutMs: 3_000 }, `test:${process.pid}:short`);
    short.start();
    try {
      await fn();
    } finally {
      await short.stop();
      runner.start();
    }
  }

  it('a sync that succeeds reports records per stream, and their total, in SyncSucceeded, the read model and GetSyncJob', async () => {
    const { connectionId } = await connection({ streams: ['items', 'orders'], records_per_stream: 7, state_every: 3 }, 'jobs_per_stream');
    const jobId = await requestSync(connectionId);
    const job = await waitForJob(jobId, ended);
    const history = JSON.stringify(await query('select type, data from sync.events where stream_id = $1 order by stream_version', [`sync-job-${jobId}`]));
    expect(job, history).toMatchObject({ status: 'succeeded', kind: 'sync', attempts: 1, records_synced: '14', records_per_stream: { items: 7, orders: 7 } });
    const [succeeded] = (await messagesOf(jobId, (ms) => ms.some((m) => typeOf(m) === 'SyncSucceeded'))).filter((m) => typeOf(m) === 'SyncSucceeded');
    expect(succeeded!.data).toMatchObject({ jobId, connectionId, recordsSynced: 14, recordsPerStream: { items: 7, orders: 7 } });
    expect((await sync.getSyncJob({ jobId })).job).toMatchObject({ jobId, kind: 'sync', workspaceId, status: syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED, recordsSynced: 14, recordsPerStream: { items: 7, orders: 7 } });
  });

  it('CancelSyncJob of a running sync: its connector process is gone and its run folder removed, the job reads cancelled, SyncCancelled is on NATS, no retry follows', async () => {
    const { connectionId } = await connection({ records_per_stream: 10_000, records_per_second: 5, state_every: 1_000 }, 'jobs_cancel');
    const jobId = await requestSync(connectionId);
    await waitForJob(jobId, (j) => j.status === 'running');
    let children: number[] = [];
    await until('the source process', async () => (children = await sourceChildren()).length > 0);
    expect(await runFolders()).not.toEqual([]);

    const answer = await sync.cancelSyncJob({ jobId, workspaceId });
    expect(answer.job).toMatchObject({ jobId, status: syncV1.SyncJobStatus.SYNC_JOB_STATUS_CANCELLED, attempts: 1 });
    await until('the source process to end', async () => children.every((pid) => !readProc(pid)));
    await until('the run folder to be removed', async () => (await runFolders()).length === 0);
    // The attempt has ended (and recorded nothing); only then can a retry be ruled out.
    await until('the attempt to end', async () => logLines.some((l) => l.includes(jobId) && l.includes('its outcome is not recorded')));
    await sleep(5 * jobSettings.pollIntervalMs + jobSettings.backoffMaxMs);
    expect(await eventTypes(jobId)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobCancelled']);
    expect(await waitForJob(jobId, () => true)).toMatchObject({ status: 'cancelled', attempts: 1 });
    const messages = await messagesOf(jobId, (ms) => ms.some((m) => typeOf(m) === 'SyncCancelled'));
    expect(messages.map(typeOf)).toEqual(['SyncStarted', 'SyncCancelled']);
    expect(messages[1]).toMatchObject({ subject: eventSubject(ns, 'SyncCancelled'), data: { jobId, connectionId, cancelledBy: 'operator' } });
  });

  it('CancelSyncJob: an unknown job and another workspace’s job get the same NOT_FOUND; a finished job is FAILED_PRECONDITION', async () => {
    const refusal = (p: Promise<unknown>) =>
      p.then(
        () => Promise.reject(new Error('accepted')),
        (err: { code: string; message: string; details: unknown }) => ({ code: err.code, message: err.message, details: err.details }),
      );
    const { connectionId } = await connection({ records_per_stream: 2 }, 'jobs_cancel_refused');
    const jobId = await requestSync(connectionId);
    await waitForJob(jobId, ended);
    const unknown = await refusal(sync.cancelSyncJob({ jobId: randomUUID(), workspaceId: '' }));
    const unknownInWorkspace = await refusal(sync.cancelSyncJob({ jobId: randomUUID(), workspaceId }));
    const otherWorkspace = await refusal(sync.cancelSyncJob({ jobId, workspaceId: randomUUID() }));
    expect(unknown).toEqual({ code: 'not_found', message: 'no such sync job', details: [{ field: 'job_id', reason: 'not found' }] });
    expect(unknownInWorkspace).toEqual(unknown);
    expect(otherWorkspace).toEqual(unknown);
    const finished = await refusal(sync.cancelSyncJob({ jobId, workspaceId }));
    expect(finished).toMatchObject({ code: 'failed_precondition', message: 'job is succeeded: only a queued or running job can be cancelled' });
    expect(await eventTypes(jobId)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobSucceeded']);
    const badId = await refusal(sync.cancelSyncJob({ jobId, workspaceId: 'nope' }));
    expect(badId).toEqual({ code: 'invalid_argument', message: 'workspace_id must be a UUID', details: [{ field: 'workspace_id', reason: 'not a UUID' }] });
  });

  it('a connector error is retried until the maximum attempts, then the job fails and SyncJobDeadLettered is on the dead-letter subject', async () => {
    const { connectionId } = await connection({ records_per_stream: 50, fail_after: 3 }, 'jobs_dead_letter');
    const jobId = await requestSync(connectionId);
    const job = await waitForJob(jobId, ended);
    expect(job).toMatchObject({ status: 'failed', attempts: 2, failure_code: 'connector_error', failure_reason: 'airbyte:test-source read failed: failing after 3 records as configured' });
    expect(await eventTypes(jobId)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobAttemptFailed', 'SyncJobStarted', 'SyncJobFailed']);
    const messages = await messagesOf(jobId, (ms) => ms.some((m) => typeOf(m) === 'SyncJobDeadLettered'));
    const failed = messages.filter((m) => typeOf(m) === 'SyncFailed').map((m) => m.data);
    // Proto JSON leaves out a false will_retry.
    expect(failed.map((d) => [d.attempt, d.willRetry ?? false, d.reasonCode])).toEqual([
      [1, true, 'connector_error'],
      [2, false, 'connector_error'],
    ]);
    const dead = messages.filter((m) => typeOf(m) === 'SyncJobDeadLettered');
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ subject: `${ns.subjectRoot}.sync.dead_letter.sync_job`, data: { jobId, connectionId, attempts: 2, reasonCode: 'connector_error' } });
  });

  it('an attempt that outlives the timeout is stopped and fails with reason code timeout, is retried, and the last one ends the job dead-lettered', async () => {
    const { connectionId } = await connection({ records_per_stream: 10_000, records_per_second: 5, state_every: 10_000 }, 'jobs_timeout');
    let job: Job | undefined;
    let jobId = '';
    await withShortTimeouts(async () => {
      jobId = await requestSync(connectionId);
      job = await waitForJob(jobId, ended, 120_000);
    });
    expect(job).toMatchObject({ status: 'failed', attempts: 2, failure_code: 'timeout', failure_reason: 'the attempt ran out of time' });
    const messages = await messagesOf(jobId, (ms) => ms.some((m) => typeOf(m) === 'SyncJobDeadLettered'));
    expect(messages.filter((m) => typeOf(m) === 'SyncFailed').map((m) => [m.data.attempt, m.data.willRetry ?? false, m.data.reasonCode])).toEqual([
      [1, true, 'timeout'],
      [2, false, 'timeout'],
    ]);
    expect(messages.find((m) => typeOf(m) === 'SyncJobDeadLettered')!.data).toMatchObject({ attempts: 2, reasonCode: 'timeout' });
    await until('the source processes to end', async () => (await sourceChildren()).length === 0);
    await until('the run folders to be removed', async () => (await runFolders()).length === 0);
  }, 150_000);

  it('a hostile connector that puts the hydrated api key into a STATE message: the state is refused, and the key is in no table, event or log line', { timeout: 150_000 }, async () => {
    const { connectionId, apiKey } = await connection({ records_per_stream: 5, state_every: 1_000, hostile_state: true }, 'jobs_hostile_state');
    const jobId = await requestSync(connectionId);
    const job = await waitForJob(jobId, ended);
    expect(job).toMatchObject({ status: 'failed', failure_code: 'connector_error' });
    expect(job.failure_reason).toContain('a STATE message holds a secret value of the config; it is not kept');
    expect(await query('select 1 from sync.stream_states where connection_id = $1', [connectionId])).toEqual([]);
    await messagesOf(jobId, (ms) => ms.some((m) => typeOf(m) === 'SyncJobDeadLettered'));
    // Every row of every table but the secrets service's own (which keeps the key encrypted).
    const tables = await query<{ table_schema: string; table_name: string }>(
      "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema', 'secrets')",
    );
    expect(tables.map((t) => `${t.table_schema}.${t.table_name}`)).toEqual(expect.arrayContaining(['sync.events', 'sync.sync_jobs', 'sync.stream_states', 'jobs_hostile_state.items']));
    for (const t of tables) {
      const rows = await query(`select * from "${t.table_schema}"."${t.table_name}"`);
      expect(JSON.stringify(rows), `${t.table_schema}.${t.table_name}`).not.toContain(apiKey);
    }
    expect(JSON.stringify(await syncMessages())).not.toContain(apiKey);
    expect(logLines.join('\n')).not.toContain(apiKey);
    // The worker did see the state: it refused it, and says so (redacted) in its log.
    expect(logLines.some((l) => l.includes(jobId) && l.includes('a STATE message holds a secret value'))).toBe(true);
  });

  it('check and discover jobs run the same lifecycle: requested, started, succeeded with CheckCompleted; shown by GetSyncJob and ListSyncJobs', async () => {
    const checkId = await requestCheck('check', { api_key: 'not-a-secret-here' });
    const discoverId = await requestCheck('discover', { api_key: 'not-a-secret-here', streams: ['a', 'b'] });
    for (const [jobId, kind] of [[checkId, 'check'], [discoverId, 'discover']] as const) {
      expect(await waitForJob(jobId, ended)).toMatchObject({ status: 'succeeded', kind, attempts: 1 });
      expect(await eventTypes(jobId)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobSucceeded']);
    }
    const [checked] = await messagesOf(checkId, (ms) => ms.some((m) => typeOf(m) === 'CheckCompleted'));
    expect(checked).toMatchObject({ subject: eventSubject(ns, 'CheckCompleted'), data: { jobId: checkId, kind: 'check', succeeded: true } });
    const [discovered] = await messagesOf(discoverId, (ms) => ms.some((m) => typeOf(m) === 'CheckCompleted'));
    expect(discovered!.data).toMatchObject({ kind: 'discover', succeeded: true });
    expect((JSON.parse(discovered!.data.catalogJson as string) as { streams: { name: string }[] }).streams.map((s) => s.name)).toEqual(['a', 'b']);
    // No sync events for a check: its only message is CheckCompleted.
    expect((await messagesOf(checkId, () => true)).map(typeOf)).toEqual(['CheckCompleted']);

    expect((await sync.getSyncJob({ jobId: checkId })).job).toMatchObject({ jobId: checkId, kind: 'check', workspaceId, connectionId: '', status: syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED, attempts: 1 });
    const listed = (await sync.listSyncJobs({ workspaceId, connectionId: '', pageSize: 500, pageToken: '' })).jobs;
    expect(listed.filter((j) => j.jobId === checkId || j.jobId === discoverId).map((j) => j.kind).sort()).toEqual(['check', 'discover']);
  });

  it('a check that outlives the check timeout is retried, then fails for good: CheckCompleted says so, SyncJobDeadLettered is published', { timeout: 90_000 }, async () => {
    let job: Job | undefined;
    let jobId = '';
    await withShortTimeouts(async () => {
      jobId = await requestCheck('check', { api_key: 'not-a-secret-here', check_delay_ms: 120_000 });
      job = await waitForJob(jobId, ended);
    });
    expect(job).toMatchObject({ status: 'failed', kind: 'check', attempts: 2, failure_code: 'timeout', failure_reason: 'the check ran out of time' });
    expect(await eventTypes(jobId)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobAttemptFailed', 'SyncJobStarted', 'SyncJobFailed']);
    const messages = await messagesOf(jobId, (ms) => ms.some((m) => typeOf(m) === 'SyncJobDeadLettered'));
    expect(messages.map(typeOf)).toEqual(['CheckCompleted', 'SyncJobDeadLettered']);
    expect(messages[0]!.data).toMatchObject({ kind: 'check', message: 'the check job failed (timeout): the check ran out of time' });
    expect(messages[0]!.data.succeeded ?? false).toBe(false);
    expect(messages[1]).toMatchObject({ subject: `${ns.subjectRoot}.sync.dead_letter.sync_job`, data: { jobId, attempts: 2, reasonCode: 'timeout' } });
    expect(messages[1]!.data.connectionId ?? '').toBe('');
    // A cancel after the end is refused, as for a sync.
    await expect(sync.cancelSyncJob({ jobId, workspaceId })).rejects.toMatchObject({ code: 'failed_precondition' });
  });

  it('no api key of any test source in any log line or sync stream message', async () => {
    const logs = logLines.join('\n');
    const messages = JSON.stringify(await syncMessages());
    expect(apiKeys.length).toBeGreaterThan(5);
    for (const key of apiKeys) {
      expect(logs).not.toContain(key);
      expect(messages).not.toContain(key);
    }
  });
});

/** Whether a process is still alive (and not a zombie). */
function readProc(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return true;
}
