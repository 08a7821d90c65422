import { randomUUID } from 'node:crypto';
import { configV1, isCofferError } from '@coffer/contracts';
import { createGrpcServer, createPromiseClient, mtlsChannelCredentials, mtlsServerCredentials } from '@coffer/rpc';
import { announceListening, failStartup, loadSettingsOrExit, logSecurityFindings, mtlsFromEnv, onShutdown, startBackgroundJobs, startOpsEndpoint, startRuntime, watchRevocations } from '@coffer/runtime';
import { streamSettingsFromEnv } from '@coffer/runtime';
import { createLogger, createRedactor, startTelemetry } from '@coffer/telemetry';
import { createTokenVerifier, userTokenKinds } from '@coffer/tokens';
import { authGrpcService } from './auth.grpc';
import { pruneLoginAttempts } from './auth.postgres';
import type { AuthDatabase } from './auth.database';
import { authMigrations } from './auth.migrations';
import { createAuthService, type ProvisionWorkspace, type WorkspaceOrganization } from './auth.service';
import { loadAuthConfig } from './config';
import { createSigningKeyRing, signServiceToken } from './signing-keys';

const config = loadSettingsOrExit(() => loadAuthConfig(process.env));
const telemetry = await startTelemetry({ serviceName: 'coffer-auth', otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT, prometheus: Boolean(config.AUTH_METRICS_ADDRESS) });
const redactor = createRedactor();
for (const identity of config.AUTH_SERVICE_IDENTITIES) redactor.register(identity.clientSecret);
redactor.register(config.AUTH_SIGNING_KEY);
const logger = createLogger({ service: 'auth', level: config.LOG_LEVEL, redactor });

logSecurityFindings(logger, config);

try {
  const runtime = await startRuntime<AuthDatabase>({
    service: 'auth',
    appName: 'coffer-auth',
    databaseUrl: config.DATABASE_URL,
    schema: config.AUTH_DB_SCHEMA,
    natsUrl: config.NATS_URL,
    namespace: { subjectRoot: config.COFFER_SUBJECT_ROOT, streamPrefix: config.COFFER_STREAM_PREFIX },
    stream: streamSettingsFromEnv(config),
    logger,
    redactor,
    startupWaitMs: config.COFFER_STARTUP_WAIT_MS,
    migrations: authMigrations,
    migrationMode: config.COFFER_MIGRATIONS,
    preparedStatements: config.COFFER_DB_PREPARED_STATEMENTS,
  });
  // Mutual TLS on every port and channel when the three COFFER_TLS_* files are set.
  const tls = mtlsFromEnv(config);
  const lifetimes = {
    service: config.AUTH_SERVICE_TOKEN_TTL_SECONDS,
    application: config.AUTH_APPLICATION_TOKEN_TTL_SECONDS,
    scoped: config.AUTH_SCOPED_TOKEN_TTL_SECONDS,
    widget: config.AUTH_WIDGET_TOKEN_TTL_SECONDS,
  };
  const longestTokenMs = Math.max(...Object.values(lifetimes)) * 1000;
  const ring = await createSigningKeyRing({
    db: runtime.db,
    store: runtime.store,
    schema: config.AUTH_DB_SCHEMA,
    namespace: runtime.namespace,
    rootKeyJwk: config.AUTH_SIGNING_KEY,
    rotationIntervalMs: config.AUTH_SIGNING_KEY_ROTATION_SECONDS * 1000,
    // A replaced key stays published until the last token it signed has expired, plus clock skew.
    retireAfterMs: longestTokenMs + 60_000,
    clock: () => new Date(),
    newId: randomUUID,
  });
  await ring.init();

  // auth provisions end users' workspaces at config with a service token it signs for itself.
  let provisionWorkspace: ProvisionWorkspace | undefined;
  let workspaceOrganization: WorkspaceOrganization | undefined;
  if (config.CONFIG_ADDRESS) {
    const configClient = createPromiseClient(configV1.ConfigServiceClient, config.CONFIG_ADDRESS, {
      credentials: tls ? mtlsChannelCredentials(tls) : undefined,
      tokenProvider: async () =>
        signServiceToken(await ring.active(), {
          issuer: config.COFFER_TOKEN_ISSUER,
          subject: 'auth',
          audience: 'config',
          role: 'auth',
          tokenId: randomUUID(),
          issuedAt: new Date(),
          ttlSeconds: 300,
        }),
    });
    provisionWorkspace = async (organizationId, externalUserId) => {
      const res = await configClient.provisionWorkspace({ name: `end user ${externalUserId}`, organizationId, externalUserId });
      return res.workspace!.workspaceId;
    };
    // A scoped token is issued only for a live workspace of the caller's organization.
    workspaceOrganization = async (workspaceId) => {
      try {
        return (await configClient.getWorkspace({ workspaceId })).workspace?.organizationId;
      } catch (err) {
        if (isCofferError(err) && err.code === 'not_found') return undefined;
        throw err;
      }
    };
  }

  const service = createAuthService({
    db: runtime.db,
    store: runtime.store,
    schema: config.AUTH_DB_SCHEMA,
    namespace: runtime.namespace,
    signingKey: () => ring.active(),
    jwks: () => ring.jwks(),
    issuer: config.COFFER_TOKEN_ISSUER,
    lifetimes,
    audiences: ['auth', 'config', 'secrets', 'sync-worker'],
    secretGraceMs: config.AUTH_APPLICATION_SECRET_GRACE_SECONDS * 1000,
    provisionWorkspace,
    workspaceOrganization,
    lockoutPolicy: {
      maxFailures: config.AUTH_LOCKOUT_MAX_FAILURES,
      windowMs: config.AUTH_LOCKOUT_WINDOW_SECONDS * 1000,
      lockMs: config.AUTH_LOCKOUT_SECONDS * 1000,
    },
    clock: () => new Date(),
    newId: randomUUID,
  });
  await service.registerIdentities(config.AUTH_SERVICE_IDENTITIES);
  const revocations = watchRevocations({ nc: runtime.nc, namespace: runtime.namespace, logger, lookbackMs: longestTokenMs + 60_000, failOpen: config.COFFER_REVOCATION_FAIL_OPEN });
  await revocations.ready;
  const verifier = createTokenVerifier({
    issuer: config.COFFER_TOKEN_ISSUER,
    audience: 'auth',
    fetchJwks: () => ring.jwks(),
    acceptedKinds: ['service', ...userTokenKinds],
    // Public methods (IssueServiceToken, GetJwks, IssueApplicationToken) need no token, so peers can
    // start while revocations are not loaded; calls with a token answer UNAVAILABLE until they are.
    revocations: revocations.check,
    minRefetchIntervalMs: 1_000,
  });
  const jobs = startBackgroundJobs(logger, [
    ['signing-key-rotation', 60_000, () => ring.rotateIfDue()],
    ['login-attempts-prune', 300_000, () => pruneLoginAttempts(runtime.db, config.AUTH_DB_SCHEMA, config.AUTH_LOCKOUT_WINDOW_SECONDS * 1000, new Date())],
  ], { lease: runtime.jobLease });
  const server = createGrpcServer({ services: [authGrpcService(service, ring)], verifier, logger, ...(tls && { credentials: mtlsServerCredentials(tls), certificateIdentity: true }) });
  const port = await server.listen(config.AUTH_GRPC_ADDRESS);
  announceListening(logger, 'auth', port);
  // JWKS: auth's own signing keys answer; revocations: the list its tokens are checked against is current.
  const ops = await startOpsEndpoint({ service: 'auth', address: config.AUTH_METRICS_ADDRESS, telemetry, logger, checks: { ...runtime.readiness, jwks: () => ring.jwks(), revocations: async () => revocations.check.assertCurrent?.() } });
  onShutdown(logger, [
    ['ops endpoint', () => ops.close()],
    ['grpc', () => server.shutdown()],
    ['jobs', () => jobs.stop()],
    ['revocations', () => revocations.stop()],
    ['runtime', () => runtime.close()],
    ['telemetry', () => telemetry.shutdown()],
  ]);
} catch (err) {
  failStartup(logger, err);
}
