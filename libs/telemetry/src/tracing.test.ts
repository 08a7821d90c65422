import { context, propagation, trace, TraceFlags } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from './logger';
import { currentTraceparent, startTelemetry, type Telemetry } from './tracing';

// Nothing listens there: spans are recorded and their export fails, which is all these tests need.
const UNREACHABLE_COLLECTOR = 'http://127.0.0.1:9';
const parentSpan = trace.wrapSpanContext({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED });

/** Runs `fn` in an active span of the registered tracer; what it saw and whether the span recorded. */
function inActiveSpan<T>(fn: () => T): { value: T; recording: boolean } {
  return trace.getTracer('telemetry-test').startActiveSpan('work', (span) => {
    const value = fn();
    const recording = span.isRecording();
    span.end();
    return { value, recording };
  });
}

describe('startTelemetry without an OTLP endpoint', () => {
  let telemetry: Telemetry;
  beforeAll(async () => {
    telemetry = await startTelemetry({ serviceName: 'coffer-test' });
  });
  afterAll(async () => {
    await telemetry.shutdown();
  });

  it('traces nothing: a span is not recorded, has no trace id and is not propagated', async () => {
    const { value: tp, recording } = inActiveSpan(() => currentTraceparent());
    expect(recording).toBe(false);
    expect(tp).toBeUndefined();
    // No async context either: a caller's span set as active does not reach the next tick.
    const seen = await context.with(trace.setSpan(context.active(), parentSpan), async () => {
      await new Promise((r) => setTimeout(r, 1));
      return currentTraceparent();
    });
    expect(seen).toBeUndefined();
  });

  it('log lines carry no trace id of their own', () => {
    const lines: string[] = [];
    const logger = createLogger({ service: 'test', destination: { write: (s: string) => void lines.push(s) } });
    inActiveSpan(() => logger.info('inside'));
    expect(JSON.parse(lines[0]!).traceId).toBeUndefined();
  });
});

describe('startTelemetry with an OTLP endpoint', () => {
  let telemetry: Telemetry;
  beforeAll(async () => {
    trace.disable();
    context.disable();
    propagation.disable();
    telemetry = await startTelemetry({ serviceName: 'coffer-test', otlpEndpoint: UNREACHABLE_COLLECTOR });
  });
  afterAll(async () => {
    await telemetry.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it('currentTraceparent is undefined outside a trace and formats the active span context', () => {
    expect(currentTraceparent()).toBeUndefined();
    expect(context.with(trace.setSpan(context.active(), parentSpan), () => currentTraceparent())).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  it('records a trace it starts, with real ids, across async steps', async () => {
    const { tp, recording } = await trace.getTracer('telemetry-test').startActiveSpan('work', async (span) => {
      await new Promise((r) => setTimeout(r, 1));
      const value = { tp: currentTraceparent(), recording: span.isRecording() };
      span.end();
      return value;
    });
    expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(tp).not.toMatch(/^00-0{32}/);
    expect(recording).toBe(true);
  });

  it("continues a caller's trace", () => {
    const { value: tp, recording } = context.with(trace.setSpan(context.active(), parentSpan), () => inActiveSpan(() => currentTraceparent()));
    expect(tp).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    expect(tp).not.toContain('b7ad6b7169203331');
    expect(recording).toBe(true);
  });

  it('puts the active trace and span ids into log lines', () => {
    const lines: string[] = [];
    const logger = createLogger({ service: 'test', destination: { write: (s: string) => void lines.push(s) } });
    logger.info('outside');
    inActiveSpan(() => logger.info('inside'));
    const [outside, inside] = lines.map((l) => JSON.parse(l));
    expect(outside.traceId).toBeUndefined();
    expect(inside.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(inside.spanId).toMatch(/^[0-9a-f]{16}$/);
  });
});
