import { randomUUID } from 'node:crypto';
import { createGrpcServer } from '@coffer/rpc';
import { announceListening, failStartup, onShutdown, startRuntime } from '@coffer/runtime';
import { createLogger, createRedactor, startTelemetry } from '@coffer/telemetry';
import { authGrpcService } from './auth.grpc';
import { migrateAuthReadModel } from './auth.postgres';
import { createAuthService } from './auth.service';
import { loadAuthConfig } from './config';
import { importSigningKey } from './signing-keys';

const config = loadAuthConfig(process.env);
const telemetry = await startTelemetry({ serviceName: 'coffer-auth', otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT });
const redactor = createRedactor();
for (const identity of config.AUTH_SERVICE_IDENTITIES) redactor.register(identity.clientSecret);
const logger = createLogger({ service: 'auth', level: config.LOG_LEVEL, redactor });

try {
  const signingKey = await importSigningKey(config.AUTH_SIGNING_KEY);
  const runtime = await startRuntime({
    service: 'auth',
    appName: 'coffer-auth',
    databaseUrl: config.DATABASE_URL,
    schema: config.AUTH_DB_SCHEMA,
    natsUrl: config.NATS_URL,
    namespace: { subjectRoot: config.COFFER_SUBJECT_ROOT, streamPrefix: config.COFFER_STREAM_PREFIX },
    logger,
    redactor,
    migrate: migrateAuthReadModel,
  });
  const service = createAuthService({
    db: runtime.db,
    store: runtime.store,
    schema: config.AUTH_DB_SCHEMA,
    namespace: runtime.namespace,
    signingKey,
    issuer: config.COFFER_TOKEN_ISSUER,
    serviceTokenTtlSeconds: config.AUTH_SERVICE_TOKEN_TTL_SECONDS,
    audiences: ['auth', 'config', 'secrets', 'sync-worker'],
    lockoutPolicy: {
      maxFailures: config.AUTH_LOCKOUT_MAX_FAILURES,
      windowMs: config.AUTH_LOCKOUT_WINDOW_SECONDS * 1000,
      lockMs: config.AUTH_LOCKOUT_SECONDS * 1000,
    },
    clock: () => new Date(),
    newId: randomUUID,
  });
  await service.registerIdentities(config.AUTH_SERVICE_IDENTITIES);
  const server = createGrpcServer({ services: [authGrpcService(service)], logger });
  const port = await server.listen(config.AUTH_GRPC_ADDRESS);
  announceListening(logger, 'auth', port);
  onShutdown(logger, [
    ['grpc', () => server.shutdown()],
    ['runtime', () => runtime.close()],
    ['telemetry', () => telemetry.shutdown()],
  ]);
} catch (err) {
  failStartup(logger, err);
}
