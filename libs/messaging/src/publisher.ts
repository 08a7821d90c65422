import { context, SpanKind } from '@opentelemetry/api';
import { jetstream } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import type { OutboxMessage } from './outbox-message';
import { contextOfHeaders, hasSampledSpan, inSpan, publishMetrics, traceHeadersOf } from './messaging-telemetry';

/**
 * A publish function for the outbox relay: JetStream publish with `Nats-Msg-Id` = event id, so a
 * retried publish inside the stream's duplicate window is stored once; resolves after the ack.
 * With `previousEventId` the stream refuses the message unless its last stored message is that
 * event, so pipelined publishes cannot be stored out of order.
 *
 * A message that carries the trace context of the span that appended it is published in a producer
 * span, child of that one, whose context replaces it in the headers: consumers continue the trace
 * through the NATS hop. Messages without one, or with one whose trace is not sampled, make no span,
 * so idle relay rounds are never traced.
 */
export function createJetStreamPublisher(nc: NatsConnection): (m: OutboxMessage, previousEventId?: string) => Promise<void> {
  const js = jetstream(nc);
  const send = async (m: OutboxMessage, headers: Record<string, string>, previousEventId?: string) => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(headers)) h.set(k, v);
    await js.publish(m.subject, m.body, { msgID: m.eventId, headers: h, expect: previousEventId ? { lastMsgID: previousEventId } : undefined });
    const instruments = publishMetrics();
    instruments.published.add(1);
    const recordedAt = Date.parse(m.headers['ce-time'] ?? '');
    if (Number.isFinite(recordedAt)) instruments.lag.record(Math.max(0, Date.now() - recordedAt));
  };
  return async (m, previousEventId) => {
    // A trace nobody sampled gets no producer span: the consumer continues from the appender's span.
    const parent = contextOfHeaders(m.headers);
    if (!hasSampledSpan(parent)) return send(m, m.headers, previousEventId);
    const attributes = { 'messaging.system': 'nats', 'messaging.operation.type': 'send', 'messaging.destination.name': m.subject, 'messaging.message.id': m.eventId };
    return inSpan(`publish ${m.subject}`, SpanKind.PRODUCER, parent, attributes, () => send(m, { ...m.headers, ...traceHeadersOf(context.active()) }, previousEventId));
  };
}
