import type { MsgHdrs } from '@nats-io/nats-core';
import {
  CofferError,
  eventNameOfType,
  eventSubject,
  eventType,
  integrationEvents,
  type EventCodec,
  type IntegrationEventMessage,
  type IntegrationEventName,
  type MessagingNamespace,
} from '@coffer/contracts';
import type { OutboxMessage } from './outbox-message';

/** The NATS header names of CloudEvents 1.0 binary mode (plus W3C trace context). */
export const ceHeaders = {
  specversion: 'ce-specversion',
  id: 'ce-id',
  type: 'ce-type',
  source: 'ce-source',
  subject: 'ce-subject',
  time: 'ce-time',
  contentType: 'content-type',
  traceparent: 'traceparent',
} as const;

const SPEC_VERSION = '1.0';
const JSON_CONTENT_TYPE = 'application/json';

/** A received integration event: CloudEvents attributes plus its decoded data. */
export interface CloudEvent {
  id: string;
  type: string;
  source: string;
  subject?: string;
  /** RFC 3339, as published. */
  time: string;
  traceparent?: string;
  /** Set when `type` is one of Coffer's integration events; `data` is then the decoded message. */
  name?: IntegrationEventName;
  data: unknown;
}

/** Options of `integrationEventMessage`. */
export interface IntegrationEventMessageOptions {
  /** The stored event's id; becomes `ce-id` and the JetStream `Nats-Msg-Id`. */
  eventId: string;
  /** `ce-source`, e.g. `coffer/secrets`. */
  source: string;
  /** `ce-subject`, e.g. the coordinate the event is about. */
  subject?: string;
  time: Date;
  traceparent?: string;
}

function codecOf<N extends IntegrationEventName>(name: N): EventCodec<IntegrationEventMessage<N>> {
  return integrationEvents[name].codec as unknown as EventCodec<IntegrationEventMessage<N>>;
}

/** Builds the outbox message of an integration event: CloudEvents 1.0 binary mode, proto3 JSON body. */
export function integrationEventMessage<N extends IntegrationEventName>(
  ns: MessagingNamespace,
  name: N,
  message: IntegrationEventMessage<N>,
  options: IntegrationEventMessageOptions,
): OutboxMessage {
  const headers: Record<string, string> = {
    [ceHeaders.specversion]: SPEC_VERSION,
    [ceHeaders.id]: options.eventId,
    [ceHeaders.type]: eventType(name),
    [ceHeaders.source]: options.source,
    [ceHeaders.time]: options.time.toISOString(),
    [ceHeaders.contentType]: JSON_CONTENT_TYPE,
  };
  if (options.subject !== undefined) headers[ceHeaders.subject] = options.subject;
  if (options.traceparent !== undefined) headers[ceHeaders.traceparent] = options.traceparent;
  return {
    eventId: options.eventId,
    subject: eventSubject(ns, name),
    headers,
    body: JSON.stringify(codecOf(name).toJSON(message)),
  };
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function required(headers: MsgHdrs, key: string): string {
  const value = headers.get(key);
  if (!value) throw new CofferError('invalid_argument', `not a CloudEvent: header ${key} is missing`);
  return value;
}

/**
 * Decodes a CloudEvents binary-mode message. Throws `CofferError('invalid_argument')` for anything
 * that is not one; error messages name the failing header but never echo message content.
 */
export function decodeCloudEvent(headers: MsgHdrs | undefined, body: Uint8Array): CloudEvent {
  if (!headers) throw new CofferError('invalid_argument', 'not a CloudEvent: the message has no headers');
  const specversion = required(headers, ceHeaders.specversion);
  if (specversion !== SPEC_VERSION) throw new CofferError('invalid_argument', 'unsupported CloudEvents specversion');
  const contentType = headers.get(ceHeaders.contentType);
  if (contentType && !contentType.toLowerCase().startsWith(JSON_CONTENT_TYPE)) {
    throw new CofferError('invalid_argument', 'unsupported CloudEvent content-type');
  }
  const id = required(headers, ceHeaders.id);
  const type = required(headers, ceHeaders.type);
  const source = required(headers, ceHeaders.source);
  const time = required(headers, ceHeaders.time);
  let parsed: unknown;
  try {
    parsed = body.length === 0 ? null : JSON.parse(decoder.decode(body));
  } catch {
    throw new CofferError('invalid_argument', 'CloudEvent data is not valid JSON', [{ field: 'data', reason: `event ${id}` }]);
  }
  const name = eventNameOfType(type);
  const event: CloudEvent = { id, type, source, time, data: name ? codecOf(name).fromJSON(parsed) : parsed };
  if (name) event.name = name;
  const subject = headers.get(ceHeaders.subject);
  if (subject) event.subject = subject;
  const traceparent = headers.get(ceHeaders.traceparent);
  if (traceparent) event.traceparent = traceparent;
  return event;
}
