import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { headers as natsHeaders, nanos, type NatsConnection } from '@nats-io/nats-core';
import { CofferError, isCofferError, isConnectionLoss } from '@coffer/contracts';
import { SpanKind, SpanStatusCode, type ObservableResult } from '@opentelemetry/api';
import { decodeCloudEvent, type CloudEvent } from './cloud-event';
import { consumerMetrics, contextOfHeaders, hasSpan, inSpan } from './messaging-telemetry';

/** Header names added to a dead-lettered message; none of them carries message content. */
export const deadLetterHeaders = {
  reason: 'coffer-dead-letter-reason',
  error: 'coffer-dead-letter-error',
  stream: 'coffer-dead-letter-stream',
  consumer: 'coffer-dead-letter-consumer',
  subject: 'coffer-dead-letter-subject',
  sequence: 'coffer-dead-letter-sequence',
  deliveries: 'coffer-dead-letter-deliveries',
} as const;

/** Why a message went to the dead-letter subject. */
export type DeadLetterReason = 'undecodable' | 'handler_failed' | 'deliveries_exhausted';

/** Options of `runConsumer`. */
export interface RunConsumerOptions {
  /** The stream the durable consumer reads. */
  stream: string;
  /** Durable consumer name; replicas sharing it share the work. */
  durable: string;
  filterSubjects: string[];
  /** Handler attempts before a message is dead-lettered (default 5). */
  maxDeliver?: number;
  /** How long the server waits for an ack before redelivering (default 30 s); kept alive while the handler runs. */
  ackWaitMs?: number;
  /** Subject the failed messages are published to; it must be captured by a stream. */
  deadLetterSubject: string;
  handle: (event: CloudEvent) => Promise<void>;
  onError?: (err: unknown, event?: CloudEvent) => void;
  /** Delay before a failed message comes back, by its delivery count (default 1 s doubling up to 60 s). */
  retryDelayMs?: (deliveryCount: number) => number;
  /**
   * How long a handler that fails on a lost connection (Postgres, NATS, a peer answering
   * `unavailable`) is retried in place, with the same back-off, before the failure counts as a
   * delivery (default 60 s): an outage must not use up `maxDeliver` and dead-letter good messages.
   */
  transientRetryMs?: number;
  /** Pause before pulling again after the subscription itself failed or ended (default 1 s, doubling up to 30 s). */
  resumeDelayMs?: number;
}

/** A running consumer. */
export interface RunningConsumer {
  /** Stops pulling, waits for the handler in flight and its ack. */
  stop(): Promise<void>;
}

const DEFAULT_MAX_DELIVER = 5;
const DEFAULT_ACK_WAIT_MS = 30_000;
const DEFAULT_TRANSIENT_RETRY_MS = 60_000;
const MAX_RESUME_DELAY_MS = 30_000;

/** A failure that passes with time: a lost or refused connection, or a peer that answered `unavailable`. */
function isTransient(err: unknown): boolean {
  return isConnectionLoss(err) || (isCofferError(err) && err.code === 'unavailable');
}

/** Default redelivery backoff: 1 s, 2 s, 4 s, ... capped at 60 s. */
export function defaultRetryDelayMs(deliveryCount: number): number {
  return Math.min(60_000, 1_000 * 2 ** Math.max(0, deliveryCount - 1));
}

// An error's class or code, never its message: handler errors may quote the data they choked on.
function errorKind(err: unknown): string {
  if (isCofferError(err)) return `CofferError:${err.code}`;
  if (err instanceof Error && /^[A-Za-z0-9_.:-]{1,64}$/.test(err.name)) return err.name;
  return 'unknown';
}

async function ensureDurable(jsm: JetStreamManager, options: RunConsumerOptions, serverMaxDeliver: number, ackWaitMs: number): Promise<void> {
  // filter_subjects needs NATS 2.10; a single filter keeps older servers working.
  const filter: Partial<ConsumerConfig> =
    options.filterSubjects.length === 1 ? { filter_subject: options.filterSubjects[0] } : { filter_subjects: options.filterSubjects };
  const mutable: Partial<ConsumerConfig> = { ...filter, max_deliver: serverMaxDeliver, ack_wait: nanos(ackWaitMs) };
  const exists = await jsm.consumers.info(options.stream, options.durable).then(
    () => true,
    () => false,
  );
  if (exists) {
    await jsm.consumers.update(options.stream, options.durable, mutable);
    return;
  }
  try {
    await jsm.consumers.add(options.stream, {
      durable_name: options.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ...mutable,
    });
  } catch (err) {
    // A replica starting at the same time may have created it first.
    const raced = await jsm.consumers.info(options.stream, options.durable).then(
      () => true,
      () => false,
    );
    if (!raced) throw err;
    await jsm.consumers.update(options.stream, options.durable, mutable);
  }
}

/**
 * Runs a durable pull consumer: each message is decoded, handled, then acked; a failing handler gets
 * the message again after a backoff, and after `maxDeliver` attempts it goes to the dead-letter subject.
 * A handler failing on a lost connection is retried in place first (`transientRetryMs`), and a pull
 * subscription that fails or ends is opened again with back-off: the consumer runs until `stop`.
 */
export async function runConsumer(nc: NatsConnection, options: RunConsumerOptions): Promise<RunningConsumer> {
  const maxDeliver = options.maxDeliver ?? DEFAULT_MAX_DELIVER;
  const ackWaitMs = options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
  const retryDelayMs = options.retryDelayMs ?? defaultRetryDelayMs;
  const onError = options.onError ?? (() => undefined);
  const transientRetryMs = options.transientRetryMs ?? DEFAULT_TRANSIENT_RETRY_MS;
  const firstResumeDelayMs = options.resumeDelayMs ?? 1_000;
  if (!Number.isInteger(maxDeliver) || maxDeliver < 1) throw new CofferError('invalid_argument', 'maxDeliver must be a positive integer');
  if (options.filterSubjects.length === 0) throw new CofferError('invalid_argument', 'filterSubjects must not be empty');

  const jsm = await jetstreamManager(nc);
  // One spare server-side delivery: if the last attempt is cut short (crash, lapsed ack wait), the
  // message still comes back once and is dead-lettered instead of stalling unacked forever.
  await ensureDurable(jsm, options, maxDeliver + 1, ackWaitMs);
  const js = jetstream(nc);
  const instruments = consumerMetrics;
  // Pending messages, read from the server only when metrics are collected (a scrape or an export).
  const observePending = async (result: ObservableResult) => {
    const info = await jsm.consumers.info(options.stream, options.durable).catch(() => undefined);
    if (info) result.observe(info.num_pending, { consumer: options.durable });
  };
  instruments().pending.addCallback(observePending);
  let stopping = false;
  const sleepers = new Set<() => void>();
  // A pause that stop() cuts short.
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      sleepers.add(done);
    });

  async function deadLetter(msg: JsMsg, reason: DeadLetterReason, err: unknown, event: CloudEvent | undefined): Promise<void> {
    const h = natsHeaders();
    if (msg.headers) {
      for (const [key, values] of msg.headers) {
        // Nats-* headers are JetStream directives (Nats-Msg-Id, expectations); re-sending them would
        // dedupe the copy against the original or make the publish fail.
        if (key.toLowerCase().startsWith('nats-')) continue;
        for (const v of values) h.append(key, v);
      }
    }
    h.set(deadLetterHeaders.reason, reason);
    if (err !== undefined) h.set(deadLetterHeaders.error, errorKind(err));
    h.set(deadLetterHeaders.stream, options.stream);
    h.set(deadLetterHeaders.consumer, options.durable);
    h.set(deadLetterHeaders.subject, msg.subject);
    h.set(deadLetterHeaders.sequence, String(msg.info.streamSequence));
    h.set(deadLetterHeaders.deliveries, String(msg.info.deliveryCount));
    try {
      await js.publish(options.deadLetterSubject, msg.data, {
        headers: h,
        msgID: `dead-letter:${options.stream}:${options.durable}:${msg.info.streamSequence}`,
      });
    } catch (publishErr) {
      onError(publishErr, event);
      msg.nak(retryDelayMs(msg.info.deliveryCount));
      return;
    }
    instruments().deadLetters.add(1, { consumer: options.durable, reason });
    instruments().handled.add(1, { consumer: options.durable, outcome: 'dead_lettered' });
    // No reason argument: servers before 2.10 ignore a `+TERM <reason>` ack altogether, and the
    // reason already travels in the dead-letter headers.
    msg.term();
  }

  /**
   * Handles one message in a consumer span, child of the span that published it (its `traceparent`):
   * the handler's calls and the events it appends continue the trace. A message without trace
   * context gets no span: only work that began in a trace is traced.
   */
  async function handleMessage(msg: JsMsg): Promise<void> {
    if (msg.info.deliveryCount > 1) instruments().redeliveries.add(1, { consumer: options.durable });
    const started = Date.now();
    const traceparent = msg.headers?.get('traceparent');
    const parent = contextOfHeaders(traceparent ? { traceparent } : {});
    try {
      if (!hasSpan(parent)) {
        await handleDecoded(msg);
        return;
      }
      const attributes = {
        'messaging.system': 'nats',
        'messaging.operation.type': 'process',
        'messaging.destination.name': msg.subject,
        'messaging.consumer.group.name': options.durable,
        'messaging.message.id': msg.headers?.get('ce-id') ?? '',
        'messaging.message.delivery_count': msg.info.deliveryCount,
      };
      await inSpan(`process ${msg.subject}`, SpanKind.CONSUMER, parent, attributes, async (span) => {
        const failed = await handleDecoded(msg);
        // The error's class only: messages may quote the data a handler choked on.
        if (failed !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: failed instanceof Error ? failed.name : 'error' });
      });
    } finally {
      instruments().duration.record(Date.now() - started, { consumer: options.durable });
    }
  }

  /** Decodes, handles and acks (or retries, or dead-letters) one message; returns the handler's error when it failed. */
  async function handleDecoded(msg: JsMsg): Promise<unknown> {
    const deliveries = msg.info.deliveryCount;
    let event: CloudEvent;
    try {
      event = decodeCloudEvent(msg.headers, msg.data);
    } catch (err) {
      onError(err);
      await deadLetter(msg, 'undecodable', err, undefined);
      return;
    }
    if (deliveries > maxDeliver) {
      await deadLetter(msg, 'deliveries_exhausted', undefined, event);
      return;
    }
    // Tell the server we are still working so a slow handler is not redelivered to another replica.
    const keepAlive = setInterval(() => msg.working(), Math.max(50, Math.floor(ackWaitMs / 2)));
    let failure: { err: unknown } | undefined;
    try {
      const started = Date.now();
      for (let attempt = 1; ; attempt++) {
        try {
          await options.handle(event);
          failure = undefined;
          break;
        } catch (err) {
          failure = { err };
          // The handler is idempotent (inbox): running it again here costs no delivery.
          const left = transientRetryMs - (Date.now() - started);
          if (stopping || left <= 0 || !isTransient(err)) break;
          onError(err, event);
          await sleep(Math.min(retryDelayMs(attempt), left));
          if (stopping) break;
        }
      }
    } finally {
      clearInterval(keepAlive);
    }
    if (!failure) {
      msg.ack();
      instruments().handled.add(1, { consumer: options.durable, outcome: 'acked' });
      return;
    }
    onError(failure.err, event);
    // Stopped while waiting out an outage: hand the message back at once for another replica.
    if (stopping && isTransient(failure.err)) {
      msg.nak();
      return failure.err;
    }
    if (deliveries >= maxDeliver) await deadLetter(msg, 'handler_failed', failure.err, event);
    else {
      msg.nak(retryDelayMs(deliveries));
      instruments().handled.add(1, { consumer: options.durable, outcome: 'retried' });
    }
    return failure.err;
  }

  const open = async (): Promise<ConsumerMessages> => {
    const m = await (await js.consumers.get(options.stream, options.durable)).consume({ max_messages: 16 });
    // The client keeps pulling from a deleted durable for ever, silently: end this subscription so the
    // loop below declares the durable again. A lost connection needs nothing: the client resumes it.
    void (async () => {
      for await (const s of m.status()) {
        if (s.type === 'consumer_deleted' || s.type === 'consumer_not_found') {
          m.stop(new Error(`the durable consumer ${options.durable} is gone (${s.type})`));
          break;
        }
      }
    })().catch(() => undefined);
    return m;
  };
  let messages: ConsumerMessages | undefined = await open();

  const loop = (async () => {
    let resumeDelayMs = firstResumeDelayMs;
    while (!stopping) {
      try {
        if (!messages) {
          // The durable may be gone with its stream (a broker that lost its storage): declare it again.
          await ensureDurable(jsm, options, maxDeliver + 1, ackWaitMs);
          messages = await open();
          resumeDelayMs = firstResumeDelayMs;
        }
        for await (const msg of messages) {
          if (stopping) {
            // Already buffered when stop() was called: hand it back at once for another replica.
            msg.nak();
            continue;
          }
          try {
            await handleMessage(msg);
          } catch (err) {
            // An ack or nak on a lost connection: the server redelivers after the ack wait.
            onError(err);
          }
        }
        if (!stopping) onError(new Error(`the pull subscription of ${options.durable} ended; opening it again`));
      } catch (err) {
        if (stopping) break;
        onError(err);
      }
      messages = undefined;
      if (!stopping) {
        await sleep(resumeDelayMs);
        resumeDelayMs = Math.min(resumeDelayMs * 2, MAX_RESUME_DELAY_MS);
      }
    }
  })();

  return {
    async stop() {
      if (!stopping) {
        stopping = true;
        instruments().pending.removeCallback(observePending);
        for (const wake of [...sleepers]) wake();
        await messages?.close();
      }
      await loop;
    },
  };
}
