import { createGrpcServer, mtlsChannelCredentials, mtlsServerCredentials } from '@coffer/rpc';
import { announceListening, failStartup, loadSettingsOrExit, logSecurityFindings, mtlsFromEnv, onShutdown, startTokenVerification, startBackgroundJobs, startOpsEndpoint, startRuntime } from '@coffer/runtime';
import { streamSettingsFromEnv } from '@coffer/runtime';
import { createLogger, createRedactor, startTelemetry } from '@coffer/telemetry';
import { loadSecretsConfig } from './config';
import { loadKms } from './kms/load-kms';
import { measuredKms } from './kms/measured-kms';
import { secretsGrpcService } from './secrets.grpc';
import type { SecretsDatabase } from './secrets.database';
import { secretsMigrations } from './secrets.migrations';
import { secretsChainOf, secretsServiceFromConfig } from './secrets.service';
import { observeActiveVersions } from './versions-gauge';

const config = loadSettingsOrExit(() => loadSecretsConfig(process.env));
const telemetry = await startTelemetry({ serviceName: 'coffer-secrets', otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT, prometheus: Boolean(config.SECRETS_METRICS_ADDRESS) });
const redactor = createRedactor();
const logger = createLogger({ service: 'secrets', level: config.LOG_LEVEL, redactor });

logSecurityFindings(logger, config);

try {
  const kms = measuredKms(await loadKms(config));
  if (kms.provider === 'local') logger.warn({ kms: kms.provider }, 'the local KMS provider keeps its key in a file: development only');
  const runtime = await startRuntime<SecretsDatabase>({
    service: 'secrets',
    appName: 'coffer-secrets',
    databaseUrl: config.DATABASE_URL,
    schema: config.SECRETS_DB_SCHEMA,
    natsUrl: config.NATS_URL,
    namespace: { subjectRoot: config.COFFER_SUBJECT_ROOT, streamPrefix: config.COFFER_STREAM_PREFIX },
    stream: streamSettingsFromEnv(config),
    logger,
    redactor,
    startupWaitMs: config.COFFER_STARTUP_WAIT_MS,
    migrations: secretsMigrations,
    migrationMode: config.COFFER_MIGRATIONS,
    preparedStatements: config.COFFER_DB_PREPARED_STATEMENTS,
    chainOf: secretsChainOf,
  });
  const service = secretsServiceFromConfig(config, { db: runtime.db, store: runtime.store, kms });
  observeActiveVersions(runtime.db, config.SECRETS_DB_SCHEMA);
  const background = startBackgroundJobs(logger, [
    ['expiry sweep', config.SECRETS_EXPIRY_SWEEP_SECONDS * 1000, () => service.expireDue()],
    // Also resumes a re-wrap a crash left half-done.
    ['KEK rotation', config.SECRETS_KEK_ROTATION_CHECK_SECONDS * 1000, () => service.rotateIfDue({ subject: 'secrets-rotation-schedule' })],
  ], { lease: runtime.jobLease });
  // Mutual TLS on every port and channel when the three COFFER_TLS_* files are set.
  const tls = mtlsFromEnv(config);
  const tokens = await startTokenVerification({
    runtime,
    issuer: config.COFFER_TOKEN_ISSUER,
    audience: 'secrets',
    authAddress: config.AUTH_ADDRESS,
    credentials: tls ? mtlsChannelCredentials(tls) : undefined,
    failOpen: config.COFFER_REVOCATION_FAIL_OPEN,
  });
  const verifier = tokens.verifier;
  const server = createGrpcServer({ services: [
      secretsGrpcService(service, {
        writesPerWorkspace: config.SECRETS_CONCURRENT_WRITES_PER_WORKSPACE,
        hydratesPerWorkspace: config.SECRETS_CONCURRENT_HYDRATES_PER_WORKSPACE,
        queuedPerWorkspace: config.SECRETS_QUEUED_CALLS_PER_WORKSPACE,
        writeRatePerWorkspace: config.SECRETS_WRITE_RATE_PER_WORKSPACE,
        writeBurstPerWorkspace: config.SECRETS_MAX_SECRETS_PER_REQUEST,
      }),
    ], verifier, logger, ...(tls && { credentials: mtlsServerCredentials(tls), certificateIdentity: true }) });
  const port = await server.listen(config.SECRETS_GRPC_ADDRESS);
  announceListening(logger, 'secrets', port);
  // kms: the provider lists its KEK versions (a call to the HSM or cloud KMS for those providers).
  const ops = await startOpsEndpoint({ service: 'secrets', address: config.SECRETS_METRICS_ADDRESS, telemetry, logger, checks: { ...runtime.readiness, jwks: tokens.ready, kms: () => kms.versions() } });
  onShutdown(logger, [
    ['ops endpoint', () => ops.close()],
    ['background jobs', () => background.stop()],
    ['grpc', () => server.shutdown()],
    ['revocations', () => tokens.stop()],
    ['runtime', () => runtime.close()],
    ['kms', () => kms.close()],
    ['telemetry', () => telemetry.shutdown()],
  ]);
} catch (err) {
  failStartup(logger, err);
}
