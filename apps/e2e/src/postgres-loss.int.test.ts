import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1, configV1, eventSubject, streamName, syncV1, type IntegrationEventName, type MessagingNamespace, type ServiceName } from '@coffer/contracts';
import { startStack, stackServices, type Stack } from '@coffer/cli';
import { adminDatabaseUrl, createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { call, ok, rawClient, type Answer } from './raw-grpc';

const TERMINATIONS = 3;
/** Concurrent callers per kind of call, so several calls are in flight when the connections go. */
const CALLERS_PER_KIND = 3;
/** How long the calls may take to succeed again after a termination before the test gives up. */
const RECOVERY_LIMIT_MS = 30_000;

/** One call of the traffic loop, as answered. */
interface Outcome {
  kind: string;
  startedAt: number;
  endedAt: number;
  status: grpc.status;
  message: string;
}

/** Each kind of call touches another service's database (config's, secrets', auth's, sync-worker's). */
const kinds = ['config+secrets: CreateActor', 'config: GetWorkspace', 'auth: IssueServiceToken', 'sync-worker: GetSyncJob', 'config+sync-worker: CheckConfig'] as const;
type Kind = (typeof kinds)[number];

describe('every Postgres connection terminated three times under traffic: no process exits, failures are UNAVAILABLE, calls and background loops resume', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let nc: NatsConnection;
  let auth: authV1.AuthServiceClient;
  let config: configV1.ConfigServiceClient;
  let sync: syncV1.SyncServiceClient;
  const token = { auth: '', config: '', sync: '' };
  let workspaceId = '';
  let definitionId = '';

  beforeAll(async () => {
    db = await createTestDatabase('coffer_pgloss');
    ns = uniqueNamespace();
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns });
    auth = rawClient(authV1.AuthServiceClient, stack.services.auth.address, authV1);
    config = rawClient(configV1.ConfigServiceClient, stack.services.config.address, configV1);
    sync = rawClient(syncV1.SyncServiceClient, stack.services['sync-worker'].address, syncV1);
    const operator = stack.credentials.clients.operator;
    for (const [key, audience] of [['auth', 'auth'], ['config', 'config'], ['sync', 'sync-worker']] as const) {
      token[key] = (await ok(call<authV1.IssueServiceTokenResponse>(auth, 'issueServiceToken', { ...operator, audience }))).accessToken;
    }
    workspaceId = (await ok(call<configV1.CreateWorkspaceResponse>(config, 'createWorkspace', { name: 'pg-loss' }, token.config))).workspace!.workspaceId;
    const spec = { type: 'object', required: ['url', 'api_token'], properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } } };
    definitionId = (
      await ok(
        call<configV1.RegisterConnectorDefinitionResponse>(
          config,
          'registerConnectorDefinition',
          { name: 'api', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) },
          token.config,
        ),
      )
    ).definition!.definitionId;
    nc = await connect({ servers: testNatsUrl() });
  }, 180_000);

  afterAll(async () => {
    for (const c of [auth, config, sync]) c?.close();
    await nc?.close();
    await stack?.stop();
    if (ns) await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  const actorConfig = () => JSON.stringify({ url: 'http://127.0.0.1:9/none', api_token: `tok-${randomUUID()}` });

  /** One call of a kind; NOT_FOUND for a job that does not exist is an answer from the database too. */
  function runOnce(kind: Kind): Promise<Answer<unknown>> {
    switch (kind) {
      case 'config+secrets: CreateActor':
        return call(config, 'createActor', { workspaceId, definitionId, name: `a-${randomUUID().slice(0, 8)}`, configJson: actorConfig() }, token.config);
      case 'config: GetWorkspace':
        return call(config, 'getWorkspace', { workspaceId }, token.config);
      case 'auth: IssueServiceToken':
        return call(auth, 'issueServiceToken', { ...stack.credentials.clients.operator, audience: 'config' });
      case 'sync-worker: GetSyncJob':
        return call(sync, 'getSyncJob', { jobId: randomUUID() }, token.sync);
      case 'config+sync-worker: CheckConfig':
        // Through config's relay, the sync worker's consumer, its database and its relay, and back.
        return call(config, 'checkConfig', { workspaceId, definitionId, configJson: actorConfig() }, token.config);
    }
  }

  const answered = (kind: Kind, status: grpc.status) => status === grpc.status.OK || (kind === 'sync-worker: GetSyncJob' && status === grpc.status.NOT_FOUND);

  async function terminateAll(): Promise<number> {
    const admin = new pg.Client({ connectionString: adminDatabaseUrl() });
    admin.on('error', () => undefined);
    await admin.connect();
    try {
      const { rows } = await admin.query<{ n: string }>(
        'SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [db.name],
      );
      return Number(rows[0]!.n);
    } finally {
      await admin.end();
    }
  }

  /** The first event of `name` on its service's stream whose body mentions `needle`, within `timeoutMs`. */
  async function eventOnStream(service: ServiceName, name: IntegrationEventName, needle: string, timeoutMs = 30_000): Promise<string | undefined> {
    const consumer = await jetstream(nc).consumers.get(streamName(ns, service), { filter_subjects: eventSubject(ns, name), deliver_policy: DeliverPolicy.All });
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const m = await consumer.next({ expires: 1_000 });
      if (!m) continue;
      const body = new TextDecoder().decode(m.data);
      if (body.includes(needle)) return m.headers?.get('ce-id');
    }
    return undefined;
  }

  it(
    'keeps all four processes up, answers UNAVAILABLE while connections are lost, and recovers each time',
    async () => {
      const outcomes: Outcome[] = [];
      let running = true;
      const loops = kinds.flatMap((kind) => Array.from({ length: CALLERS_PER_KIND }, () => kind)).map(async (kind) => {
        while (running) {
          const startedAt = Date.now();
          const a = await runOnce(kind);
          outcomes.push({ kind, startedAt, endedAt: Date.now(), status: a.status, message: a.message });
          // Keeps the machine usable for the others; the calls are still many per termination.
          await new Promise((r) => setTimeout(r, 20));
        }
      });
      const succeededSince = (kind: Kind, since: number) => outcomes.find((o) => o.kind === kind && o.startedAt >= since && answered(kind, o.status));
      const waitForAll = async (since: number): Promise<Record<Kind, number>> => {
        const until = since + RECOVERY_LIMIT_MS;
        const recovery = {} as Record<Kind, number>;
        for (;;) {
          for (const kind of kinds) {
            const first = succeededSince(kind, since);
            if (first && recovery[kind] === undefined) recovery[kind] = first.endedAt - since;
          }
          if (kinds.every((k) => recovery[k] !== undefined)) return recovery;
          if (Date.now() > until) throw new Error(`not every kind of call succeeded within ${RECOVERY_LIMIT_MS} ms after ${new Date(since).toISOString()}: ${JSON.stringify(recovery)}`);
          await new Promise((r) => setTimeout(r, 25));
        }
      };

      const rounds: Array<{ killed: number; recovery: Record<Kind, number>; failed: number }> = [];
      try {
        await waitForAll(Date.now());
        for (let i = 0; i < TERMINATIONS; i++) {
          const at = Date.now();
          const before = outcomes.length;
          const killed = await terminateAll();
          const recovery = await waitForAll(at);
          // Let the calls that were in flight at the termination settle into the outcomes.
          await new Promise((r) => setTimeout(r, 1_000));
          rounds.push({ killed, recovery, failed: outcomes.slice(before).filter((o) => !answered(o.kind as Kind, o.status)).length });
        }
      } finally {
        running = false;
        await Promise.all(loops);
      }

      for (const [i, r] of rounds.entries()) {
        console.log(`termination ${i + 1}: ${r.killed} backends terminated, ${r.failed} calls failed; first success after it (ms): ${JSON.stringify(r.recovery)}`);
      }
      const failures = outcomes.filter((o) => !answered(o.kind as Kind, o.status));
      const byStatus = new Map<string, number>();
      for (const f of failures) byStatus.set(grpc.status[f.status], (byStatus.get(grpc.status[f.status]) ?? 0) + 1);
      console.log(`${outcomes.length} calls, ${failures.length} failed: ${JSON.stringify(Object.fromEntries(byStatus))}`);
      for (const kind of kinds) {
        const mine = outcomes.filter((o) => o.kind === kind);
        console.log(`  ${kind}: ${mine.length} calls, ${mine.filter((o) => !answered(kind, o.status)).length} UNAVAILABLE`);
      }

      expect(rounds.every((r) => r.killed > 0)).toBe(true);
      // The services held connections and lost them: each process noticed, and none exited.
      for (const name of stackServices) {
        const svc = stack.services[name];
        expect({ name, exitCode: svc.process.exitCode, signal: svc.process.signalCode }).toEqual({ name, exitCode: null, signal: null });
      }
      expect(stack.output()).toContain('a Postgres connection dropped; the pool opens a new one on next use');
      // Every failed call was a retryable UNAVAILABLE, never INTERNAL or UNKNOWN.
      expect(failures.filter((f) => f.status !== grpc.status.UNAVAILABLE).map((f) => `${f.kind}: ${grpc.status[f.status]} ${f.message}`)).toEqual([]);
      expect(stack.output()).not.toContain('unhandled error in handler');
    },
    300_000,
  );

  it('events written after the terminations still reach NATS from every service (relays resumed), and the sync worker still consumes', async () => {
    // config's relay
    const ws = (await ok(call<configV1.CreateWorkspaceResponse>(config, 'createWorkspace', { name: 'after-loss' }, token.config))).workspace!.workspaceId;
    // auth's relay
    const org = (await ok(call<authV1.CreateOrganizationResponse>(auth, 'createOrganization', { name: `after-loss-${randomUUID().slice(0, 8)}` }, token.auth))).organization!;
    // secrets' relay: the actor's secret is written at secrets
    const actor = (await ok(call<configV1.CreateActorResponse>(config, 'createActor', { workspaceId, definitionId, name: 'after-loss', configJson: actorConfig() }, token.config))).actor!;
    // The sync worker's consumer, database and relay: a check is answered only through all three.
    const checked = await ok(call<configV1.CheckConfigResponse>(config, 'checkConfig', { workspaceId, definitionId, configJson: actorConfig() }, token.config));
    expect(typeof checked.succeeded).toBe('boolean');

    expect(await eventOnStream('config', 'WorkspaceCreated', ws)).toBeTruthy();
    expect(await eventOnStream('auth', 'OrganizationCreated', org.organizationId)).toBeTruthy();
    expect(await eventOnStream('config', 'SourceCreated', actor.actorId)).toBeTruthy();
    expect(await eventOnStream('secrets', 'SecretVersionWritten', workspaceId)).toBeTruthy();
    for (const name of stackServices) expect(stack.services[name].process.exitCode).toBeNull();
  }, 120_000);
});
