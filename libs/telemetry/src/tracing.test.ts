import { context, trace, TraceFlags } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from './logger';
import { currentTraceparent, startTelemetry, type Telemetry } from './tracing';

let telemetry: Telemetry;

// The SDK registers the async-context manager that makes an active span visible.
beforeAll(async () => {
  telemetry = await startTelemetry({ serviceName: 'coffer-test' });
});

afterAll(async () => {
  await telemetry.shutdown();
});

describe('currentTraceparent', () => {
  it('is undefined outside a trace', () => {
    expect(currentTraceparent()).toBeUndefined();
  });

  it('formats the active span context as a W3C traceparent', () => {
    const span = trace.wrapSpanContext({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.SAMPLED,
    });
    const tp = context.with(trace.setSpan(context.active(), span), () => currentTraceparent());
    expect(tp).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });
});

describe('startTelemetry', () => {
  it('without an exporter, gives a trace it starts real ids but does not record it', async () => {
    const tracer = trace.getTracer('telemetry-test');
    const { tp, recording } = await tracer.startActiveSpan('work', async (span) => {
      await new Promise((r) => setTimeout(r, 1));
      const value = { tp: currentTraceparent(), recording: span.isRecording() };
      span.end();
      return value;
    });
    expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(tp).not.toMatch(/^00-0{32}/);
    expect(recording).toBe(false);
  });

  it('without an exporter, records the spans of a trace its caller sampled, in the caller\'s trace', () => {
    const parent = trace.wrapSpanContext({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED });
    const { tp, recording } = context.with(trace.setSpan(context.active(), parent), () =>
      trace.getTracer('telemetry-test').startActiveSpan('child', (span) => {
        const value = { tp: currentTraceparent(), recording: span.isRecording() };
        span.end();
        return value;
      }),
    );
    expect(tp).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    expect(tp).not.toContain('b7ad6b7169203331');
    expect(recording).toBe(true);
  });

  it('puts the active trace and span ids into log lines', () => {
    const lines: string[] = [];
    const logger = createLogger({ service: 'test', destination: { write: (s: string) => void lines.push(s) } });
    logger.info('outside');
    trace.getTracer('telemetry-test').startActiveSpan('work', (span) => {
      logger.info('inside');
      span.end();
    });
    const [outside, inside] = lines.map((l) => JSON.parse(l));
    expect(outside.traceId).toBeUndefined();
    expect(inside.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(inside.spanId).toMatch(/^[0-9a-f]{16}$/);
  });
});
