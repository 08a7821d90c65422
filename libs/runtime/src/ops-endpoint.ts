import { startOpsServer, type Logger, type ReadinessCheck, type Telemetry } from '@coffer/telemetry';

/** Options of {@link startOpsEndpoint}. */
export interface OpsEndpointOptions {
  service: string;
  /** `<SERVICE>_METRICS_ADDRESS`; unset or empty, nothing listens. */
  address: string | undefined;
  telemetry: Telemetry;
  /** `/readyz` checks: the runtime's (`postgres`, `nats`) and the service's own (`jwks`, `kms`). */
  checks: Record<string, ReadinessCheck>;
  logger: Logger;
}

/**
 * Starts `/healthz`, `/readyz` and `/metrics` on the service's metrics address, when one is set, and
 * logs the bound port (`event: "ops_listening"`). `close` stops it (a no-op when nothing listens).
 */
export async function startOpsEndpoint(options: OpsEndpointOptions): Promise<{ port?: number; close(): Promise<void> }> {
  if (!options.address) return { close: async () => undefined };
  const server = await startOpsServer({ address: options.address, checks: options.checks, telemetry: options.telemetry });
  options.logger.info({ event: 'ops_listening', service: options.service, port: server.port }, 'health and metrics endpoint listening');
  return { port: server.port, close: () => server.close() };
}
