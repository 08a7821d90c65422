import { jetstream } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import type { OutboxMessage } from './outbox-message';

/**
 * A publish function for the outbox relay: JetStream publish with `Nats-Msg-Id` = event id, so a
 * retried publish inside the stream's duplicate window is stored once; resolves after the ack.
 * With `previousEventId` the stream refuses the message unless its last stored message is that
 * event, so pipelined publishes cannot be stored out of order.
 */
export function createJetStreamPublisher(nc: NatsConnection): (m: OutboxMessage, previousEventId?: string) => Promise<void> {
  const js = jetstream(nc);
  return async (m, previousEventId) => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
    await js.publish(m.subject, m.body, { msgID: m.eventId, headers: h, expect: previousEventId ? { lastMsgID: previousEventId } : undefined });
  };
}
