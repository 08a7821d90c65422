import { context, defaultTextMapSetter } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { core, NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, NoopSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

/** Options of `startTelemetry`. */
export interface TelemetryOptions {
  /** `service.name` of every span, e.g. `coffer-secrets`. */
  serviceName: string;
  /** OTLP gRPC endpoint of a collector, e.g. `http://127.0.0.1:4317`; without it nothing is exported. */
  otlpEndpoint?: string;
}

/** A started telemetry SDK. */
export interface Telemetry {
  /** Flushes pending spans and stops the SDK. */
  shutdown(): Promise<void>;
}

const w3c = new core.W3CTraceContextPropagator();

/**
 * Starts OpenTelemetry tracing with gRPC and Postgres instrumentation. Spans are always created (so
 * trace ids reach logs and event headers) but only exported when an endpoint is given.
 */
export async function startTelemetry(options: TelemetryOptions): Promise<Telemetry> {
  const spanProcessor = options.otlpEndpoint
    ? new BatchSpanProcessor(new OTLPTraceExporter({ url: options.otlpEndpoint }))
    : new NoopSpanProcessor();
  const sdk = new NodeSDK({
    // Only service.name: process/host detectors would record command-line arguments, which can hold secrets.
    autoDetectResources: false,
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName }),
    spanProcessors: [spanProcessor],
    textMapPropagator: new core.CompositePropagator({ propagators: [w3c, new core.W3CBaggagePropagator()] }),
    // Empty lists, not absent: absent makes the SDK build OTLP metric and log exporters from its defaults.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [
      new GrpcInstrumentation(),
      // Statement text only, never parameter values: parameters carry ciphertext and wrapped keys.
      new PgInstrumentation({ enhancedDatabaseReporting: false }),
    ],
  });
  sdk.start();
  return {
    shutdown: () => sdk.shutdown(),
  };
}

/** The W3C `traceparent` of the active span, for event metadata and CloudEvents headers; undefined outside a trace. */
export function currentTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  w3c.inject(context.active(), carrier, defaultTextMapSetter);
  return carrier.traceparent;
}
