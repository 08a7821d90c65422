import { configV1, eventSubject, secretsV1, streamName } from '@coffer/contracts';
import { ensureServiceStream, runConsumer } from '@coffer/messaging';
import { createGrpcServer, createPromiseClient, createServiceTokenProvider } from '@coffer/rpc';
import { announceListening, failStartup, jwksFromAuth, onShutdown, startRuntime } from '@coffer/runtime';
import { createLogger, createRedactor, startTelemetry } from '@coffer/telemetry';
import { createTokenVerifier } from '@coffer/tokens';
import { loadSyncWorkerConfig } from './config';
import { builtinConnectors } from './connectors/registry';
import { CHECK_REQUESTED_CONSUMER, createCheckRunner } from './check-runner';
import { createSyncRunner, SYNC_REQUESTED_CONSUMER } from './sync-runner';
import { syncGrpcService } from './sync.grpc';
import { migrateSyncReadModel } from './sync.postgres';

const config = loadSyncWorkerConfig(process.env);
const telemetry = await startTelemetry({ serviceName: 'coffer-sync-worker', otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT });
const redactor = createRedactor();
const logger = createLogger({ service: 'sync-worker', level: config.LOG_LEVEL, redactor });

try {
  const runtime = await startRuntime({
    service: 'sync',
    appName: 'coffer-sync-worker',
    databaseUrl: config.DATABASE_URL,
    schema: config.SYNC_WORKER_DB_SCHEMA,
    natsUrl: config.NATS_URL,
    namespace: { subjectRoot: config.COFFER_SUBJECT_ROOT, streamPrefix: config.COFFER_STREAM_PREFIX },
    logger,
    redactor,
    migrate: migrateSyncReadModel,
  });
  const ns = runtime.namespace;
  const identity = { authAddress: config.AUTH_ADDRESS, clientId: config.SYNC_WORKER_CLIENT_ID, clientSecret: config.SYNC_WORKER_CLIENT_SECRET };
  const configToken = createServiceTokenProvider({ ...identity, audience: 'config' });
  const secretsToken = createServiceTokenProvider({ ...identity, audience: 'secrets' });
  const configClient = createPromiseClient(configV1.ConfigServiceClient, config.CONFIG_ADDRESS, { tokenProvider: configToken });
  const secretsClient = createPromiseClient(secretsV1.SecretsServiceClient, config.SECRETS_ADDRESS, { tokenProvider: secretsToken });
  const runner = createSyncRunner({
    db: runtime.db,
    store: runtime.store,
    schema: config.SYNC_WORKER_DB_SCHEMA,
    namespace: ns,
    ports: {
      getSyncPlan: async (connectionId) => {
        const { plan } = await configClient.getSyncPlan({ connectionId });
        if (!plan) throw new Error('config returned no sync plan');
        return plan;
      },
      hydrate: async (workspaceId, partialConfigJson, reason) => (await secretsClient.hydrateConfig({ workspaceId, partialConfigJson, reason })).configJson,
    },
    connectors: builtinConnectors(),
    redactor,
    logger,
    clock: () => new Date(),
  });
  // Declared here too so the worker does not depend on config having started first.
  await ensureServiceStream(runtime.nc, ns, 'config');
  const consumer = await runConsumer(runtime.nc, {
    stream: streamName(ns, 'config'),
    durable: SYNC_REQUESTED_CONSUMER,
    filterSubjects: [eventSubject(ns, 'SyncRequested')],
    maxDeliver: config.SYNC_WORKER_MAX_DELIVER,
    deadLetterSubject: `${ns.subjectRoot}.sync.dead_letter.sync_requested`,
    handle: (event) => runner.handleSyncRequested(event),
    onError: (err, event) => logger.warn({ err, eventId: event?.id }, 'SyncRequested handler failed; it will be redelivered'),
  });
  const checkRunner = createCheckRunner({
    db: runtime.db,
    store: runtime.store,
    schema: config.SYNC_WORKER_DB_SCHEMA,
    namespace: ns,
    ports: {
      hydrate: async (workspaceId, partialConfigJson, reason) => (await secretsClient.hydrateConfig({ workspaceId, partialConfigJson, reason })).configJson,
    },
    connectors: builtinConnectors(),
    redactor,
    logger,
    clock: () => new Date(),
  });
  const checkConsumer = await runConsumer(runtime.nc, {
    stream: streamName(ns, 'config'),
    durable: CHECK_REQUESTED_CONSUMER,
    filterSubjects: [eventSubject(ns, 'CheckRequested')],
    maxDeliver: config.SYNC_WORKER_MAX_DELIVER,
    deadLetterSubject: `${ns.subjectRoot}.sync.dead_letter.check_requested`,
    handle: (event) => checkRunner.handleCheckRequested(event),
    onError: (err, event) => logger.warn({ err, eventId: event?.id }, 'CheckRequested handler failed; it will be redelivered'),
  });
  const verifier = createTokenVerifier({ issuer: config.COFFER_TOKEN_ISSUER, audience: 'sync-worker', fetchJwks: jwksFromAuth(config.AUTH_ADDRESS) });
  const server = createGrpcServer({ services: [syncGrpcService(runtime.db, config.SYNC_WORKER_DB_SCHEMA)], verifier, logger });
  const port = await server.listen(config.SYNC_WORKER_GRPC_ADDRESS);
  announceListening(logger, 'sync-worker', port);
  onShutdown(logger, [
    ['consumers', async () => {
      await consumer.stop();
      await checkConsumer.stop();
    }],
    ['grpc', () => server.shutdown()],
    ['clients', async () => {
      configClient.close();
      secretsClient.close();
      configToken.close();
      secretsToken.close();
    }],
    ['runtime', () => runtime.close()],
    ['telemetry', () => telemetry.shutdown()],
  ]);
} catch (err) {
  failStartup(logger, err);
}
