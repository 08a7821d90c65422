import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamName, type MessagingNamespace } from '@coffer/contracts';
import { createJetStreamPublisher, deadLetterHeaders, integrationEventMessage, type CloudEvent } from '@coffer/messaging';
import { startRuntime, type ServiceRuntime } from '@coffer/runtime';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createLogger, createRedactor, REDACTED, type Logger } from '@coffer/telemetry';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createCheckRunner } from './check-runner';
import { ConnectorError, stringField, type SourceConnector } from './connectors/connector';
import { createEgressPolicy } from './connectors/egress-policy';
import { builtinConnectors } from './connectors/registry';
import { deadLetterSubject, startConsumers } from './consumers';
import { createSyncRunner, defaultJobSettings, type SyncPlan, type SyncRunner } from './sync-runner';
import { findJob } from './sync.postgres';
import { syncMigrations } from './sync.migrations';
import { createConfigService, type ConfigService } from '../../config/src/config.service';
import { migrateConfigReadModel } from '../../config/src/config.postgres';
import { inProcessSecretsPort, startInProcessSecretsService } from '../../secrets/src/in-process';
import type { SecretsService } from '../../secrets/src/secrets.service';

// The runner's ports are served by the real config and secrets services, composed in-process on the
// same Postgres (their own schemas, event logs and local KMS); Postgres, NATS, the HTTP source and the
// Postgres destination are real too. Only the gRPC hop is skipped here: the e2e walking skeleton
// covers the gRPC adapters of the ports against the four processes.

const schema = 'sync';
const canaries = {
  apiToken: `canary-api-${randomUUID()}`,
  tunnelKey: `canary-tunnel-${randomUUID()}`,
};
const marker = `record-marker-${randomUUID()}`;
const records = Array.from({ length: 25 }, (_, i) => ({ id: i + 1, name: `${marker}-${i + 1}`, nested: { ok: i % 2 === 0 } }));
let workspaceId = '';
const operator = { subject: 'operator' };
const sourceSpec = {
  type: 'object',
  required: ['url', 'api_token'],
  properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } },
};
const destinationSpec = {
  type: 'object',
  required: ['host', 'port', 'database', 'username', 'schema', 'table'],
  properties: {
    host: { type: 'string' },
    port: { type: 'integer' },
    database: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string', airbyte_secret: true },
    schema: { type: 'string' },
    table: { type: 'string' },
    tunnel_key: { type: 'string', airbyte_secret: true },
  },
};

describe('sync worker: SyncRequested through NATS, Postgres and the built-in connectors', () => {
  let tdb: TestDatabase;
  let ns: MessagingNamespace;
  let runtime: ServiceRuntime;
  let consumers: { stop(): Promise<void> };
  let runner: SyncRunner;
  let http: Server;
  let denied: Server;
  let sourceUrl: string;
  let destination: Record<string, unknown>;
  const logLines: string[] = [];
  const redactor = createRedactor();
  let configService: ConfigService;
  let secretsService: SecretsService;
  const definitions = new Map<string, string>();
  const hydrations: string[] = [];
  let sourceRequests = 0;
  let deniedRequests = 0;
  let deniedUrl = '';
  const observed: { tokenRedactedDuringRun?: string; registeredDuringRun?: number } = {};
  let closeServicesDb: (() => Promise<void>) | undefined;

  // Sees what the runner set up before a connector runs, then reads like the built-in source.
  // The test servers are on loopback: the built-in connectors reach them through the operator allow-list.
  const allowLocal = () => builtinConnectors({ egress: createEgressPolicy({ allow: ['127.0.0.0/8', '::1'] }) });
  const observingSource: SourceConnector = {
    ...allowLocal().sources['builtin:http-json']!,
    read(config, signal) {
      observed.tokenRedactedDuringRun = redactor.redact(`token=${stringField(config, 'api_token', 'test:observing')}`);
      observed.registeredDuringRun = redactor.size();
      return allowLocal().sources['builtin:http-json']!.read(config, signal);
    },
  };
  const leakySource = (kind: 'connector' | 'crash'): SourceConnector => ({
    ...observingSource,
    read(config) {
      const token = stringField(config, 'api_token', 'test:leaky');
      const err = kind === 'connector' ? new ConnectorError(`upstream refused the token ${token}`) : new TypeError(`crashed while holding ${token}`);
      return { [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(err) }) };
    },
  });

  let connectorLogger: Logger | undefined;
  // Throws and logs the token only in encoded forms: base64, URL-encoded, and inside a Basic header.
  const encodingSource = (kind: 'connector' | 'crash'): SourceConnector => ({
    ...observingSource,
    read(config) {
      const token = stringField(config, 'api_token', 'test:encoding');
      const forms = `b64=${Buffer.from(token).toString('base64')} url=${encodeURIComponent(`${token}/&`)} auth=Basic ${Buffer.from(`user:${token}`).toString('base64')}`;
      connectorLogger?.warn({ forms }, 'test connector about to fail');
      const err = kind === 'connector' ? new ConnectorError(`upstream refused ${forms}`) : new TypeError(`crashed with ${forms}`);
      return { [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(err) }) };
    },
  });

  async function definitionFor(connector: string, actorType: 'source' | 'destination'): Promise<string> {
    if (!definitions.has(connector)) {
      const spec = actorType === 'source' ? sourceSpec : destinationSpec;
      const def = await configService.registerDefinition({ name: connector, actorType, connector, specJson: JSON.stringify(spec) }, operator);
      definitions.set(connector, def.definitionId);
    }
    return definitions.get(connector)!;
  }

  /** A source and destination created at the real config service, their secrets at the real secrets service. */
  async function planFor(
    sourceConnector: string,
    sourceConfig: Record<string, unknown> = {},
    apiToken = canaries.apiToken,
    destinationConnector = 'builtin:postgres',
  ): Promise<SyncPlan> {
    const source = await configService.createActor(
      { workspaceId, definitionId: await definitionFor(sourceConnector, 'source'), name: 'source', configJson: JSON.stringify({ url: sourceUrl, api_token: apiToken, ...sourceConfig }) },
      operator,
    );
    const dest = await configService.createActor(
      {
        workspaceId,
        definitionId: await definitionFor(destinationConnector, 'destination'),
        name: 'warehouse',
        configJson: JSON.stringify({ ...destination, tunnel_key: canaries.tunnelKey }),
      },
      operator,
    );
    const connection = await configService.createConnection({ workspaceId, sourceId: source.actorId, destinationId: dest.actorId, name: 'c' }, operator);
    return configService.getSyncPlan(connection.connectionId);
  }

  async function publishSyncRequested(jobId: string, connectionId: string, eventId = randomUUID()): Promise<void> {
    const message = integrationEventMessage(ns, 'SyncRequested', { jobId, connectionId, workspaceId, occurredAt: new Date().toISOString() }, {
      eventId,
      source: 'coffer/config',
      subject: connectionId,
      time: new Date(),
    });
    await createJetStreamPublisher(runtime.nc)(message);
  }

  /** Every message of a stream so far, from the first. */
  async function streamMessages(stream: string): Promise<{ subject: string; headers: Record<string, string>; data: string }[]> {
    const jsm = await jetstreamManager(runtime.nc);
    const { state } = await jsm.streams.info(stream);
    const out: { subject: string; headers: Record<string, string>; data: string }[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (!m) continue;
      const headers: Record<string, string> = {};
      for (const [k, v] of m.header ?? []) headers[k] = v.join(',');
      out.push({ subject: m.subject, headers, data: m.string() });
    }
    return out;
  }

  async function waitForOutcome(jobId: string): Promise<{ type: string; data: Record<string, unknown> }> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      for (const m of await streamMessages(streamName(ns, 'sync'))) {
        const type = m.headers['ce-type'] ?? '';
        if (!/SyncSucceeded|SyncFailed/.test(type)) continue;
        const data = JSON.parse(m.data) as Record<string, unknown>;
        if (data.jobId === jobId) return { type, data };
      }
      await sleep(200);
    }
    throw new Error(`no SyncSucceeded or SyncFailed for ${jobId}`);
  }

  async function query<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: tdb.url });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as T[];
    } finally {
      await client.end();
    }
  }

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_sync_worker');
    ns = uniqueNamespace();
    http = createServer((req, res) => {
      sourceRequests++;
      if (req.headers.authorization !== `Bearer ${canaries.apiToken}`) return void res.writeHead(401).end(`bad token ${req.headers.authorization}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(req.url === '/wrapped' ? { data: records } : records));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    sourceUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/records`;
    denied = createServer((_req, res) => {
      deniedRequests++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ leaked: marker }]));
    });
    await new Promise<void>((r) => denied.listen(0, '127.0.0.1', r));
    deniedUrl = `http://127.0.0.1:${(denied.address() as AddressInfo).port}/latest/meta-data/`;
    const u = new URL(tdb.url);
    destination = {
      host: u.hostname,
      port: Number(u.port || 5432),
      database: tdb.name,
      username: decodeURIComponent(u.username || 'postgres'),
      password: decodeURIComponent(u.password),
      schema: 'warehouse',
      table: 'api_records',
    };
    const logger = createLogger({ service: 'sync-worker', level: 'debug', redactor, destination: { write: (line: string) => void logLines.push(line) } });
    connectorLogger = logger;
    const quiet = createLogger({ service: 'config', level: 'silent', redactor: createRedactor() });
    const { createDatabase } = await import('@coffer/runtime');
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
      logger: quiet,
      clock: () => new Date(),
      newId: randomUUID,
    });
    workspaceId = (await configService.createWorkspace({ name: 'sync tests' }, operator)).workspaceId;
    runtime = await startRuntime({
      service: 'sync',
      appName: 'coffer-sync-worker-test',
      databaseUrl: tdb.url,
      schema,
      natsUrl: testNatsUrl(),
      namespace: ns,
      logger,
      redactor,
      migrations: syncMigrations,
    });
    const builtin = allowLocal();
    // What a production worker runs: the default policy, with no allow-list.
    const production = builtinConnectors();
    const deps = {
      db: runtime.db,
      store: runtime.store,
      schema,
      namespace: ns,
      ports: {
        getSyncPlan: (connectionId: string) => configService.getSyncPlan(connectionId),
        hydrate: async (ws: string, partialConfigJson: string, reason: string, ownerId: string) => {
          hydrations.push(reason);
          return secretsService.hydrateConfig(ws, partialConfigJson, reason, { subject: 'sync-worker' }, ownerId);
        },
      },
      connectors: {
        sources: {
          ...builtin.sources,
          'test:observing': observingSource,
          'test:leaky': leakySource('connector'),
          'test:crash': leakySource('crash'),
          'test:encoding': encodingSource('connector'),
          'test:encoding-crash': encodingSource('crash'),
          'production:http-json': production.sources['builtin:http-json']!,
        },
        destinations: { ...builtin.destinations, 'production:postgres': production.destinations['builtin:postgres']! },
      },
      redactor,
      logger,
      clock: () => new Date(),
      endRetryDelaysMs: [50],
      workerId: 'test-worker',
      jobs: { ...defaultJobSettings, maxAttempts: 1, pollIntervalMs: 100 },
    };
    runner = createSyncRunner({ ...deps, checks: createCheckRunner(deps) });
    runner.start();
    const queue = await startConsumers(runtime.nc, ns, { sync: runner }, { maxDeliver: 2, retryDelayMs: () => 50, logger });
    consumers = { stop: async () => (await queue.stop(), await runner.stop()) };
  }, 60_000);

  afterAll(async () => {
    await consumers?.stop();
    await runtime?.close();
    await closeServicesDb?.();
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
    await new Promise<void>((r) => (denied ? denied.close(() => r()) : r()));
    await deleteStreams(testNatsUrl(), ns);
    await tdb?.drop();
  }, 60_000);

  it('runs a requested sync: SyncStarted then SyncSucceeded with the count, the rows land in order, the job reads succeeded', async () => {
    const plan = await planFor('test:observing');
    const jobId = randomUUID();
    await publishSyncRequested(jobId, plan.connectionId);
    const outcome = await waitForOutcome(jobId);
    expect(outcome.type, JSON.stringify(outcome.data)).toBe('coffer.sync.v1.SyncSucceeded');
    expect(Number(outcome.data.recordsSynced)).toBe(records.length);
    expect(outcome.data.connectionId).toBe(plan.connectionId);

    const rows = await query<{ data: unknown }>('select data from warehouse.api_records order by id');
    expect(rows.map((r) => r.data)).toEqual(records);

    const job = await findJob(runtime.db, schema, jobId);
    expect(job).toMatchObject({ job_id: jobId, connection_id: plan.connectionId, status: 'succeeded', failure_reason: null });
    expect(Number(job!.records_synced)).toBe(records.length);
    expect(job!.ended_at).toBeInstanceOf(Date);

    const types = (await streamMessages(streamName(ns, 'sync'))).filter((m) => m.data.includes(jobId)).map((m) => m.headers['ce-type']);
    expect(types).toEqual(['coffer.sync.v1.SyncStarted', 'coffer.sync.v1.SyncSucceeded']);
    const events = await query<{ type: string; metadata: Record<string, unknown> }>('select type, metadata from sync.events where stream_id = $1 order by stream_version', [`sync-job-${jobId}`]);
    expect(events.map((e) => e.type)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobSucceeded']);
    expect(events[0]!.metadata).toMatchObject({ actor: 'sync-worker', correlationId: jobId });
  });

  it('registers every hydrated secret of both sides before a connector runs, and forgets them when the sync ends', () => {
    expect(observed.tokenRedactedDuringRun).toBe(`token=${REDACTED}`);
    // The api token, the destination password (when the test server has one) and the tunnel key.
    expect(observed.registeredDuringRun).toBeGreaterThanOrEqual(2);
    expect(redactor.size()).toBe(0);
    expect(hydrations.every((r) => /^sync [0-9a-f-]{36}$/.test(r))).toBe(true);
  });

  it('does nothing for a redelivered SyncRequested (inbox) nor for the same job under another event id', async () => {
    const plan = await planFor('builtin:http-json', { url: sourceUrl.replace('/records', '/wrapped') });
    const jobId = randomUUID();
    const event: CloudEvent = {
      id: randomUUID(),
      type: 'coffer.config.v1.SyncRequested',
      source: 'coffer/config',
      time: new Date().toISOString(),
      name: 'SyncRequested',
      data: { jobId, connectionId: plan.connectionId, workspaceId, occurredAt: new Date().toISOString() },
    };
    await runner.handleSyncRequested(event);
    // The job is queued; the scheduler runs it.
    await waitForOutcome(jobId);
    const requestsAfterFirst = sourceRequests;
    const hydrationsAfterFirst = hydrations.length;
    await runner.handleSyncRequested(event);
    await runner.handleSyncRequested({ ...event, id: randomUUID() });
    expect(sourceRequests).toBe(requestsAfterFirst);
    expect(hydrations).toHaveLength(hydrationsAfterFirst);
    const events = await query<{ type: string }>('select type from sync.events where stream_id = $1 order by stream_version', [`sync-job-${jobId}`]);
    expect(events.map((e) => e.type)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobSucceeded']);
    const rows = await query<{ n: number }>('select count(*)::int as n from warehouse.api_records');
    expect(rows[0]!.n).toBe(records.length * 2);
  });

  it('fails a sync whose source answers 401: SyncFailed names the status, the destination gets nothing', async () => {
    const plan = await planFor('builtin:http-json', {}, `${canaries.apiToken}-wrong`);
    const before = await query<{ n: number }>('select count(*)::int as n from warehouse.api_records');
    const jobId = randomUUID();
    await publishSyncRequested(jobId, plan.connectionId);
    const outcome = await waitForOutcome(jobId);
    expect(outcome.type).toBe('coffer.sync.v1.SyncFailed');
    expect(outcome.data.reason).toMatch(/HTTP 401/);
    expect(await query<{ n: number }>('select count(*)::int as n from warehouse.api_records')).toEqual(before);
    expect(await findJob(runtime.db, schema, jobId)).toMatchObject({ status: 'failed', failure_reason: expect.stringMatching(/HTTP 401/) });
  });

  it('fails an unknown connector with a clear reason, before hydrating anything', async () => {
    const plan = await planFor('builtin:nope');
    const jobId = randomUUID();
    const hydrationsBefore = hydrations.length;
    await publishSyncRequested(jobId, plan.connectionId);
    const outcome = await waitForOutcome(jobId);
    expect(outcome.type).toBe('coffer.sync.v1.SyncFailed');
    expect(outcome.data.reason).toBe('unknown source connector builtin:nope');
    expect(hydrations).toHaveLength(hydrationsBefore);
  });

  it('redacts a secret a connector puts in its error; an unexpected error becomes a generic reason and a redacted log line', async () => {
    const leaky = await planFor('test:leaky');
    const leakyJob = randomUUID();
    await publishSyncRequested(leakyJob, leaky.connectionId);
    const leakyOutcome = await waitForOutcome(leakyJob);
    expect(leakyOutcome.data.reason).toBe(`upstream refused the token ${REDACTED}`);

    const crash = await planFor('test:crash');
    const crashJob = randomUUID();
    await publishSyncRequested(crashJob, crash.connectionId);
    const crashOutcome = await waitForOutcome(crashJob);
    expect(crashOutcome.data.reason).toBe('internal error (see the sync worker log)');
    const line = logLines.find((l) => l.includes('sync failed unexpectedly') && l.includes(crashJob));
    expect(line).toContain(`crashed while holding ${REDACTED}`);
  });

  it('redacts the base64, URL-encoded and Basic-header forms of a secret in the SyncFailed reason and in every log line', async () => {
    const encodedForms = [
      Buffer.from(canaries.apiToken).toString('base64'),
      encodeURIComponent(`${canaries.apiToken}/&`),
      Buffer.from(`user:${canaries.apiToken}`).toString('base64'),
    ];
    const plan = await planFor('test:encoding');
    const job = randomUUID();
    await publishSyncRequested(job, plan.connectionId);
    const outcome = await waitForOutcome(job);
    expect(outcome.data.reason).toBe(`upstream refused b64=${REDACTED} url=${REDACTED}%2F%26 auth=Basic ${REDACTED}`);

    const crash = await planFor('test:encoding-crash');
    const crashJob = randomUUID();
    await publishSyncRequested(crashJob, crash.connectionId);
    expect((await waitForOutcome(crashJob)).data.reason).toBe('internal error (see the sync worker log)');
    const line = logLines.find((l) => l.includes('sync failed unexpectedly') && l.includes(crashJob));
    expect(line).toContain(`crashed with b64=${REDACTED} url=${REDACTED}%2F%26 auth=Basic ${REDACTED}`);
    expect(logLines.filter((l) => l.includes('test connector about to fail'))).toHaveLength(2);
    for (const l of logLines) for (const form of encodedForms) expect(l).not.toContain(form);
  });

  it('fails a sync whose source is a loopback server when no allow-list permits it: the reason names the rule, the server receives nothing', async () => {
    const plan = await planFor('production:http-json', { url: deniedUrl });
    const jobId = randomUUID();
    await publishSyncRequested(jobId, plan.connectionId);
    const outcome = await waitForOutcome(jobId);
    expect(outcome.type, JSON.stringify(outcome.data)).toBe('coffer.sync.v1.SyncFailed');
    expect(outcome.data.reason).toMatch(/^builtin:http-json: egress to 127\.0\.0\.1:\d+ refused: loopback address \(127\.0\.0\.0\/8\)/);
    expect(outcome.data.reason).not.toContain(canaries.apiToken);
    expect(deniedRequests).toBe(0);
    const leaked = await query<{ n: number }>("select count(*)::int as n from warehouse.api_records where data ? 'leaked'").catch((err: { code?: string }) => {
      if (err.code === '42P01') return [{ n: 0 }];
      throw err;
    });
    expect(leaked).toEqual([{ n: 0 }]);
    expect(await findJob(runtime.db, schema, jobId)).toMatchObject({ status: 'failed', failure_reason: expect.stringMatching(/refused: loopback address/) });
  });

  it('fails a sync whose Postgres destination is at a loopback address when no allow-list permits it', async () => {
    const plan = await planFor('builtin:http-json', {}, canaries.apiToken, 'production:postgres');
    const jobId = randomUUID();
    await publishSyncRequested(jobId, plan.connectionId);
    const outcome = await waitForOutcome(jobId);
    expect(outcome.type, JSON.stringify(outcome.data)).toBe('coffer.sync.v1.SyncFailed');
    expect(outcome.data.reason).toMatch(/^builtin:postgres: egress to .+ refused: (it resolves to a )?loopback address/);
    expect(await findJob(runtime.db, schema, jobId)).toMatchObject({ status: 'failed', failure_reason: expect.stringMatching(/refused: (it resolves to a )?loopback address/) });
  });

  it('dead-letters a malformed SyncRequested under the sync stream after its deliveries', async () => {
    await publishSyncRequested('not-a-uuid', randomUUID());
    const subject = deadLetterSubject(ns, 'sync_requested');
    const deadline = Date.now() + 30_000;
    let dead: { headers: Record<string, string> } | undefined;
    while (!dead && Date.now() < deadline) {
      dead = (await streamMessages(streamName(ns, 'sync'))).find((m) => m.subject === subject);
      if (!dead) await sleep(200);
    }
    expect(dead, 'no dead letter').toBeDefined();
    expect(dead!.headers[deadLetterHeaders.reason]).toBe('handler_failed');
    expect(dead!.headers[deadLetterHeaders.error]).toBe('CofferError:invalid_argument');
  });

  it('leaves no secret and no record data in any table of its schema, any sync stream message, or any log line', async () => {
    const tables = await query<{ table_name: string }>("select table_name from information_schema.tables where table_schema = 'sync'");
    expect(tables.map((t) => t.table_name)).toEqual(expect.arrayContaining(['events', 'sync_jobs', 'inbox']));
    const leaks = [canaries.apiToken, canaries.tunnelKey, marker];
    for (const { table_name } of tables) {
      const rows = JSON.stringify(await query(`select * from sync."${table_name.replaceAll('"', '""')}"`));
      for (const leak of leaks) expect(rows, `sync.${table_name}`).not.toContain(leak);
    }
    const messages = JSON.stringify(await streamMessages(streamName(ns, 'sync')));
    for (const leak of leaks) expect(messages).not.toContain(leak);
    const logs = logLines.join('\n');
    expect(logs).toContain('SyncJobSucceeded');
    for (const leak of [canaries.apiToken, canaries.tunnelKey]) expect(logs).not.toContain(leak);
  });
});
