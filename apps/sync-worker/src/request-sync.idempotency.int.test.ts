import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamName, type MessagingNamespace } from '@coffer/contracts';
import { startRuntime, type ServiceRuntime } from '@coffer/runtime';
import { createLogger, createRedactor } from '@coffer/telemetry';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createConfigService, type ConfigService } from '../../config/src/config.service';
import { configMigrations } from '../../config/src/config.migrations';
import { inProcessSecretsPort, startInProcessSecretsService } from '../../secrets/src/in-process';
import { createCheckRunner } from './check-runner';
import { createEgressPolicy } from './connectors/egress-policy';
import { builtinConnectors } from './connectors/registry';
import { startConsumers } from './consumers';
import { createSyncRunner, defaultJobSettings } from './sync-runner';
import { syncMigrations } from './sync.migrations';

// RequestSync retried with one request_id, end to end through real services in one process: config
// (its relay publishing to NATS), secrets, and the sync worker consuming SyncRequested and running
// the built-in connectors against a loopback HTTP source and this test's Postgres.

const operator = { subject: 'operator' };
const records = Array.from({ length: 5 }, (_, i) => ({ id: i + 1, name: `row-${i + 1}` }));
const apiToken = `canary-api-${randomUUID()}`;

describe('sync worker: RequestSync retried with one request_id runs one sync', () => {
  let tdb: TestDatabase;
  let ns: MessagingNamespace;
  let configRuntime: ServiceRuntime;
  let syncRuntime: ServiceRuntime;
  let consumers: { stop(): Promise<void> };
  let config: ConfigService;
  let http: Server;
  let sourceRequests = 0;
  let connectionId = '';

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_sync_idem');
    ns = uniqueNamespace();
    http = createServer((req, res) => {
      sourceRequests++;
      if (req.headers.authorization !== `Bearer ${apiToken}`) return void res.writeHead(401).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(records));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const quiet = (service: string) => createLogger({ service, level: 'silent', redactor: createRedactor() });
    configRuntime = await startRuntime({
      service: 'config',
      appName: 'coffer-config-test',
      databaseUrl: tdb.url,
      schema: 'config',
      natsUrl: testNatsUrl(),
      namespace: ns,
      logger: quiet('config'),
      redactor: createRedactor(),
      migrations: configMigrations,
    });
    const secrets = await startInProcessSecretsService({ db: configRuntime.db, namespace: ns });
    config = createConfigService({
      db: configRuntime.db,
      store: configRuntime.store,
      schema: 'config',
      namespace: ns,
      secrets: inProcessSecretsPort(secrets),
      coordinatePrefix: 'coffer',
      maxConfigBytes: 256 * 1024,
      logger: quiet('config'),
      clock: () => new Date(),
      newId: randomUUID,
    });
    const redactor = createRedactor();
    const logger = createLogger({ service: 'sync-worker', level: 'silent', redactor });
    syncRuntime = await startRuntime({
      service: 'sync',
      appName: 'coffer-sync-worker-test',
      databaseUrl: tdb.url,
      schema: 'sync',
      natsUrl: testNatsUrl(),
      namespace: ns,
      logger,
      redactor,
      migrations: syncMigrations,
    });
    const deps = {
      db: syncRuntime.db,
      store: syncRuntime.store,
      schema: 'sync',
      namespace: ns,
      ports: {
        getSyncPlan: (id: string) => config.getSyncPlan(id),
        hydrate: (ws: string, partialConfigJson: string, reason: string, ownerId: string) => secrets.hydrateConfig(ws, partialConfigJson, reason, { subject: 'sync-worker' }, ownerId),
      },
      connectors: builtinConnectors({ egress: createEgressPolicy({ allow: ['127.0.0.0/8', '::1'] }) }),
      redactor,
      logger,
      clock: () => new Date(),
      endRetryDelaysMs: [50],
      workerId: 'test-worker',
      jobs: { ...defaultJobSettings, maxAttempts: 1, pollIntervalMs: 100 },
    };
    const runner = createSyncRunner({ ...deps, checks: createCheckRunner(deps) });
    runner.start();
    const queue = await startConsumers(syncRuntime.nc, ns, { sync: runner }, { maxDeliver: 2, retryDelayMs: () => 50, logger });
    consumers = { stop: async () => (await queue.stop(), await runner.stop()) };

    const workspaceId = (await config.createWorkspace({ name: 'retries' }, operator)).workspaceId;
    const sourceSpec = { type: 'object', required: ['url', 'api_token'], properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } } };
    const destinationSpec = {
      type: 'object',
      properties: { host: { type: 'string' }, port: { type: 'integer' }, database: { type: 'string' }, username: { type: 'string' }, password: { type: 'string', airbyte_secret: true }, schema: { type: 'string' }, table: { type: 'string' } },
    };
    const register = (actorType: 'source' | 'destination', connector: string, spec: object) =>
      config.registerDefinition({ name: connector, actorType, connector, specJson: JSON.stringify(spec) }, operator);
    const u = new URL(tdb.url);
    const source = await config.createActor(
      {
        workspaceId,
        definitionId: (await register('source', 'builtin:http-json', sourceSpec)).definitionId,
        name: 'api',
        configJson: JSON.stringify({ url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/records`, api_token: apiToken }),
      },
      operator,
    );
    const destination = await config.createActor(
      {
        workspaceId,
        definitionId: (await register('destination', 'builtin:postgres', destinationSpec)).definitionId,
        name: 'warehouse',
        configJson: JSON.stringify({
          host: u.hostname,
          port: Number(u.port || 5432),
          database: tdb.name,
          username: decodeURIComponent(u.username || 'postgres'),
          password: decodeURIComponent(u.password),
          schema: 'warehouse',
          table: 'rows',
        }),
      },
      operator,
    );
    connectionId = (await config.createConnection({ workspaceId, sourceId: source.actorId, destinationId: destination.actorId, name: 'c' }, operator)).connectionId;
  }, 60_000);

  afterAll(async () => {
    await consumers?.stop();
    await syncRuntime?.close();
    await configRuntime?.close();
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
    await deleteStreams(testNatsUrl(), ns);
    await tdb?.drop();
  }, 60_000);

  /** SyncRequested messages on config's stream for this job, and the sync stream's outcomes of it. */
  async function published(jobId: string): Promise<{ requested: number; outcomes: string[] }> {
    const jsm = await jetstreamManager(syncRuntime.nc);
    const read = async (stream: string) => {
      const { state } = await jsm.streams.info(stream);
      const out: { type: string; data: string }[] = [];
      for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        if (m?.string().includes(jobId)) out.push({ type: m.header?.get('ce-type') ?? '', data: m.string() });
      }
      return out;
    };
    const requested = (await read(streamName(ns, 'config'))).filter((m) => m.type.endsWith('SyncRequested')).length;
    const outcomes = (await read(streamName(ns, 'sync'))).map((m) => m.type);
    return { requested, outcomes };
  }

  it('eight concurrent RequestSync and a late repeat with one key: one job id, one SyncRequested on NATS, one run', async () => {
    const requestId = randomUUID();
    const jobs = await Promise.all(Array.from({ length: 8 }, () => config.requestSync(connectionId, operator, requestId)));
    expect(new Set(jobs).size).toBe(1);
    const jobId = jobs[0]!;
    const deadline = Date.now() + 30_000;
    let seen = await published(jobId);
    while (!seen.outcomes.some((t) => /SyncSucceeded|SyncFailed/.test(t)) && Date.now() < deadline) {
      await sleep(200);
      seen = await published(jobId);
    }
    expect(seen.outcomes).toEqual(['coffer.sync.v1.SyncStarted', 'coffer.sync.v1.SyncSucceeded']);
    // A repeat after the sync ran answers the same job and requests nothing.
    expect(await config.requestSync(connectionId, operator, requestId)).toBe(jobId);
    await sleep(1_000);
    seen = await published(jobId);
    expect(seen.requested).toBe(1);
    expect(seen.outcomes).toEqual(['coffer.sync.v1.SyncStarted', 'coffer.sync.v1.SyncSucceeded']);
    expect(sourceRequests).toBe(1);
    const events = await sql<{ type: string }>`select type from sync.events where stream_id = ${`sync-job-${jobId}`} order by stream_version`.execute(syncRuntime.db);
    expect(events.rows.map((e) => e.type)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobSucceeded']);
    const rows = await sql<{ n: string }>`select count(*) as n from warehouse.rows`.execute(syncRuntime.db);
    expect(Number(rows.rows[0]!.n)).toBe(records.length);
  });
});
