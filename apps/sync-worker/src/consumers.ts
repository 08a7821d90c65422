import type { NatsConnection } from '@nats-io/nats-core';
import { eventSubject, streamName, type MessagingNamespace } from '@coffer/contracts';
import { ensureServiceStream, runConsumer, type CloudEvent, type RunningConsumer } from '@coffer/messaging';
import { REVOCATION_REQUESTED_CONSUMER } from './oauth/revocation-requests';
import type { Logger } from '@coffer/telemetry';
import { CHECK_REQUESTED_CONSUMER } from './check-runner';
import { SYNC_REQUESTED_CONSUMER, type SyncRunner } from './sync-runner';

/** Options of {@link startConsumers}. */
export interface ConsumersOptions {
  /** Handler attempts before a request is dead-lettered. */
  maxDeliver: number;
  logger: Logger;
  /** Redelivery backoff by delivery count; the consumer's default when omitted. */
  retryDelayMs?: (deliveryCount: number) => number;
}

/** Where a request that kept failing ends up: under `<root>.sync.>`, so the sync stream keeps it. */
export function deadLetterSubject(ns: MessagingNamespace, consumer: 'sync_requested' | 'check_requested' | 'revocation_requested'): string {
  return `${ns.subjectRoot}.sync.dead_letter.${consumer}`;
}

/**
 * Starts the durable consumers of config's SyncRequested and CheckRequested (each queues a job the
 * sync runner's scheduler runs) and CredentialRevocationRequested; `stop` stops them,
 * each after its handler in flight has finished and acked.
 */
export async function startConsumers(
  nc: NatsConnection,
  ns: MessagingNamespace,
  runners: { sync: SyncRunner; revoke?: (event: CloudEvent) => Promise<void> },
  options: ConsumersOptions,
): Promise<{ stop(): Promise<void> }> {
  const { logger, maxDeliver, retryDelayMs } = options;
  // Declared here too so the worker does not depend on config having started first.
  await ensureServiceStream(nc, ns, 'config');
  const started: RunningConsumer[] = [];
  try {
    started.push(
      await runConsumer(nc, {
        stream: streamName(ns, 'config'),
        durable: SYNC_REQUESTED_CONSUMER,
        filterSubjects: [eventSubject(ns, 'SyncRequested')],
        maxDeliver,
        retryDelayMs,
        deadLetterSubject: deadLetterSubject(ns, 'sync_requested'),
        handle: (event) => runners.sync.handleSyncRequested(event),
        onError: (err, event) => logger.warn({ err, eventId: event?.id }, 'SyncRequested handler failed; retried in place while a connection is lost, else redelivered or dead-lettered'),
      }),
    );
    started.push(
      await runConsumer(nc, {
        stream: streamName(ns, 'config'),
        durable: CHECK_REQUESTED_CONSUMER,
        filterSubjects: [eventSubject(ns, 'CheckRequested')],
        maxDeliver,
        retryDelayMs,
        deadLetterSubject: deadLetterSubject(ns, 'check_requested'),
        handle: (event) => runners.sync.handleCheckRequested(event),
        onError: (err, event) => logger.warn({ err, eventId: event?.id }, 'CheckRequested handler failed; retried in place while a connection is lost, else redelivered or dead-lettered'),
      }),
    );
    const revoke = runners.revoke;
    if (revoke) {
      started.push(
        await runConsumer(nc, {
          stream: streamName(ns, 'config'),
          durable: REVOCATION_REQUESTED_CONSUMER,
          filterSubjects: [eventSubject(ns, 'CredentialRevocationRequested')],
          maxDeliver,
          retryDelayMs,
          deadLetterSubject: deadLetterSubject(ns, 'revocation_requested'),
          handle: (event) => revoke(event),
          onError: (err, event) => logger.warn({ err, eventId: event?.id }, 'CredentialRevocationRequested handler failed; redelivered or dead-lettered (config shreds the secrets when its hold runs out)'),
        }),
      );
    }
  } catch (err) {
    await Promise.all(started.map((c) => c.stop()));
    throw err;
  }
  return {
    async stop() {
      await Promise.all(started.map((c) => c.stop()));
    },
  };
}
