import { randomUUID } from 'node:crypto';
import { writeSync } from 'node:fs';
import { secretsV1, syncV1 } from '@coffer/contracts';
import { createGrpcServer, createPromiseClient, createServiceTokenProvider, mtlsChannelCredentials, mtlsServerCredentials } from '@coffer/rpc';
import { announceListening, failStartup, loadSettingsOrExit, logSecurityFindings, mtlsFromEnv, onShutdown, startTokenVerification, startBackgroundJobs, startOpsEndpoint, startRuntime } from '@coffer/runtime';
import { streamSettingsFromEnv } from '@coffer/runtime';
import { createLogger, createRedactor, startTelemetry } from '@coffer/telemetry';
import { userTokenKinds } from '@coffer/tokens';
import { loadConfigServiceConfig } from './config';
import { configGrpcService } from './config.grpc';
import type { ConfigDatabase } from './config.database';
import { configMigrations } from './config.migrations';
import { createCheckResults } from './check-results';
import { createConfigService } from './config.service';

const config = loadSettingsOrExit(() => loadConfigServiceConfig(process.env));
const telemetry = await startTelemetry({ serviceName: 'coffer-config', otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT, prometheus: Boolean(config.CONFIG_METRICS_ADDRESS) });
const redactor = createRedactor();
const logger = createLogger({ service: 'config', level: config.LOG_LEVEL, redactor });

logSecurityFindings(logger, config);
if (config.COFFER_FAULT_POINT) logger.warn({ faultPoint: config.COFFER_FAULT_POINT }, 'COFFER_FAULT_POINT is set: this process kills itself there (for tests only)');

try {
  const runtime = await startRuntime<ConfigDatabase>({
    service: 'config',
    appName: 'coffer-config',
    databaseUrl: config.DATABASE_URL,
    schema: config.CONFIG_DB_SCHEMA,
    natsUrl: config.NATS_URL,
    namespace: { subjectRoot: config.COFFER_SUBJECT_ROOT, streamPrefix: config.COFFER_STREAM_PREFIX },
    stream: streamSettingsFromEnv(config),
    logger,
    redactor,
    startupWaitMs: config.COFFER_STARTUP_WAIT_MS,
    migrations: configMigrations,
    migrationMode: config.COFFER_MIGRATIONS,
    preparedStatements: config.COFFER_DB_PREPARED_STATEMENTS,
  });
  // Mutual TLS on every port and channel when the three COFFER_TLS_* files are set.
  const tls = mtlsFromEnv(config);
  const channel = tls ? mtlsChannelCredentials(tls) : undefined;
  const secretsToken = createServiceTokenProvider({
    credentials: channel,
    authAddress: config.AUTH_ADDRESS,
    clientId: config.CONFIG_CLIENT_ID,
    clientSecret: config.CONFIG_CLIENT_SECRET,
    audience: 'secrets',
  });
  const secrets = createPromiseClient(secretsV1.SecretsServiceClient, config.SECRETS_ADDRESS, { tokenProvider: secretsToken, credentials: channel });
  const syncToken = createServiceTokenProvider({
    credentials: channel,
    authAddress: config.AUTH_ADDRESS,
    clientId: config.CONFIG_CLIENT_ID,
    clientSecret: config.CONFIG_CLIENT_SECRET,
    audience: 'sync-worker',
  });
  // The sync worker bounds each proxied call itself (SYNC_WORKER_PROXY_TIMEOUT_MS, at most 110 s).
  const syncWorker = createPromiseClient(syncV1.SyncServiceClient, config.SYNC_WORKER_ADDRESS, { tokenProvider: syncToken, credentials: channel, deadlineMs: 120_000 });
  const checkResults = createCheckResults(runtime.nc, runtime.namespace, logger);
  const service = createConfigService({
    db: runtime.db,
    store: runtime.store,
    schema: config.CONFIG_DB_SCHEMA,
    namespace: runtime.namespace,
    secrets: {
      write: async (workspaceId, writes, owner) =>
        void (await secrets.writeSecrets({ workspaceId, ownerId: owner.ownerId, ownerWorkspaceId: owner.ownerWorkspaceId ?? '', writeId: owner.writeId ?? '', secrets: writes.map((w) => ({ ...w, ttlSeconds: 0 })) })),
      delete: async (workspaceId, coordinates, ownerId, writeId) => void (await secrets.deleteSecrets({ workspaceId, coordinates, ownerId, writeId: writeId ?? '' })),
      deleteWorkspace: async (workspaceId) => void (await secrets.deleteWorkspaceSecrets({ workspaceId })),
      latestVersions: async (workspaceId, baseCoordinates) =>
        new Map((await secrets.getLatestSecretVersions({ workspaceId, baseCoordinates })).versions.map((v) => [v.baseCoordinate, Number(v.version)])),
      listVersions: async (workspaceId, baseCoordinate) =>
        (await secrets.listSecretVersions({ workspaceId, baseCoordinate })).versions.map((v) => ({ version: Number(v.version), state: v.state, createdAt: v.createdAt })),
      rollback: async (workspaceId, baseCoordinate, toVersion, expectedVersion, owner) =>
        void (await secrets.rollbackSecret({ workspaceId, baseCoordinate, toVersion, expectedVersion, ownerId: owner.ownerId, writeId: owner.writeId ?? '' })),
    },
    proxy: { forward: (request) => syncWorker.proxyRequest(request) },
    coordinatePrefix: config.COFFER_COORDINATE_PREFIX,
    maxConfigBytes: config.CONFIG_MAX_CONFIG_BYTES,
    maxSecretsPerConfig: config.CONFIG_MAX_SECRETS_PER_CONFIG,
    secretWritesPerWorkspace: { concurrent: config.CONFIG_CONCURRENT_SECRET_WRITES_PER_WORKSPACE, queued: config.CONFIG_QUEUED_SECRET_WRITES_PER_WORKSPACE },
    oauthCodeExchange: (input) => syncWorker.exchangeAuthorizationCode(input),
    oauthRedirectUris: config.CONFIG_OAUTH_REDIRECT_URIS,
    oauthFlowTtlMs: config.CONFIG_OAUTH_FLOW_TTL_SECONDS * 1000,
    checkResults,
    checkTimeoutMs: config.CONFIG_CHECK_TIMEOUT_SECONDS * 1000,
    writeIntentGraceMs: config.CONFIG_WRITE_INTENT_GRACE_SECONDS * 1000,
    fault: config.COFFER_FAULT_POINT
      ? (point) => {
          if (point !== config.COFFER_FAULT_POINT) return;
          // Written synchronously: nothing after this line runs, as after a kill -9.
          writeSync(2, `${JSON.stringify({ level: 'fatal', service: 'config', faultPoint: point, msg: 'fault injected: killing the process' })}\n`);
          process.kill(process.pid, 'SIGKILL');
        }
      : undefined,
    logger,
    clock: () => new Date(),
    newId: randomUUID,
  });
  await service.ensureBuiltins();
  // Orphaned secrets are shredded right after each change; this retries what secrets could not take
  // then, and shreds what changes that died between their secrets write and their event had written.
  const background = startBackgroundJobs(logger, [
    ['orphan shredding', config.CONFIG_SHRED_RETRY_SECONDS * 1000, () => service.shredNow()],
    ['interrupted write recovery', config.CONFIG_SHRED_RETRY_SECONDS * 1000, () => service.recoverInterruptedWrites()],
  ], { lease: runtime.jobLease });
  const tokens = await startTokenVerification({ runtime, issuer: config.COFFER_TOKEN_ISSUER, audience: 'config', authAddress: config.AUTH_ADDRESS, credentials: channel, acceptedKinds: ['service', ...userTokenKinds], failOpen: config.COFFER_REVOCATION_FAIL_OPEN });
  const verifier = tokens.verifier;
  const server = createGrpcServer({ services: [configGrpcService(service)], verifier, logger, ...(tls && { credentials: mtlsServerCredentials(tls), certificateIdentity: true }) });
  const port = await server.listen(config.CONFIG_GRPC_ADDRESS);
  announceListening(logger, 'config', port);
  const ops = await startOpsEndpoint({ service: 'config', address: config.CONFIG_METRICS_ADDRESS, telemetry, logger, checks: { ...runtime.readiness, jwks: tokens.ready } });
  onShutdown(logger, [
    ['ops endpoint', () => ops.close()],
    ['background jobs', () => background.stop()],
    ['grpc', () => server.shutdown()],
    ['secrets client', async () => {
      checkResults.close();
      secrets.close();
      secretsToken.close();
      syncWorker.close();
      syncToken.close();
    }],
    ['revocations', () => tokens.stop()],
    ['runtime', () => runtime.close()],
    ['telemetry', () => telemetry.shutdown()],
  ]);
} catch (err) {
  failStartup(logger, err);
}
