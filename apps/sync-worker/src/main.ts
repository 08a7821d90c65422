import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { configV1, secretsV1 } from '@coffer/contracts';
import { createGrpcServer, createPromiseClient, createServiceTokenProvider, mtlsChannelCredentials, mtlsServerCredentials } from '@coffer/rpc';
import { announceListening, failStartup, loadSettingsOrExit, logSecurityFindings, mtlsFromEnv, onShutdown, startTokenVerification, startOpsEndpoint, startRuntime } from '@coffer/runtime';
import { streamSettingsFromEnv } from '@coffer/runtime';
import { createLogger, createRedactor, startTelemetry } from '@coffer/telemetry';
import { createCheckRunner } from './check-runner';
import { loadSyncWorkerConfig } from './config';
import { createEgressPolicy } from './connectors/egress-policy';
import { airbyteConnectors } from './connectors/airbyte-command';
import { builtinConnectors } from './connectors/registry';
import { startConsumers } from './consumers';
import { grpcPorts } from './grpc-ports';
import { createCodeExchange } from './oauth/code-exchange';
import { createOAuthCredentials } from './oauth/oauth-credentials';
import { createRevocationHandler } from './oauth/revocation-requests';
import { createApiProxy } from './proxy/api-proxy';
import { createSyncRunner } from './sync-runner';
import { syncGrpcService } from './sync.grpc';
import type { SyncDatabase } from './sync.database';
import { syncMigrations } from './sync.migrations';

const config = loadSettingsOrExit(() => loadSyncWorkerConfig(process.env));
const telemetry = await startTelemetry({ serviceName: 'coffer-sync-worker', otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT, prometheus: Boolean(config.SYNC_WORKER_METRICS_ADDRESS) });
// One redactor for the process: the runners register hydrated values, the logger applies them to every line.
const redactor = createRedactor();
const logger = createLogger({ service: 'sync-worker', level: config.LOG_LEVEL, redactor });

logSecurityFindings(logger, config);

try {
  const runtime = await startRuntime<SyncDatabase>({
    service: 'sync',
    appName: 'coffer-sync-worker',
    databaseUrl: config.DATABASE_URL,
    schema: config.SYNC_WORKER_DB_SCHEMA,
    natsUrl: config.NATS_URL,
    namespace: { subjectRoot: config.COFFER_SUBJECT_ROOT, streamPrefix: config.COFFER_STREAM_PREFIX },
    stream: streamSettingsFromEnv(config),
    logger,
    redactor,
    startupWaitMs: config.COFFER_STARTUP_WAIT_MS,
    migrations: syncMigrations,
    migrationMode: config.COFFER_MIGRATIONS,
    preparedStatements: config.COFFER_DB_PREPARED_STATEMENTS,
  });
  // Mutual TLS on every port and channel when the three COFFER_TLS_* files are set.
  const tls = mtlsFromEnv(config);
  const channel = tls ? mtlsChannelCredentials(tls) : undefined;
  const identity = { credentials: channel, authAddress: config.AUTH_ADDRESS, clientId: config.SYNC_WORKER_CLIENT_ID, clientSecret: config.SYNC_WORKER_CLIENT_SECRET };
  const configToken = createServiceTokenProvider({ ...identity, audience: 'config' });
  const secretsToken = createServiceTokenProvider({ ...identity, audience: 'secrets' });
  const configClient = createPromiseClient(configV1.ConfigServiceClient, config.CONFIG_ADDRESS, { tokenProvider: configToken, credentials: channel });
  const secretsClient = createPromiseClient(secretsV1.SecretsServiceClient, config.SECRETS_ADDRESS, { tokenProvider: secretsToken, credentials: channel });
  const egress = createEgressPolicy({ allow: config.SYNC_WORKER_EGRESS_ALLOW });
  const builtin = builtinConnectors({ egress });
  const airbyte = airbyteConnectors({ commands: config.SYNC_WORKER_AIRBYTE_COMMANDS, workDir: config.SYNC_WORKER_CONNECTOR_WORK_DIR, logger, redactor });
  // What connector runs of an earlier process left behind (killed with their config files in place) goes first.
  await airbyte.sweep(true);
  const deps = {
    db: runtime.db,
    store: runtime.store,
    schema: config.SYNC_WORKER_DB_SCHEMA,
    namespace: runtime.namespace,
    ports: grpcPorts(configClient, secretsClient),
    connectors: { sources: { ...builtin.sources, ...airbyte.sources }, destinations: { ...builtin.destinations, ...airbyte.destinations } },
    redactor,
    logger,
    clock: () => new Date(),
  };
  const credentials = createOAuthCredentials({ ...deps, egress });
  const syncRunner = createSyncRunner({
    ...deps,
    workerId: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
    credentials,
    checks: createCheckRunner(deps),
    sweep: () => airbyte.sweep(),
    jobs: {
      maxAttempts: config.SYNC_WORKER_JOB_MAX_ATTEMPTS,
      backoffBaseMs: config.SYNC_WORKER_JOB_BACKOFF_MS,
      backoffMaxMs: config.SYNC_WORKER_JOB_BACKOFF_MAX_MS,
      timeoutMs: config.SYNC_WORKER_JOB_TIMEOUT_MS,
      checkTimeoutMs: config.SYNC_WORKER_CHECK_TIMEOUT_MS,
      heartbeatIntervalMs: config.SYNC_WORKER_HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs: config.SYNC_WORKER_HEARTBEAT_TIMEOUT_MS,
      pollIntervalMs: config.SYNC_WORKER_POLL_INTERVAL_MS,
      concurrency: config.SYNC_WORKER_CONCURRENCY,
    },
  });
  const consumers = await startConsumers(
    runtime.nc,
    runtime.namespace,
    { sync: syncRunner, revoke: createRevocationHandler({ ports: deps.ports, credentials, logger }) },
    { maxDeliver: config.SYNC_WORKER_MAX_DELIVER, logger },
  );
  const proxy = createApiProxy({
    ports: deps.ports,
    egress,
    redactor,
    logger,
    credentials,
    timeoutMs: config.SYNC_WORKER_PROXY_TIMEOUT_MS,
    maxResponseBytes: config.SYNC_WORKER_PROXY_MAX_RESPONSE_BYTES,
  });
  const tokens = await startTokenVerification({ runtime, issuer: config.COFFER_TOKEN_ISSUER, audience: 'sync-worker', authAddress: config.AUTH_ADDRESS, credentials: channel, failOpen: config.COFFER_REVOCATION_FAIL_OPEN });
  const verifier = tokens.verifier;
  const server = createGrpcServer({ services: [syncGrpcService(runtime.db, config.SYNC_WORKER_DB_SCHEMA, syncRunner, proxy, createCodeExchange({ ...deps, egress }))], verifier, logger, ...(tls && { credentials: mtlsServerCredentials(tls), certificateIdentity: true }) });
  const port = await server.listen(config.SYNC_WORKER_GRPC_ADDRESS);
  syncRunner.start();
  announceListening(logger, 'sync-worker', port);
  const ops = await startOpsEndpoint({ service: 'sync-worker', address: config.SYNC_WORKER_METRICS_ADDRESS, telemetry, logger, checks: { ...runtime.readiness, jwks: tokens.ready } });
  onShutdown(logger, [
    ['ops endpoint', () => ops.close()],
    ['consumers', () => consumers.stop()],
    ['jobs', () => syncRunner.stop()],
    ['grpc', () => server.shutdown()],
    ['clients', async () => {
      configClient.close();
      secretsClient.close();
      configToken.close();
      secretsToken.close();
    }],
    ['revocations', () => tokens.stop()],
    ['runtime', () => runtime.close()],
    ['telemetry', () => telemetry.shutdown()],
  ]);
} catch (err) {
  failStartup(logger, err);
}
