import { DiscardPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamName, type MessagingNamespace } from '@coffer/contracts';
import { deleteStreams, testNatsUrl, uniqueNamespace } from '@coffer/testing';
import { connectNats } from './connection';
import { DEFAULT_STREAM_SETTINGS, DUPLICATE_WINDOW_MS, ensureServiceStream, type StreamSettings } from './service-stream';

let nc: NatsConnection;
let jsm: JetStreamManager;
let ns: MessagingNamespace;
let other: MessagingNamespace;

const MiB = 1024 ** 2;
// Small sizes: JetStream reserves max_bytes of storage for every stream on the shared test server.
const settings: StreamSettings = { maxAgeMs: 3 * 86_400_000, maxBytes: 64 * MiB, maxMsgs: 100_000, replicas: 1 };

beforeAll(async () => {
  ns = uniqueNamespace();
  other = uniqueNamespace();
  nc = await connectNats({ servers: testNatsUrl(), name: 'service-stream-int-test' });
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  await nc?.close();
  if (ns) await deleteStreams(testNatsUrl(), ns);
  if (other) await deleteStreams(testNatsUrl(), other);
});

describe('ensureServiceStream settings', () => {
  it('creates the stream with the given retention, size limits and replicas, as JetStream reports them', async () => {
    const name = await ensureServiceStream(nc, ns, 'config', settings);
    const { config } = await jsm.streams.info(name);
    expect(config.max_age).toBe(nanos(settings.maxAgeMs));
    expect(config.max_bytes).toBe(64 * MiB);
    expect(config.max_msgs).toBe(100_000);
    expect(config.num_replicas).toBe(1);
    expect(config.discard).toBe(DiscardPolicy.Old);
    expect(config.retention).toBe(RetentionPolicy.Limits);
    expect(config.storage).toBe(StorageType.File);
    expect(config.duplicate_window).toBe(nanos(DUPLICATE_WINDOW_MS));
  });

  it('updates an existing stream, one made before it had limits included, when the settings change, keeping its messages', async () => {
    const name = streamName(ns, 'secrets');
    await jsm.streams.add({ name, subjects: [`${ns.subjectRoot}.secrets.>`], storage: StorageType.File });
    await jetstream(nc).publish(`${ns.subjectRoot}.secrets.kept`, 'kept');
    await ensureServiceStream(nc, ns, 'secrets', settings);
    let info = await jsm.streams.info(name);
    expect([info.config.max_age, info.config.max_bytes, info.config.max_msgs]).toEqual([nanos(settings.maxAgeMs), 64 * MiB, 100_000]);

    const changed: StreamSettings = { maxAgeMs: 0, maxBytes: 32 * MiB, maxMsgs: -1, replicas: 1 };
    await ensureServiceStream(nc, ns, 'secrets', changed);
    info = await jsm.streams.info(name);
    expect([info.config.max_age, info.config.max_bytes, info.config.max_msgs, info.config.num_replicas]).toEqual([0, 32 * MiB, -1, 1]);
    expect(info.config.duplicate_window).toBe(nanos(DUPLICATE_WINDOW_MS));
    expect(info.state.messages).toBe(1);
  });

  it('leaves the owner’s limits alone when another service declares the stream to consume it, and uses the defaults when it is missing', async () => {
    const owned = await ensureServiceStream(nc, ns, 'sync', settings);
    await ensureServiceStream(nc, ns, 'sync');
    expect((await jsm.streams.info(owned)).config.max_bytes).toBe(64 * MiB);

    const fresh = await ensureServiceStream(nc, ns, 'auth');
    const { config } = await jsm.streams.info(fresh);
    expect([config.max_age, config.max_bytes, config.max_msgs, config.num_replicas]).toEqual([
      nanos(DEFAULT_STREAM_SETTINGS.maxAgeMs),
      DEFAULT_STREAM_SETTINGS.maxBytes,
      DEFAULT_STREAM_SETTINGS.maxMsgs,
      DEFAULT_STREAM_SETTINGS.replicas,
    ]);
  });

  it('drops the oldest messages beyond a limit, so subscribers can replay only what the limits keep', async () => {
    const name = await ensureServiceStream(nc, ns, 'config', { ...settings, maxMsgs: 3 });
    const js = jetstream(nc);
    for (let i = 1; i <= 5; i++) await js.publish(`${ns.subjectRoot}.config.limited`, String(i));
    const { state } = await jsm.streams.info(name);
    expect(state.messages).toBe(3);
    expect(new TextDecoder().decode((await jsm.streams.getMessage(name, { seq: state.first_seq }))!.data)).toBe('3');
  });

  it('refuses settings that would break the duplicate window, and says which stream JetStream refused and why', async () => {
    await expect(ensureServiceStream(nc, ns, 'config', { ...settings, maxAgeMs: 60_000 })).rejects.toThrow(/maxAgeMs/);
    // One NATS server cannot keep three copies of a new stream.
    await expect(ensureServiceStream(nc, other, 'config', { ...settings, replicas: 3 })).rejects.toThrow(
      new RegExp(`${streamName(other, 'config')}.*replicas 3.*not supported`),
    );
  });
});
