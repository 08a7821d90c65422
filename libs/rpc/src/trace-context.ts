import type * as grpc from '@grpc/grpc-js';
import { context, isSpanContextValid, propagation, trace } from '@opentelemetry/api';

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * @internal The trace id of the current call: the active span's when OpenTelemetry runs, otherwise the
 * one the caller sent in `traceparent`, so logs still correlate across services without an SDK.
 */
export function traceIdOf(metadata: grpc.Metadata): string | undefined {
  const span = trace.getActiveSpan()?.spanContext();
  if (span && isSpanContextValid(span)) return span.traceId;
  const header = metadata.get('traceparent')[0];
  if (typeof header !== 'string') return undefined;
  const match = TRACEPARENT.exec(header.trim());
  return match && !/^0+$/.test(match[1]!) ? match[1] : undefined;
}

/**
 * @internal Adds the active trace context to outgoing metadata: the globally registered propagator
 * (W3C when the telemetry SDK runs) and, when none is registered, a W3C `traceparent` built from the
 * active span so the trace still crosses the hop.
 */
export function injectTraceContext(metadata: grpc.Metadata): void {
  const active = context.active();
  const carrier: Record<string, string> = {};
  propagation.inject(active, carrier);
  if (!carrier.traceparent) {
    const span = trace.getSpanContext(active);
    if (span && isSpanContextValid(span)) {
      carrier.traceparent = `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
    }
  }
  for (const [key, value] of Object.entries(carrier)) metadata.set(key, value);
}
