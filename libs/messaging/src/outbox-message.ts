/**
 * A message to publish, as the outbox stores it. Structurally identical to `OutboxMessage` of
 * `@coffer/event-store`; declared here so messaging does not depend on the event store.
 */
export interface OutboxMessage {
  eventId: string;
  subject: string;
  headers: Record<string, string>;
  body: string;
}
