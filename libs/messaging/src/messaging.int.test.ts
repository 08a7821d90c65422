import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, StorageType, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders, nanos, type NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamName, type MessagingNamespace } from '@coffer/contracts';
import { deleteStreams, testNatsUrl, uniqueNamespace } from '@coffer/testing';
import { decodeCloudEvent, integrationEventMessage, type CloudEvent } from './cloud-event';
import { connectNats } from './connection';
import { deadLetterHeaders, runConsumer } from './consumer';
import type { OutboxMessage } from './outbox-message';
import { createJetStreamPublisher } from './publisher';
import { DUPLICATE_WINDOW_MS, ensureServiceStream } from './service-stream';

let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let ns: MessagingNamespace;
let publish: (m: OutboxMessage) => Promise<void>;
let configStream: string;

beforeAll(async () => {
  ns = uniqueNamespace();
  nc = await connectNats({ servers: testNatsUrl(), name: 'messaging-int-test' });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  publish = createJetStreamPublisher(nc);
  configStream = await ensureServiceStream(nc, ns, 'config');
  await ensureServiceStream(nc, ns, 'secrets');
  await ensureServiceStream(nc, ns, 'sync');
});

afterAll(async () => {
  await nc?.close();
  if (ns) await deleteStreams(testNatsUrl(), ns);
});

async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function gate(): { promise: Promise<void>; open(): void } {
  let open = () => {};
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/** A SyncRequested message on a subject of its own inside the config stream, so test cases don't share messages. */
function syncRequested(subject: string, jobId: string = randomUUID()): OutboxMessage {
  const m = integrationEventMessage(
    ns,
    'SyncRequested',
    { jobId, connectionId: 'conn-1', workspaceId: 'ws-1', occurredAt: '2025-01-01T00:00:00.000Z' },
    { eventId: randomUUID(), source: 'coffer/config', subject: jobId, time: new Date('2025-01-01T00:00:00.000Z') },
  );
  return { ...m, subject };
}

function caseSubject(name: string): string {
  return `${ns.subjectRoot}.config.test.${name}`;
}

function deadLetterSubject(durable: string): string {
  return `${ns.subjectRoot}.sync.dead_letter.${durable}`;
}

async function readOne(stream: string, subject: string): Promise<JsMsg> {
  const consumer = await js.consumers.get(stream, { filter_subjects: subject });
  const msg = await consumer.next({ expires: 5_000 });
  if (!msg) throw new Error(`nothing on ${subject}`);
  return msg;
}

async function pendingOf(durable: string): Promise<{ ackPending: number; pending: number }> {
  const info = await jsm.consumers.info(configStream, durable);
  return { ackPending: info.num_ack_pending, pending: info.num_pending };
}

describe('ensureServiceStream', () => {
  it('declares a file-backed stream with the service subjects and a duplicate window, idempotently', async () => {
    const name = await ensureServiceStream(nc, ns, 'secrets');
    expect(name).toBe(streamName(ns, 'secrets'));
    const info = await jsm.streams.info(name);
    expect(info.config.subjects).toEqual([`${ns.subjectRoot}.secrets.>`]);
    expect(info.config.storage).toBe(StorageType.File);
    expect(info.config.duplicate_window).toBe(nanos(DUPLICATE_WINDOW_MS));
    expect(await ensureServiceStream(nc, ns, 'secrets')).toBe(name);
  });

  it('brings a drifted stream back to the expected subjects', async () => {
    const name = streamName(ns, 'auth');
    await jsm.streams.add({ name, subjects: [`${ns.subjectRoot}.auth.old`], storage: StorageType.File });
    await ensureServiceStream(nc, ns, 'auth');
    const info = await jsm.streams.info(name);
    expect(info.config.subjects).toEqual([`${ns.subjectRoot}.auth.>`]);
    expect(info.config.duplicate_window).toBe(nanos(DUPLICATE_WINDOW_MS));
  });
});

describe('createJetStreamPublisher', () => {
  it('publishes a CloudEvent that a plain JetStream consumer reads back with its headers', async () => {
    const written = {
      coordinate: 'coffer_workspace_w1_secret_s1_v1',
      baseCoordinate: 'coffer_workspace_w1_secret_s1',
      version: 1,
      workspaceId: 'w1',
      actor: 'config',
      occurredAt: '2025-01-02T03:04:05.000Z',
      kekVersion: 3,
    };
    const eventId = randomUUID();
    const m = integrationEventMessage(ns, 'SecretVersionWritten', written, {
      eventId,
      source: 'coffer/secrets',
      subject: written.coordinate,
      time: new Date('2025-01-02T03:04:05.000Z'),
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    await publish(m);

    const msg = await readOne(streamName(ns, 'secrets'), m.subject);
    expect(msg.headers?.get('ce-id')).toBe(eventId);
    expect(msg.headers?.get('ce-type')).toBe('coffer.secrets.v1.SecretVersionWritten');
    expect(msg.headers?.get('Nats-Msg-Id')).toBe(eventId);
    const event = decodeCloudEvent(msg.headers, msg.data);
    expect(event).toEqual({
      id: eventId,
      type: 'coffer.secrets.v1.SecretVersionWritten',
      source: 'coffer/secrets',
      subject: written.coordinate,
      time: '2025-01-02T03:04:05.000Z',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      name: 'SecretVersionWritten',
      data: written,
    });
  });

  it('stores the same event id once (Nats-Msg-Id dedupe)', async () => {
    const subject = caseSubject('dedupe');
    const m = syncRequested(subject);
    await publish(m);
    await publish(m);
    await publish({ ...m, body: '{"jobId":"changed"}' });
    const info = await jsm.streams.info(configStream, { subjects_filter: subject });
    expect(info.state.subjects?.[subject]).toBe(1);
  });

  it('rejects when no stream captures the subject, so the relay does not checkpoint', async () => {
    await expect(publish({ ...syncRequested('nowhere.at.all'), eventId: randomUUID() })).rejects.toThrow();
  });
});

describe('runConsumer', () => {
  it('acks a message only after the handler resolves', async () => {
    const subject = caseSubject('ack');
    const durable = 'ack-after-handle';
    const held = gate();
    const seen: CloudEvent[] = [];
    const running = await runConsumer(nc, {
      stream: configStream,
      durable,
      filterSubjects: [subject],
      deadLetterSubject: deadLetterSubject(durable),
      handle: async (event) => {
        seen.push(event);
        await held.promise;
      },
    });
    try {
      const m = syncRequested(subject, 'job-ack');
      await publish(m);
      await eventually(() => seen.length === 1);
      expect(seen[0]).toMatchObject({ id: m.eventId, name: 'SyncRequested', data: { jobId: 'job-ack', connectionId: 'conn-1' } });
      expect(await pendingOf(durable)).toEqual({ ackPending: 1, pending: 0 });
      held.open();
      await eventually(async () => (await pendingOf(durable)).ackPending === 0);
      expect(seen).toHaveLength(1);
    } finally {
      await running.stop();
    }
  });

  it('redelivers after a handler failure, then acks', async () => {
    const subject = caseSubject('retry');
    const durable = 'retry-after-failure';
    let attempts = 0;
    const errors: unknown[] = [];
    const running = await runConsumer(nc, {
      stream: configStream,
      durable,
      filterSubjects: [subject],
      maxDeliver: 5,
      deadLetterSubject: deadLetterSubject(durable),
      retryDelayMs: () => 100,
      onError: (err) => errors.push(err),
      handle: async () => {
        attempts += 1;
        if (attempts < 3) throw new Error('transient');
      },
    });
    try {
      await publish(syncRequested(subject));
      await eventually(() => attempts === 3);
      await eventually(async () => (await pendingOf(durable)).ackPending === 0);
      expect(errors).toHaveLength(2);
      const dlq = await jsm.streams.info(streamName(ns, 'sync'), { subjects_filter: deadLetterSubject(durable) });
      expect(dlq.state.subjects?.[deadLetterSubject(durable)] ?? 0).toBe(0);
    } finally {
      await running.stop();
    }
  });

  it('dead-letters after maxDeliver failures with the original headers and body, and no message content in the reason', async () => {
    const subject = caseSubject('poison');
    const durable = 'dead-letter-after-max';
    const canary = `CANARY-${randomUUID()}`;
    let attempts = 0;
    const running = await runConsumer(nc, {
      stream: configStream,
      durable,
      filterSubjects: [subject],
      maxDeliver: 3,
      deadLetterSubject: deadLetterSubject(durable),
      retryDelayMs: () => 50,
      handle: async () => {
        attempts += 1;
        throw new Error(`handler choked on ${canary}`);
      },
    });
    try {
      const m = syncRequested(subject);
      await publish(m);
      const dead = await readOne(streamName(ns, 'sync'), deadLetterSubject(durable));
      expect(attempts).toBe(3);
      expect(new TextDecoder().decode(dead.data)).toBe(m.body);
      for (const [k, v] of Object.entries(m.headers)) expect(dead.headers?.get(k)).toBe(v);
      expect(dead.headers?.get(deadLetterHeaders.reason)).toBe('handler_failed');
      expect(dead.headers?.get(deadLetterHeaders.error)).toBe('Error');
      expect(dead.headers?.get(deadLetterHeaders.subject)).toBe(subject);
      expect(dead.headers?.get(deadLetterHeaders.deliveries)).toBe('3');
      expect(dead.headers?.toString()).not.toContain(canary);
      await eventually(async () => (await pendingOf(durable)).ackPending === 0);
      await new Promise((r) => setTimeout(r, 300));
      expect(attempts).toBe(3);
    } finally {
      await running.stop();
    }
  });

  it('dead-letters an undecodable message at once without calling the handler', async () => {
    const subject = caseSubject('garbage');
    const durable = 'dead-letter-undecodable';
    let calls = 0;
    const errors: unknown[] = [];
    const running = await runConsumer(nc, {
      stream: configStream,
      durable,
      filterSubjects: [subject],
      deadLetterSubject: deadLetterSubject(durable),
      onError: (err) => errors.push(err),
      handle: async () => {
        calls += 1;
      },
    });
    try {
      const h = natsHeaders();
      h.set('x-origin', 'test');
      await js.publish(subject, 'not a cloud event', { headers: h });
      const dead = await readOne(streamName(ns, 'sync'), deadLetterSubject(durable));
      expect(dead.headers?.get(deadLetterHeaders.reason)).toBe('undecodable');
      expect(dead.headers?.get(deadLetterHeaders.error)).toBe('CofferError:invalid_argument');
      expect(dead.headers?.get(deadLetterHeaders.deliveries)).toBe('1');
      expect(dead.headers?.get('x-origin')).toBe('test');
      expect(new TextDecoder().decode(dead.data)).toBe('not a cloud event');
      expect(calls).toBe(0);
      expect(errors).toHaveLength(1);
      await eventually(async () => (await pendingOf(durable)).ackPending === 0);
    } finally {
      await running.stop();
    }
  });

  it('dead-letters without handling a message whose final attempt was cut short', async () => {
    const subject = caseSubject('interrupted');
    const durable = 'dead-letter-interrupted';
    let calls = 0;
    const options = {
      stream: configStream,
      durable,
      filterSubjects: [subject],
      maxDeliver: 2,
      ackWaitMs: 300,
      deadLetterSubject: deadLetterSubject(durable),
      handle: async () => {
        calls += 1;
      },
    };
    await (await runConsumer(nc, options)).stop();
    await publish(syncRequested(subject));
    // Two deliveries taken and never acked, as if the worker died mid-handler each time.
    const raw = await js.consumers.get(configStream, durable);
    for (let i = 1; i <= 2; i++) {
      const msg = await raw.next({ expires: 3_000 });
      expect(msg?.info.deliveryCount).toBe(i);
    }
    const running = await runConsumer(nc, options);
    try {
      const dead = await readOne(streamName(ns, 'sync'), deadLetterSubject(durable));
      expect(dead.headers?.get(deadLetterHeaders.reason)).toBe('deliveries_exhausted');
      expect(dead.headers?.get(deadLetterHeaders.deliveries)).toBe('3');
      expect(calls).toBe(0);
    } finally {
      await running.stop();
    }
  });

  it('handles several filter subjects and resumes a durable where it left off', async () => {
    const a = caseSubject('multi_a');
    const b = caseSubject('multi_b');
    const durable = 'multi-resume';
    const seen: string[] = [];
    const options = {
      stream: configStream,
      durable,
      filterSubjects: [a, b],
      deadLetterSubject: deadLetterSubject(durable),
      handle: async (event: CloudEvent) => {
        seen.push((event.data as { jobId: string }).jobId);
      },
    };
    const serverVersion = nc.info?.version ?? '0.0.0';
    const [major, minor] = serverVersion.split('.').map(Number);
    // filter_subjects arrived in NATS 2.10; older servers only take one filter.
    if (major! < 2 || (major === 2 && minor! < 10)) options.filterSubjects = [a];
    let running = await runConsumer(nc, options);
    await publish(syncRequested(a, 'job-a1'));
    await eventually(() => seen.length === 1);
    await running.stop();
    await publish(syncRequested(a, 'job-a2'));
    if (options.filterSubjects.length === 2) await publish(syncRequested(b, 'job-b1'));
    running = await runConsumer(nc, options);
    try {
      await eventually(() => seen.length === options.filterSubjects.length + 1);
      expect(seen.sort()).toEqual(options.filterSubjects.length === 2 ? ['job-a1', 'job-a2', 'job-b1'] : ['job-a1', 'job-a2']);
    } finally {
      await running.stop();
    }
  });

  it('retries a handler that lost its connection in place, without using up deliveries or dead-lettering', async () => {
    const subject = caseSubject('transient');
    const durable = 'transient-in-place';
    let attempts = 0;
    const errors: unknown[] = [];
    const running = await runConsumer(nc, {
      stream: configStream,
      durable,
      filterSubjects: [subject],
      // One delivery only: without the in-place retry the first failure would dead-letter it.
      maxDeliver: 1,
      deadLetterSubject: deadLetterSubject(durable),
      retryDelayMs: () => 50,
      onError: (err) => errors.push(err),
      handle: async () => {
        attempts += 1;
        // What node-postgres throws when the server terminated the connection mid-query.
        if (attempts <= 3) throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
      },
    });
    try {
      await publish(syncRequested(subject));
      await eventually(async () => attempts === 4 && (await pendingOf(durable)).ackPending === 0);
      const info = await jsm.consumers.info(configStream, durable);
      // Delivered once, acked once: the three failures cost no redelivery.
      expect(info.delivered.consumer_seq).toBe(1);
      expect(info.num_redelivered).toBe(0);
      expect(errors).toHaveLength(3);
      const dead = await jsm.streams.info(configStream, { subjects_filter: deadLetterSubject(durable) }).catch(() => undefined);
      expect(dead?.state.subjects?.[deadLetterSubject(durable)] ?? 0).toBe(0);
    } finally {
      await running.stop();
    }
  });

  it('opens its pull subscription again when the durable consumer disappears, and keeps handling', async () => {
    const subject = caseSubject('resume');
    const durable = 'resume-after-delete';
    const seen: string[] = [];
    const errors: unknown[] = [];
    const running = await runConsumer(nc, {
      stream: configStream,
      durable,
      filterSubjects: [subject],
      deadLetterSubject: deadLetterSubject(durable),
      resumeDelayMs: 100,
      onError: (err) => errors.push(err),
      handle: async (event) => {
        seen.push((event.data as { jobId: string }).jobId);
      },
    });
    try {
      await publish(syncRequested(subject, 'before'));
      await eventually(() => seen.includes('before'));
      // The broker lost it (storage wiped, an operator deleted it): the loop must declare it again.
      await jsm.consumers.delete(configStream, durable);
      await eventually(async () => (await jsm.consumers.info(configStream, durable).then(() => true, () => false)), 60_000);
      await publish(syncRequested(subject, 'after'));
      await eventually(() => seen.includes('after'), 30_000);
      console.log(`consumer resumed after deletion; errors reported meanwhile: ${errors.length}`);
    } finally {
      await running.stop();
    }
  }, 90_000);

  it('stop() waits for the handler in flight, acks it, and takes no more messages', async () => {
    const subject = caseSubject('stop');
    const durable = 'stop-waits';
    const held = gate();
    const seen: string[] = [];
    const running = await runConsumer(nc, {
      stream: configStream,
      durable,
      filterSubjects: [subject],
      deadLetterSubject: deadLetterSubject(durable),
      handle: async (event) => {
        seen.push(event.id);
        await held.promise;
      },
    });
    await publish(syncRequested(subject));
    await eventually(() => seen.length === 1);
    let stopped = false;
    const stopping = running.stop().then(() => {
      stopped = true;
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(stopped).toBe(false);
    held.open();
    await stopping;
    expect(stopped).toBe(true);
    await eventually(async () => (await pendingOf(durable)).ackPending === 0);
    await publish(syncRequested(subject));
    await new Promise((r) => setTimeout(r, 300));
    expect(seen).toHaveLength(1);
    expect((await pendingOf(durable)).pending).toBe(1);
  });
});
