import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType, type StreamConfig } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/nats-core';
import { streamName, streamSubjects, type MessagingNamespace, type ServiceName } from '@coffer/contracts';

/** How long JetStream remembers a `Nats-Msg-Id`: a relay retrying a publish within it is stored once. */
export const DUPLICATE_WINDOW_MS = 2 * 60_000;

/**
 * How much of its history a service's stream keeps, and on how many servers. Whichever limit is
 * reached first drops the oldest messages (never refuses a new one); the Postgres event log of
 * each service stays the permanent record.
 */
export interface StreamSettings {
  /** How long a message is kept, in milliseconds; 0 keeps it regardless of age. At least the duplicate window otherwise. */
  maxAgeMs: number;
  /** Most bytes kept; -1 for no limit. JetStream reserves this much storage when the stream is created. */
  maxBytes: number;
  /** Most messages kept; -1 for no limit. */
  maxMsgs: number;
  /** Copies on different servers of a JetStream cluster (1 to 5; 1 on a single server). */
  replicas: number;
}

/** The settings when nothing is configured: a week, no size cap, any number of messages, one copy (a single NATS server). */
export const DEFAULT_STREAM_SETTINGS: StreamSettings = {
  maxAgeMs: 7 * 24 * 3_600_000,
  maxBytes: -1,
  maxMsgs: -1,
  replicas: 1,
};

/** Refuses settings JetStream would refuse or that would break the duplicate window; names the field. */
export function validateStreamSettings(settings: StreamSettings): void {
  const { maxAgeMs, maxBytes, maxMsgs, replicas } = settings;
  if (!Number.isSafeInteger(maxAgeMs) || (maxAgeMs !== 0 && maxAgeMs < DUPLICATE_WINDOW_MS)) {
    throw new Error(`maxAgeMs must be 0 (no age limit) or at least the duplicate window (${DUPLICATE_WINDOW_MS} ms), got ${maxAgeMs}`);
  }
  if (!Number.isSafeInteger(maxBytes) || (maxBytes !== -1 && maxBytes < 1)) throw new Error(`maxBytes must be -1 (no limit) or positive, got ${maxBytes}`);
  if (!Number.isSafeInteger(maxMsgs) || (maxMsgs !== -1 && maxMsgs < 1)) throw new Error(`maxMsgs must be -1 (no limit) or positive, got ${maxMsgs}`);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) throw new Error(`replicas must be between 1 and 5, got ${replicas}`);
}

function limits(settings: StreamSettings): Partial<StreamConfig> {
  return {
    max_age: nanos(settings.maxAgeMs),
    max_bytes: settings.maxBytes,
    max_msgs: settings.maxMsgs,
    num_replicas: settings.replicas,
    // Limits drop the oldest messages: a full stream must never refuse the relay's next publish.
    discard: DiscardPolicy.Old,
  };
}

/**
 * Creates the service's stream, or updates it to the expected subjects and settings; returns its
 * name. The service that owns the stream passes its `settings`, and an existing stream is brought
 * to them. Another service that declares the stream only to consume it passes none: a missing
 * stream is created with the defaults, and an existing one keeps the limits its owner set.
 */
export async function ensureServiceStream(nc: NatsConnection, ns: MessagingNamespace, service: ServiceName, settings?: StreamSettings): Promise<string> {
  if (settings) validateStreamSettings(settings);
  const jsm = await jetstreamManager(nc);
  const name = streamName(ns, service);
  // Storage and retention cannot change on an existing stream, so only these are converged on update.
  const wanted: Partial<StreamConfig> = {
    subjects: streamSubjects(ns, service),
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    ...(settings ? limits(settings) : {}),
  };
  const explain = (err: unknown) => {
    const s = settings ?? DEFAULT_STREAM_SETTINGS;
    return new Error(
      `cannot declare the JetStream stream ${name} (max age ${s.maxAgeMs} ms, max bytes ${s.maxBytes}, max messages ${s.maxMsgs}, replicas ${s.replicas}): ${(err as Error)?.message ?? String(err)}`,
      { cause: err },
    );
  };
  const update = async (existing: StreamConfig) => {
    await jsm.streams.update(name, { ...existing, ...wanted }).catch((err: unknown) => {
      throw explain(err);
    });
  };
  const existing = await jsm.streams.info(name).catch(() => undefined);
  if (existing) {
    await update(existing.config);
    return name;
  }
  try {
    await jsm.streams.add({ name, storage: StorageType.File, retention: RetentionPolicy.Limits, ...limits(DEFAULT_STREAM_SETTINGS), ...wanted });
  } catch (err) {
    // Another replica may have created it between our lookup and our add; converge on update.
    const raced = await jsm.streams.info(name).catch(() => undefined);
    if (!raced) throw explain(err);
    await update(raced.config);
  }
  return name;
}
