import { sql, type Kysely, type Transaction } from 'kysely';
import type { EventStoreDatabase } from './event-store-database';
import { quotedSchema } from './event-store-schema';

/**
 * Records that `consumer` handled `eventId`; call it in the same transaction as the handler's
 * effect. Returns false when the event was already handled (the caller then does nothing).
 */
export async function recordInbox(trx: Kysely<EventStoreDatabase> | Transaction<EventStoreDatabase>, schema: string, consumer: string, eventId: string): Promise<boolean> {
  const { rows } = await sql<{ event_id: string }>`
    insert into ${quotedSchema(schema)}.inbox (consumer, event_id) values (${consumer}, ${eventId})
    on conflict do nothing returning event_id`.execute(trx);
  return rows.length === 1;
}
