import { context, metrics, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Context, type Span } from '@opentelemetry/api';

const SCOPE = '@coffer/messaging';

/** @internal Creates the instruments on first use: the meter provider is registered at start-up, after modules load. */
export function lazily<T>(make: () => T): () => T {
  let made: T | undefined;
  return () => (made ??= make());
}

/** @internal The parent context a message's W3C trace headers name (the root context without them). */
export function contextOfHeaders(headers: Record<string, string>): Context {
  const carrier: Record<string, string> = {};
  if (headers.traceparent) carrier.traceparent = headers.traceparent;
  if (headers.tracestate) carrier.tracestate = headers.tracestate;
  return propagation.extract(ROOT_CONTEXT, carrier);
}

/** @internal The W3C trace headers of a context (traceparent and tracestate only, never baggage). */
export function traceHeadersOf(ctx: Context): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  const out: Record<string, string> = {};
  if (carrier.traceparent) out.traceparent = carrier.traceparent;
  if (carrier.tracestate) out.tracestate = carrier.tracestate;
  return out;
}

/** @internal Whether a context carries a valid (possibly remote) span. */
export function hasSpan(ctx: Context): boolean {
  const sc = trace.getSpanContext(ctx);
  return sc !== undefined && trace.isSpanContextValid(sc);
}

/** @internal Whether a context carries a valid span of a trace its starter sampled. */
export function hasSampledSpan(ctx: Context): boolean {
  const sc = trace.getSpanContext(ctx);
  return sc !== undefined && trace.isSpanContextValid(sc) && (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
}

/** @internal Runs `work` in a span of the given kind, ending it with the outcome. */
export async function inSpan<T>(name: string, kind: SpanKind, parent: Context, attributes: Record<string, string | number>, work: (span: Span) => Promise<T>): Promise<T> {
  const span = trace.getTracer(SCOPE).startSpan(name, { kind, attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => work(span));
  } catch (err) {
    // The error's class only: messages may quote the data a handler choked on.
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.name : 'error' });
    throw err;
  } finally {
    span.end();
  }
}

/** @internal The publisher's instruments. */
export const publishMetrics = lazily(() => {
  const meter = metrics.getMeter(SCOPE);
  return {
    published: meter.createCounter('coffer.outbox.published', { description: 'events the outbox relay published and JetStream acknowledged' }),
    lag: meter.createHistogram('coffer.outbox.relay.lag', {
      unit: 'ms',
      description: 'time from an event being recorded to JetStream acknowledging its publication',
      advice: { explicitBucketBoundaries: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000] },
    }),
  };
});

/** @internal The consumer's instruments. */
export const consumerMetrics = lazily(() => {
  const meter = metrics.getMeter(SCOPE);
  return {
    handled: meter.createCounter('coffer.consumer.messages', { description: 'messages a durable consumer finished, by outcome (acked, retried, dead_lettered)' }),
    redeliveries: meter.createCounter('coffer.consumer.redeliveries', { description: 'messages delivered again after a failed or lapsed attempt' }),
    deadLetters: meter.createCounter('coffer.consumer.dead_letters', { description: 'messages sent to the dead-letter subject, by reason' }),
    duration: meter.createHistogram('coffer.consumer.duration', { unit: 'ms', description: 'time a handler took for one message, retries in place included' }),
    pending: meter.createObservableGauge('coffer.consumer.pending', { description: 'messages of the stream the durable consumer has not been delivered yet' }),
  };
});
