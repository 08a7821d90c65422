import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { configV1, streamName, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack, type StackService } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './otlp-receiver';

const canaries = { apiToken: `canary-api-${Math.random().toString(36).slice(2)}`, dbPassword: `canary-dbpw-${Math.random().toString(36).slice(2)}` };
const services: StackService[] = ['auth', 'secrets', 'config', 'sync-worker'];
const metricsSetting: Record<StackService, string> = { auth: 'AUTH_METRICS_ADDRESS', secrets: 'SECRETS_METRICS_ADDRESS', config: 'CONFIG_METRICS_ADDRESS', 'sync-worker': 'SYNC_WORKER_METRICS_ADDRESS' };
const SERVER = 2;
const CLIENT = 3;
const PRODUCER = 4;
const CONSUMER = 5;

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

describe('observability over real processes: one RequestSync is one trace, metrics are scraped, readiness follows Postgres', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let nc: NatsConnection;
  let receiver: OtlpReceiver;
  let source: Server;
  let config: PromiseClient<configV1.ConfigServiceClient> & { close(): void };
  const opsPort = {} as Record<StackService, number>;

  beforeAll(async () => {
    db = await createTestDatabase('coffer_observe');
    ns = uniqueNamespace();
    nc = await connect({ servers: testNatsUrl() });
    receiver = await startOtlpReceiver();
    source = createServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${canaries.apiToken}`) return void res.writeHead(401).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ id: 1 }, { id: 2 }]));
    });
    await new Promise<void>((r) => source.listen(0, '127.0.0.1', r));
    const dbUrl = new URL(db.url);
    stack = await startStack({
      databaseUrl: db.url,
      natsUrl: testNatsUrl(),
      namespace: ns,
      egressAllow: [`127.0.0.1:${(source.address() as AddressInfo).port}`, `${dbUrl.hostname}:${dbUrl.port || 5432}`],
      serviceEnv: Object.fromEntries(services.map((s) => [s, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, [metricsSetting[s]]: '127.0.0.1:0' }])),
    });
    for (const s of services) {
      opsPort[s] = await until(`${s}'s ops endpoint`, () => {
        for (const line of stack.services[s].output) {
          try {
            const parsed = JSON.parse(line) as { event?: string; port?: number };
            if (parsed.event === 'ops_listening' && typeof parsed.port === 'number') return parsed.port;
          } catch {
            // not a JSON line
          }
        }
        return undefined;
      });
    }
    config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, {
      tokenProvider: createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'config' }),
    });
  }, 180_000);

  afterAll(async () => {
    config?.close();
    await stack?.stop();
    await receiver?.close();
    await new Promise<void>((r) => (source ? source.close(() => r()) : r()));
    await nc?.close();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  it('a RequestSync yields one trace across config, NATS, the sync-worker and secrets, with no secret in any span; idle pollers make none', async () => {
    const workspaceId = (await config.createWorkspace({ name: 'observe', organizationId: '' })).workspace!.workspaceId;
    const sourceDefinitionId = (
      await config.registerConnectorDefinition({
        name: 'HTTP JSON API',
        actorType: configV1.ActorType.ACTOR_TYPE_SOURCE,
        connector: 'builtin:http-json',
        specJson: JSON.stringify({ type: 'object', properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } } }),
      })
    ).definition!.definitionId;
    const destinationDefinitionId = (
      await config.registerConnectorDefinition({
        name: 'Postgres',
        actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION,
        connector: 'builtin:postgres',
        specJson: JSON.stringify({ type: 'object', properties: { password: { type: 'string', airbyte_secret: true } } }),
      })
    ).definition!.definitionId;
    const url = `http://127.0.0.1:${(source.address() as AddressInfo).port}/records?page=1`;
    const sourceId = (await config.createActor({ workspaceId, definitionId: sourceDefinitionId, name: 'api', configJson: JSON.stringify({ url, api_token: canaries.apiToken }) })).actor!.actorId;
    const dbUrl = new URL(db.url);
    const destinationId = (
      await config.createActor({
        workspaceId,
        definitionId: destinationDefinitionId,
        name: 'warehouse',
        configJson: JSON.stringify({ host: dbUrl.hostname, port: Number(dbUrl.port || 5432), database: db.name, username: decodeURIComponent(dbUrl.username || 'postgres'), password: canaries.dbPassword, schema: 'observe_dest', table: 'records' }),
      })
    ).actor!.actorId;
    const connectionId = (await config.createConnection({ workspaceId, sourceId, destinationId, name: 'api → warehouse' })).connection!.connectionId;
    const { jobId } = await config.requestSync({ connectionId });

    const consumer = await jetstream(nc).consumers.get(streamName(ns, 'sync'));
    const outcome = await until('the sync outcome', async () => {
      const batch = await consumer.fetch({ max_messages: 50, expires: 1000 });
      for await (const m of batch) {
        const type = m.headers?.get('ce-type') ?? '';
        if (m.json<{ jobId?: string }>().jobId === jobId && /SyncSucceeded|SyncFailed/.test(type)) return { type, traceparent: m.headers?.get('traceparent') ?? '' };
      }
      return undefined;
    });
    expect(outcome.type).toBe('coffer.sync.v1.SyncSucceeded');

    const requestSpan = await until('the RequestSync server span', () => receiver.spans.find((s) => s.service === 'coffer-config' && s.kind === SERVER && s.name.endsWith('ConfigService/RequestSync')));
    const traceId = requestSpan.traceId;
    // The outcome event continues the same trace.
    expect(outcome.traceparent.split('-')[1]).toBe(traceId);
    const inTrace = (pred: (s: ReceivedSpan) => boolean) => () => {
      const found = receiver.spans.filter((s) => s.traceId === traceId && pred(s));
      return found.length > 0 ? found : undefined;
    };
    const published = await until('the NATS publish span of SyncRequested', inTrace((s) => s.service === 'coffer-config' && s.kind === PRODUCER));
    const consumed = await until('the sync-worker consumer span', inTrace((s) => s.service === 'coffer-sync-worker' && s.kind === CONSUMER));
    // The consumer is the child of the publish span: the trace crossed NATS.
    expect(published.map((s) => s.spanId)).toContain(consumed[0]!.parentSpanId);
    expect(consumed[0]!.attributes['messaging.system']).toBe('nats');
    await until('the sync-worker calls to config', inTrace((s) => s.service === 'coffer-sync-worker' && s.kind === CLIENT && s.name.includes('ConfigService')));
    await until('the sync-worker calls to secrets', inTrace((s) => s.service === 'coffer-sync-worker' && s.kind === CLIENT && s.name.includes('SecretsService/Hydrate')));
    const hydrate = await until('secrets serving the hydrate', inTrace((s) => s.service === 'coffer-secrets' && s.kind === SERVER && s.name.includes('SecretsService/Hydrate')));
    await until("the config server span of the sync-worker's read", inTrace((s) => s.service === 'coffer-config' && s.kind === SERVER && s.spanId !== requestSpan.spanId));
    expect(hydrate.length).toBeGreaterThan(0);
    await until('the SyncStarted/SyncSucceeded publish spans of the sync-worker', inTrace((s) => s.service === 'coffer-sync-worker' && s.kind === PRODUCER));

    // Nothing secret in any span: no planted value, no bearer token, no query string, no statement parameter.
    const everything = JSON.stringify(receiver.spans);
    for (const c of Object.values(canaries)) expect(everything).not.toContain(c);
    expect(everything).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
    expect(everything).not.toContain('page=1');
    expect(receiver.spans.flatMap((s) => Object.keys(s.attributes)).filter((k) => /authorization|db\.statement\.parameters|values/i.test(k))).toEqual([]);

    // Idle: pollers (outbox relays, consumers, background jobs every 5 s) start no span. Spans of the
    // sync that were still being batched arrive meanwhile, but none starts after it ended.
    const quietFrom = Date.now() + 500;
    await new Promise((r) => setTimeout(r, 12_000));
    const idle = receiver.spans.filter((s) => s.startMs >= quietFrom);
    expect(idle.map((s) => `${s.service} ${s.name}`)).toEqual([]);
  }, 180_000);

  it('every service serves /healthz and Prometheus /metrics with the metrics it owns', async () => {
    const expected: Record<StackService, string[]> = {
      // auth's own calls here are public (tokens, JWKS): it verifies no token in this run.
      auth: ['rpc_server_duration', 'coffer_outbox_backlog'],
      config: ['rpc_server_duration', 'coffer_outbox_published', 'coffer_outbox_relay_lag', 'coffer_outbox_backlog', 'coffer_tokens_verifications'],
      secrets: ['rpc_server_duration', 'coffer_kms_duration', 'coffer_secrets_hydrations', 'coffer_tokens_verifications', 'coffer_outbox_backlog', 'coffer_secrets_versions_active'],
      'sync-worker': ['coffer_sync_duration', 'coffer_consumer_messages', 'coffer_consumer_duration', 'coffer_consumer_pending', 'coffer_outbox_published'],
    };
    for (const s of services) {
      const health = await get(`http://127.0.0.1:${opsPort[s]}/healthz`);
      expect(health.status, s).toBe(200);
      expect(JSON.parse(health.body)).toEqual({ status: 'ok' });
      const text = (await get(`http://127.0.0.1:${opsPort[s]}/metrics`)).body;
      for (const name of expected[s]) expect(text, `${s} exposes ${name}`).toMatch(new RegExp(`^${name}[_{ ]`, 'm'));
    }
    const secretsText = (await get(`http://127.0.0.1:${opsPort.secrets}/metrics`)).body;
    expect(secretsText).toMatch(/coffer_kms_duration_count\{[^}]*operation="unwrap"[^}]*outcome="ok"/);
    expect(secretsText).toMatch(/coffer_secrets_hydrations(_total)?\{[^}]*workspace_id="[0-9a-f-]{36}"/);
    // The source's API token and the destination's password, at least.
    expect(Number(/^coffer_secrets_versions_active(?:\{[^}]*\})? (\d+)/m.exec(secretsText)?.[1])).toBeGreaterThanOrEqual(2);
    const syncText = (await get(`http://127.0.0.1:${opsPort['sync-worker']}/metrics`)).body;
    expect(syncText).toMatch(/coffer_sync_duration_count\{[^}]*outcome="succeeded"[^}]*\} 1/);
    const configText = (await get(`http://127.0.0.1:${opsPort.config}/metrics`)).body;
    expect(configText).toMatch(/rpc_server_duration_count\{[^}]*rpc_method="RequestSync"[^}]*rpc_grpc_status_code="0"/);
    for (const c of Object.values(canaries)) expect(secretsText + syncText + configText).not.toContain(c);
  });

  it('/readyz answers 503 naming postgres while the database refuses connections, and 200 once it takes them again', async () => {
    for (const s of services) {
      const ready = await get(`http://127.0.0.1:${opsPort[s]}/readyz`);
      expect(ready.status, `${s}: ${ready.body}`).toBe(200);
      expect(JSON.parse(ready.body).status).toBe('ready');
    }
    const admin = new pg.Client({ connectionString: db.url.replace(/\/[^/]+$/, '/postgres') });
    await admin.connect();
    try {
      // Real refusal: new connections to the database fail, and the ones the pools hold are ended.
      await admin.query(`alter database "${db.name}" with allow_connections false`);
      await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [db.name]);
      for (const s of services) {
        const unready = await until(`${s} unready`, async () => {
          const r = await get(`http://127.0.0.1:${opsPort[s]}/readyz`);
          return r.status === 503 ? r : undefined;
        });
        const body = JSON.parse(unready.body) as { status: string; checks: Record<string, string> };
        expect(body.status).toBe('unready');
        expect(body.checks.postgres).toBe('failed');
        expect(body.checks.nats).toBe('ok');
        expect((await get(`http://127.0.0.1:${opsPort[s]}/healthz`)).status).toBe(200);
      }
    } finally {
      await admin.query(`alter database "${db.name}" with allow_connections true`);
      await admin.end();
    }
    for (const s of services) {
      const ready = await until(`${s} ready again`, async () => {
        const r = await get(`http://127.0.0.1:${opsPort[s]}/readyz`);
        return r.status === 200 ? r : undefined;
      });
      expect(JSON.parse(ready.body).checks.postgres).toBe('ok');
    }
  }, 120_000);
});
