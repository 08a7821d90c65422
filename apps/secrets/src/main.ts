import { randomUUID } from 'node:crypto';
import { createGrpcServer } from '@coffer/rpc';
import { announceListening, failStartup, jwksFromAuth, onShutdown, startRuntime } from '@coffer/runtime';
import { createLogger, createRedactor, startTelemetry } from '@coffer/telemetry';
import { createTokenVerifier } from '@coffer/tokens';
import { loadSecretsConfig } from './config';
import { loadLocalKms } from './kms/local-kms';
import { secretsGrpcService } from './secrets.grpc';
import { migrateSecretsReadModel } from './secrets.postgres';
import { createSecretsService } from './secrets.service';

const config = loadSecretsConfig(process.env);
const telemetry = await startTelemetry({ serviceName: 'coffer-secrets', otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT });
const redactor = createRedactor();
const logger = createLogger({ service: 'secrets', level: config.LOG_LEVEL, redactor });

try {
  const kms = await loadLocalKms(config.SECRETS_LOCAL_KEYRING_FILE);
  logger.warn({ kms: kms.provider }, 'the local KMS provider keeps its key in a file: development only');
  const runtime = await startRuntime({
    service: 'secrets',
    appName: 'coffer-secrets',
    databaseUrl: config.DATABASE_URL,
    schema: config.SECRETS_DB_SCHEMA,
    natsUrl: config.NATS_URL,
    namespace: { subjectRoot: config.COFFER_SUBJECT_ROOT, streamPrefix: config.COFFER_STREAM_PREFIX },
    logger,
    redactor,
    migrate: migrateSecretsReadModel,
  });
  const service = createSecretsService({
    db: runtime.db,
    store: runtime.store,
    kms,
    schema: config.SECRETS_DB_SCHEMA,
    coordinatePrefix: config.COFFER_COORDINATE_PREFIX,
    namespace: runtime.namespace,
    ephemeralTtlMs: config.SECRETS_EPHEMERAL_TTL_SECONDS * 1000,
    clock: () => new Date(),
    newId: randomUUID,
  });
  const verifier = createTokenVerifier({
    issuer: config.COFFER_TOKEN_ISSUER,
    audience: 'secrets',
    fetchJwks: jwksFromAuth(config.AUTH_ADDRESS),
  });
  const server = createGrpcServer({ services: [secretsGrpcService(service)], verifier, logger });
  const port = await server.listen(config.SECRETS_GRPC_ADDRESS);
  announceListening(logger, 'secrets', port);
  onShutdown(logger, [
    ['grpc', () => server.shutdown()],
    ['runtime', () => runtime.close()],
    ['telemetry', () => telemetry.shutdown()],
  ]);
} catch (err) {
  failStartup(logger, err);
}
