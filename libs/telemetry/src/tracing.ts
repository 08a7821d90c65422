import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, defaultTextMapGetter, defaultTextMapSetter, metrics, ROOT_CONTEXT, type Context } from '@opentelemetry/api';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';
import type { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
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
  /** Flushes pending spans and metrics (what an unreachable collector refuses is dropped) and stops the SDK. */
  shutdown(): Promise<void>;
}

const w3c = new W3CTraceContextPropagator();

/**
 * Starts OpenTelemetry. With an OTLP endpoint: the tracer provider (every trace recorded and
 * exported), the W3C propagator and the async context, so spans join the caller's trace and carry it
 * on; the gRPC and Postgres instrumentation is registered by the preload module (`--import
 * @coffer/telemetry/preload`), which must run before those packages load and does so only when the
 * endpoint is set. Without an endpoint there is no tracing at all (no async context, no span, no
 * propagation): it would cost every call and statement and show nobody anything; log lines then carry
 * the trace id of the caller's `traceparent`. Metrics are pushed over OTLP with the endpoint and kept
 * for a scrape with `prometheus`.
 */
export async function startTelemetry(options: TelemetryOptions): Promise<Telemetry> {
  // Only service.name: process/host detectors would record command-line arguments, which can hold secrets.
  const resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName });
  // Exporters are loaded only when asked for: each pulls in a protocol stack that costs start-up time and memory.
  const metricReaders: IMetricReader[] = [];
  let tracerProvider: NodeTracerProvider | undefined;
  if (options.otlpEndpoint) {
    const [{ OTLPTraceExporter }, { OTLPMetricExporter }, { NodeTracerProvider }, { BatchSpanProcessor }] = await Promise.all([
      import('@opentelemetry/exporter-trace-otlp-grpc'),
      import('@opentelemetry/exporter-metrics-otlp-grpc'),
      import('@opentelemetry/sdk-trace-node'),
      import('@opentelemetry/sdk-trace-base'),
    ]);
    tracerProvider = new NodeTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: options.otlpEndpoint }))] });
    // Registers the async-hooks context manager and the propagators along with the provider.
    tracerProvider.register({ propagator: new CompositePropagator({ propagators: [w3c, new W3CBaggagePropagator()] }) });
    metricReaders.push(
      new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter({ url: options.otlpEndpoint }), exportIntervalMillis: options.metricExportIntervalMs ?? 60_000 }),
    );
  }
  // Served by our own HTTP server (with the health endpoints), not the exporter's.
  const prometheus = options.prometheus ? new (await import('@opentelemetry/exporter-prometheus')).PrometheusExporter({ preventServerStart: true }) : undefined;
  if (prometheus) metricReaders.push(prometheus);
  const meterProvider = new MeterProvider({ resource, readers: metricReaders });
  metrics.setGlobalMeterProvider(meterProvider);
  return {
    prometheusHandler: prometheus && ((req, res) => prometheus.getMetricsRequestHandler(req, res)),
    // A collector that is down at shutdown loses the last spans and metrics, never the shutdown.
    shutdown: async () => {
      await Promise.allSettled([tracerProvider?.shutdown(), meterProvider.shutdown()]);
    },
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
