export {
  createEventStore,
  LOG_START,
  MAIN_CHAIN,
  type AppendedEvent,
  type AppendManyOptions,
  type AppendOptions,
  type AppendResult,
  type EventStore,
  type EventStoreOptions,
  type ExpectedVersion,
  type LogPosition,
  type NewEvent,
  type OutboxMessage,
  type RecordedEvent,
  type StreamAppend,
} from './event-store';
export { createEventStoreTables, migrateEventStore } from './event-store-schema';
export type { EventStoreDatabase, EventsTable, InboxTable, OutboxCheckpointsTable, OutboxTable } from './event-store-database';
export { createOutboxRelay, outboxBacklog, type OutboxRelay, type OutboxRelayOptions } from './outbox-relay';
export { recordInbox } from './inbox';
export { GENESIS_HASH, chainHash, verifyEventChain, type ChainVerdict, type ChainedContent } from './event-chain';
