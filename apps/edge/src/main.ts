import { announceListening, failStartup, jwksFromAuth, loadSettingsOrExit, mtlsFromEnv, onShutdown, waitForDependency } from '@coffer/runtime';
import { mtlsChannelCredentials } from '@coffer/rpc';
import { createLogger, createRedactor, startTelemetry } from '@coffer/telemetry';
import { createTokenVerifier, userTokenKinds } from '@coffer/tokens';
import { loadEdgeConfig } from './config';
import { createEdgeServer } from './edge-server';
import { forwardedMethods } from './forwarded-methods';
import { createRateLimiter } from './rate-limiter';
import { createUpstreams } from './upstream';

const config = loadSettingsOrExit(() => loadEdgeConfig(process.env));
const telemetry = await startTelemetry({ serviceName: 'coffer-edge', otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT });
const logger = createLogger({ service: 'edge', level: config.LOG_LEVEL, redactor: createRedactor() });

try {
  // Mutual TLS to auth and config when the three COFFER_TLS_* files are set.
  const tls = mtlsFromEnv(config);
  const channel = tls ? mtlsChannelCredentials(tls) : undefined;
  const fetchJwks = jwksFromAuth(config.AUTH_ADDRESS, channel);
  await waitForDependency(() => fetchJwks(), { what: "auth's JWKS", setting: 'AUTH_ADDRESS', totalMs: config.COFFER_STARTUP_WAIT_MS, logger });
  // The edge checks tokens itself for its browser and rate-limit decisions; the services check them again, revocations included.
  const verifier = createTokenVerifier({ issuer: config.COFFER_TOKEN_ISSUER, audience: 'config', fetchJwks, acceptedKinds: userTokenKinds });
  const upstreams = createUpstreams({ auth: config.AUTH_ADDRESS, config: config.CONFIG_ADDRESS }, channel);
  const server = createEdgeServer({
    methods: forwardedMethods(),
    upstreams,
    verifier,
    limiter: createRateLimiter({ perSecond: config.EDGE_RATE_PER_SECOND, burst: config.EDGE_RATE_BURST }),
    anonymousLimiter: createRateLimiter({ perSecond: config.EDGE_ANONYMOUS_RATE_PER_SECOND, burst: config.EDGE_ANONYMOUS_RATE_BURST }),
    logger,
    allowedOrigins: config.EDGE_ALLOWED_ORIGINS,
    maxRequestBytes: config.EDGE_MAX_REQUEST_BYTES,
    defaultDeadlineMs: config.EDGE_UPSTREAM_DEADLINE_MS,
  });
  const port = await server.listen(config.EDGE_HTTP_ADDRESS);
  announceListening(logger, 'edge', port);
  onShutdown(logger, [
    ['http', () => server.close()],
    ['upstreams', async () => upstreams.close()],
    ['telemetry', () => telemetry.shutdown()],
  ]);
} catch (err) {
  failStartup(logger, err);
}
