import { jetstreamManager, RetentionPolicy, StorageType, type StreamConfig } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/nats-core';
import { streamName, streamSubjects, type MessagingNamespace, type ServiceName } from '@coffer/contracts';

/** How long JetStream remembers a `Nats-Msg-Id`: a relay retrying a publish within it is stored once. */
export const DUPLICATE_WINDOW_MS = 2 * 60_000;

/** Creates the service's stream, or updates it to the expected subjects and settings; returns its name. */
export async function ensureServiceStream(nc: NatsConnection, ns: MessagingNamespace, service: ServiceName): Promise<string> {
  const jsm = await jetstreamManager(nc);
  const name = streamName(ns, service);
  // Storage and retention cannot change on an existing stream, so only these are converged on update.
  const wanted: Partial<StreamConfig> = {
    subjects: streamSubjects(ns, service),
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
  };
  const existing = await jsm.streams.info(name).catch(() => undefined);
  if (existing) {
    await jsm.streams.update(name, { ...existing.config, ...wanted });
    return name;
  }
  try {
    await jsm.streams.add({ name, storage: StorageType.File, retention: RetentionPolicy.Limits, ...wanted });
  } catch (err) {
    // Another replica may have created it between our lookup and our add; converge on update.
    const raced = await jsm.streams.info(name).catch(() => undefined);
    if (!raced) throw err;
    await jsm.streams.update(name, { ...raced.config, ...wanted });
  }
  return name;
}
