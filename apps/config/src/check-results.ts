import type { NatsConnection } from '@nats-io/nats-core';
import { CofferError, eventSubject, type IntegrationEventMessage, type MessagingNamespace } from '@coffer/contracts';
import { decodeCloudEvent } from '@coffer/messaging';
import type { Logger } from '@coffer/telemetry';

/** A check or discover result from the sync worker. */
export type CheckResult = IntegrationEventMessage<'CheckCompleted'>;

/** Waits for CheckCompleted events by job id (one core subscription per process). */
export interface CheckResults {
  /** Start waiting before the request is appended, so the answer cannot be missed. */
  wait(jobId: string, timeoutMs: number): { result: Promise<CheckResult>; cancel(): void };
  close(): void;
}

/** Subscribes to the sync worker's CheckCompleted subject; every replica hears every result and keeps its own. */
export function createCheckResults(nc: NatsConnection, ns: MessagingNamespace, logger: Logger): CheckResults {
  const waiters = new Map<string, (r: CheckResult) => void>();
  const sub = nc.subscribe(eventSubject(ns, 'CheckCompleted'));
  void (async () => {
    for await (const m of sub) {
      try {
        const result = decodeCloudEvent(m.headers, m.data).data as CheckResult;
        waiters.get(result.jobId)?.(result);
      } catch (err) {
        logger.warn({ err }, 'ignored a CheckCompleted message that does not decode');
      }
    }
    // A rejected iterator (e.g. a permissions violation) must not become an unhandled rejection that ends the process.
  })().catch((err: unknown) => logger.error({ err }, 'the CheckCompleted subscription ended; check calls will time out'));
  return {
    wait(jobId, timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const result = new Promise<CheckResult>((resolve, reject) => {
        timer = setTimeout(() => {
          waiters.delete(jobId);
          reject(new CofferError('unavailable', `no sync worker answered check job ${jobId} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.set(jobId, (r) => {
          clearTimeout(timer);
          waiters.delete(jobId);
          resolve(r);
        });
      });
      return {
        result,
        cancel() {
          clearTimeout(timer);
          waiters.delete(jobId);
        },
      };
    },
    close() {
      sub.unsubscribe();
    },
  };
}
