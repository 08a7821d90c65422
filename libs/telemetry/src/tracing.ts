import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, type Context } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';
import { core, NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, NoopSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

/** Options of `startTelemetry`. */
export interface TelemetryOptions {
  /** `service.name` of every span and metric, e.g. `coffer-secrets`. */
  serviceName: string;
  /** OTLP gRPC endpoint of a collector, e.g. `http://127.0.0.1:4317`; without it nothing is exported over OTLP. */
  otlpEndpoint?: string;
  /** How often metrics are pushed to `otlpEndpoint` (default 60 s). */
  metricExportIntervalMs?: number;
  /** Keep metrics for a Prometheus scrape (served by `startOpsServer` at `/metrics`). */
  prometheus?: boolean;
}

/** A started telemetry SDK. */
export interface Telemetry {
  /** Writes the Prometheus text exposition of every metric; undefined unless `prometheus` was asked for. */
  prometheusHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Flushes pending spans and metrics and stops the SDK. */
  shutdown(): Promise<void>;
}

const w3c = new core.W3CTraceContextPropagator();

/**
 * Starts OpenTelemetry: the tracer and meter providers, the W3C propagator and the async context.
 * Spans are always created (so trace ids reach logs and event headers) but exported only when an
 * endpoint is given; metrics are pushed over OTLP with the endpoint and kept for a scrape with
 * `prometheus`. The gRPC and Postgres instrumentation is registered by the preload module
 * (`--import @coffer/telemetry/preload`), which must run before those packages load.
 */
export async function startTelemetry(options: TelemetryOptions): Promise<Telemetry> {
  const spanProcessor = options.otlpEndpoint
    ? new BatchSpanProcessor(new OTLPTraceExporter({ url: options.otlpEndpoint }))
    : new NoopSpanProcessor();
  const metricReaders: IMetricReader[] = [];
  if (options.otlpEndpoint) {
    metricReaders.push(
      new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter({ url: options.otlpEndpoint }), exportIntervalMillis: options.metricExportIntervalMs ?? 60_000 }),
    );
  }
  // Served by our own HTTP server (with the health endpoints), not the exporter's.
  const prometheus = options.prometheus ? new PrometheusExporter({ preventServerStart: true }) : undefined;
  if (prometheus) metricReaders.push(prometheus);
  const sdk = new NodeSDK({
    // Only service.name: process/host detectors would record command-line arguments, which can hold secrets.
    autoDetectResources: false,
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName }),
    spanProcessors: [spanProcessor],
    textMapPropagator: new core.CompositePropagator({ propagators: [w3c, new core.W3CBaggagePropagator()] }),
    // Empty lists, not absent: absent makes the SDK build OTLP metric and log exporters from its defaults.
    metricReaders,
    logRecordProcessors: [],
    // Registered by the preload module, before the instrumented packages load.
    instrumentations: [],
  });
  sdk.start();
  return {
    prometheusHandler: prometheus && ((req, res) => prometheus.getMetricsRequestHandler(req, res)),
    shutdown: () => sdk.shutdown(),
  };
}

/** The W3C `traceparent` of the active span, for event metadata and CloudEvents headers; undefined outside a trace. */
export function currentTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  w3c.inject(context.active(), carrier, defaultTextMapSetter);
  return carrier.traceparent;
}

/** A context whose remote parent is the span a W3C `traceparent` names (the root context when it is missing or malformed). */
export function contextOfTraceparent(traceparent: string | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return w3c.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter);
}
