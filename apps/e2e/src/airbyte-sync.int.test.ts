import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type RunningService, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';

// The Airbyte-protocol test source and destination (TypeScript, run by the sync worker as child
// processes through registered commands) against four Coffer processes plus a second sync-worker
// replica, real Postgres and NATS.

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const testing = join(root, 'apps/sync-worker/src/connectors/testing');
const tsx = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href;
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
    primary_key: { type: 'boolean' },
    fail_after: { type: 'integer' },
    hostile: { type: 'boolean' },
  },
};
const destinationSpec = {
  type: 'object',
  properties: { host: { type: 'string' }, port: { type: 'integer' }, database: { type: 'string' }, username: { type: 'string' }, password: secret, schema: { type: 'string' }, table: { type: 'string' } },
};

describe('Airbyte-protocol connectors, incremental state and fail-over across two sync-worker replicas', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let replica: RunningService;
  let config: PromiseClient<configV1.ConfigServiceClient>;
  let workDir = '';
  let workspaceId = '';
  const definitions: Record<string, string> = {};
  const apiKeys: string[] = [];

  async function query<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as T[];
    } finally {
      await client.end();
    }
  }

  async function source(settings: Record<string, unknown>): Promise<{ actorId: string; apiKey: string }> {
    const apiKey = `canary-api-key-${randomUUID()}`;
    apiKeys.push(apiKey);
    const actor = await config.createActor({ workspaceId, definitionId: definitions.source!, name: randomUUID(), configJson: JSON.stringify({ api_key: apiKey, ...settings }) });
    return { actorId: actor.actor!.actorId, apiKey };
  }

  async function destination(kind: 'airbyte' | 'builtin', schemaName: string, table = 'rows'): Promise<string> {
    const u = new URL(db.url);
    const configJson = JSON.stringify({
      host: u.hostname,
      port: Number(u.port || 5432),
      database: db.name,
      username: decodeURIComponent(u.username || 'postgres'),
      password: u.password ? decodeURIComponent(u.password) : 'unused',
      schema: schemaName,
      table,
    });
    return (await config.createActor({ workspaceId, definitionId: definitions[kind]!, name: randomUUID(), configJson })).actor!.actorId;
  }

  async function connect(sourceId: string, destinationId: string): Promise<string> {
    return (await config.createConnection({ workspaceId, sourceId, destinationId, name: randomUUID() })).connection!.connectionId;
  }

  type Job = { status: string; attempts: number; failure_code: string | null; failure_reason: string | null; worker_id: string | null; records_synced: string };
  async function waitForJob(jobId: string, done: (j: Job) => boolean, timeoutMs = 90_000): Promise<Job> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [job] = await query<Job>('select status, attempts, failure_code, failure_reason, worker_id, records_synced from sync.sync_jobs where job_id = $1', [jobId]);
      if (job && done(job)) return job;
      if (Date.now() > deadline) throw new Error(`job ${jobId} is ${JSON.stringify(job)}`);
      await sleep(200);
    }
  }
  const ended = (j: Job) => ['succeeded', 'failed', 'cancelled'].includes(j.status);
  const sync = async (connectionId: string) => (await config.requestSync({ connectionId })).jobId;

  /** The run folders (each holding a config file while a connector runs) under the workers' work folder. */
  const runFolders = async () => (await readdir(workDir).catch(() => [] as string[])).filter((n) => n.startsWith('run-'));

  /** Pids of the running test-source processes (children of a worker), from /proc. */
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

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e_airbyte');
    ns = uniqueNamespace();
    workDir = await mkdtemp(join(tmpdir(), 'coffer-airbyte-e2e-'));
    const dbUrl = new URL(db.url);
    const commands = {
      'test-source': [process.execPath, '--import', tsx, join(testing, 'test-source.ts')],
      'test-destination': [process.execPath, '--import', tsx, join(testing, 'test-destination.ts')],
    };
    stack = await startStack({
      databaseUrl: db.url,
      natsUrl: testNatsUrl(),
      namespace: ns,
      egressAllow: [`${dbUrl.hostname}:${dbUrl.port || 5432}`],
      serviceEnv: {
        'sync-worker': {
          SYNC_WORKER_AIRBYTE_COMMANDS: JSON.stringify(commands),
          SYNC_WORKER_CONNECTOR_WORK_DIR: workDir,
          SYNC_WORKER_HEARTBEAT_INTERVAL_MS: '300',
          SYNC_WORKER_HEARTBEAT_TIMEOUT_MS: '3000',
          SYNC_WORKER_POLL_INTERVAL_MS: '200',
          SYNC_WORKER_JOB_BACKOFF_MS: '200',
          SYNC_WORKER_JOB_MAX_ATTEMPTS: '2',
        },
      },
    });
    replica = await stack.addSyncWorker();
    const operator = stack.credentials.clients.operator;
    config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, {
      tokenProvider: createServiceTokenProvider({ authAddress: stack.services.auth.address, ...operator, audience: 'config' }),
    });
    workspaceId = (await config.createWorkspace({ name: 'airbyte', organizationId: '' })).workspace!.workspaceId;
    const register = async (name: string, actorType: configV1.ActorType, connector: string, spec: unknown) =>
      (await config.registerConnectorDefinition({ name, actorType, connector, specJson: JSON.stringify(spec) })).definition!.definitionId;
    definitions.source = await register('Test source', configV1.ActorType.ACTOR_TYPE_SOURCE, 'airbyte:test-source', sourceSpec);
    definitions.airbyte = await register('Test destination', configV1.ActorType.ACTOR_TYPE_DESTINATION, 'airbyte:test-destination', destinationSpec);
    definitions.builtin = await register('Postgres', configV1.ActorType.ACTOR_TYPE_DESTINATION, 'builtin:postgres', destinationSpec);
  }, 240_000);

  afterAll(async () => {
    await stack?.stop();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  }, 60_000);

  it('runs the test source into the test destination: the rows land, the config file was 0600 in a 0700 folder, and no run folder is left', async () => {
    const { actorId } = await source({ streams: ['items', 'orders'], records_per_stream: 25 });
    const jobId = await sync(await connect(actorId, await destination('airbyte', 'e2e_basic')));
    const job = await waitForJob(jobId, ended);
    expect(job, JSON.stringify(job)).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(Number(job.records_synced)).toBe(50);
    for (const table of ['items', 'orders']) {
      const rows = await query<{ n: number; keys: number }>(`select count(*)::int as n, count(distinct record_key)::int as keys from e2e_basic.${table}`);
      expect(rows[0]).toEqual({ n: 25, keys: 25 });
    }
    expect(stack.output()).toContain('config file mode 600, folder mode 700');
    expect(await runFolders()).toEqual([]);
  });

  it('an incremental sync run twice reads only the new records the second time (the built-in Postgres destination appends)', async () => {
    const { actorId, apiKey } = await source({ records_per_stream: 10, primary_key: false, state_every: 3 });
    const connectionId = await connect(actorId, await destination('builtin', 'e2e_incremental', 'appended'));
    const first = await waitForJob(await sync(connectionId), ended);
    expect(first).toMatchObject({ status: 'succeeded' });
    expect(Number(first.records_synced)).toBe(10);
    const [state] = await query<{ state: { stream: { stream_state: { cursor: number } } } }>('select state from sync.stream_states where connection_id = $1', [connectionId]);
    expect(state!.state.stream.stream_state.cursor).toBe(10);

    const second = await waitForJob(await sync(connectionId), ended);
    expect(second).toMatchObject({ status: 'succeeded' });
    expect(Number(second.records_synced)).toBe(0);
    expect(stack.output()).toContain('stream items: reading after cursor 10, 0 records');

    // Five new records at the source: the next sync reads those five only.
    const actor = await config.getActor({ actorId });
    const masked = JSON.parse(actor.actor!.configJson) as Record<string, unknown>;
    expect(JSON.stringify(masked)).not.toContain(apiKey);
    await config.updateActor({ actorId, expectedVersion: actor.actor!.version, name: actor.actor!.name, configJson: JSON.stringify({ ...masked, records_per_stream: 15 }) });
    const third = await waitForJob(await sync(connectionId), ended);
    expect(third).toMatchObject({ status: 'succeeded' });
    expect(Number(third.records_synced)).toBe(5);
    const rows = await query<{ id: number }>("select (data->>'id')::int as id from e2e_incremental.appended order by id");
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    const events = await query<{ type: string }>('select type from sync.events where stream_id = $1', [`connection-state-${connectionId}`]);
    expect(events.length).toBeGreaterThan(0);
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(['StreamStateCommitted']));
  });

  it('a failing connector fails the job with its TRACE message, and leaves no run folder', async () => {
    const { actorId } = await source({ records_per_stream: 50, fail_after: 5 });
    const job = await waitForJob(await sync(await connect(actorId, await destination('airbyte', 'e2e_failing'))), ended);
    expect(job).toMatchObject({ status: 'failed', attempts: 2, failure_code: 'connector_error' });
    expect(job.failure_reason).toBe('airbyte:test-source read failed: failing after 5 records as configured');
    expect(await runFolders()).toEqual([]);
  });

  it('a connector killed mid-read fails the attempt, and its run folder is removed', async () => {
    const { actorId } = await source({ records_per_stream: 10_000, records_per_second: 5 });
    const jobId = await sync(await connect(actorId, await destination('airbyte', 'e2e_killed_child')));
    let kills = 0;
    const deadline = Date.now() + 90_000;
    let job: Job;
    // Each attempt's source is killed once it runs; two attempts, then the job fails for good.
    while (!ended((job = await waitForJob(jobId, () => true))) && Date.now() < deadline) {
      const pids = await sourceChildren();
      for (const pid of pids) {
        process.kill(pid, 'SIGKILL');
        kills++;
      }
      await sleep(300);
    }
    expect(kills).toBeGreaterThanOrEqual(2);
    expect(job!).toMatchObject({ status: 'failed', attempts: 2, failure_code: 'connector_error' });
    expect(job!.failure_reason).toMatch(/^airbyte:test-source read failed: killed by SIGKILL/);
    expect(await runFolders()).toEqual([]);
  });

  it("a hostile connector's credential appears in no log line, event or failure reason", async () => {
    const { actorId, apiKey } = await source({ hostile: true });
    const job = await waitForJob(await sync(await connect(actorId, await destination('airbyte', 'e2e_hostile'))), ended);
    expect(job).toMatchObject({ status: 'failed', failure_code: 'connector_error' });
    expect(job.failure_reason).toBe('airbyte:test-source discover failed: the API refused [REDACTED]');
    const output = stack.output();
    // The connector did print it: on stdout, on stderr, in a LOG message and in its TRACE.
    expect(output).toContain('my config is');
    expect(output).toContain('debug: api_key=[REDACTED]');
    expect(output).toContain('connecting with [REDACTED]');
    const events = JSON.stringify(await query('select data, metadata from sync.events'));
    const outbox = JSON.stringify(await query('select * from sync.outbox').catch(() => []));
    const jobs = JSON.stringify(await query('select * from sync.sync_jobs'));
    for (const text of [output, events, outbox, jobs]) expect(text).not.toContain(apiKey);
    expect(await runFolders()).toEqual([]);
  });

  it('SIGKILL of the replica running a sync: the other takes over from the committed state and the destination holds every record once', async () => {
    const total = 60;
    const { actorId } = await source({ records_per_stream: total, records_per_second: 10, state_every: 5 });
    const connectionId = await connect(actorId, await destination('airbyte', 'e2e_failover'));
    const jobId = await sync(connectionId);
    // Killed once a state has been committed, i.e. once the destination holds records the state covers.
    const running = await waitForJob(jobId, (j) => j.status === 'running');
    const deadline = Date.now() + 60_000;
    while ((await query('select 1 from sync.stream_states where connection_id = $1', [connectionId])).length === 0) {
      if (Date.now() > deadline) throw new Error('no state was committed');
      await sleep(100);
    }
    const pid = Number(running.worker_id!.split(':')[1]);
    const victim = [stack.services['sync-worker'], replica].find((s) => s.process.pid === pid)!;
    expect(victim).toBeDefined();
    await new Promise<void>((resolve) => {
      victim.process.once('exit', () => resolve());
      victim.process.kill('SIGKILL');
    });
    const [committed] = await query<{ state: { stream: { stream_state: { cursor: number } } } }>('select state from sync.stream_states where connection_id = $1', [connectionId]);
    const job = await waitForJob(jobId, ended, 120_000);
    expect(job).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(Number(job.worker_id!.split(':')[1])).not.toBe(pid);
    // The second attempt read only what came after the state committed by the first.
    expect(Number(job.records_synced)).toBeLessThanOrEqual(total - committed!.state.stream.stream_state.cursor);
    expect(Number(job.records_synced)).toBeGreaterThan(0);
    const events = await query<{ type: string; data: { code?: string } }>('select type, data from sync.events where stream_id = $1 order by stream_version', [`sync-job-${jobId}`]);
    expect(events.map((e) => e.type)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobAttemptFailed', 'SyncJobStarted', 'SyncJobSucceeded']);
    expect(events[2]!.data.code).toBe('worker_lost');
    const rows = await query<{ n: number; keys: number; ids: number }>("select count(*)::int as n, count(distinct record_key)::int as keys, count(distinct data->>'id')::int as ids from e2e_failover.items");
    expect(rows[0]).toEqual({ n: total, keys: total, ids: total });
    // The killed worker's run folder was swept by the survivor.
    const deadlineSweep = Date.now() + 10_000;
    while ((await runFolders()).some((n) => n.startsWith(`run-${pid}-`)) && Date.now() < deadlineSweep) await sleep(200);
    expect((await runFolders()).filter((n) => n.startsWith(`run-${pid}-`))).toEqual([]);
  }, 180_000);

  it('no api key of any test source in any log line or sync event', async () => {
    const output = stack.output();
    const events = JSON.stringify(await query('select data, metadata from sync.events'));
    expect(apiKeys.length).toBeGreaterThan(5);
    for (const key of apiKeys) {
      expect(output).not.toContain(key);
      expect(events).not.toContain(key);
    }
  });
});
