import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';

/** gRPC methods that make no span: probes and reflection, called every few seconds by orchestrators and tools. */
export const UNTRACED_GRPC_METHODS = ['Check', 'Watch', 'List', 'ServerReflectionInfo'];

/**
 * @internal The instrumentation every service runs (registered by the preload module). Postgres
 * statements make a span only inside another span: a poller round (outbox relay, job lease, consumer
 * fetch) that finds nothing stays invisible, and a query made on behalf of a call or an event is a
 * child of it.
 */
export function instrumentations(): Instrumentation[] {
  return [
    new GrpcInstrumentation({ ignoreGrpcMethods: UNTRACED_GRPC_METHODS }),
    // Statement text only, never parameter values: parameters carry ciphertext and wrapped keys.
    new PgInstrumentation({ enhancedDatabaseReporting: false, requireParentSpan: true }),
  ];
}
