export { connectNats, type ConnectNatsOptions } from './connection';
export { DEFAULT_STREAM_SETTINGS, DUPLICATE_WINDOW_MS, ensureServiceStream, validateStreamSettings, type StreamSettings } from './service-stream';
export {
  ceHeaders,
  decodeCloudEvent,
  integrationEventMessage,
  type CloudEvent,
  type IntegrationEventMessageOptions,
} from './cloud-event';
export { createJetStreamPublisher } from './publisher';
export {
  deadLetterHeaders,
  defaultRetryDelayMs,
  runConsumer,
  type DeadLetterReason,
  type RunConsumerOptions,
  type RunningConsumer,
} from './consumer';
export type { OutboxMessage } from './outbox-message';
