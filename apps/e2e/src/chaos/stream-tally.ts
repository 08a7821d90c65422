import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { streamName, type MessagingNamespace, type ServiceName } from '@coffer/contracts';

/** The four services' streams, keyed like their Postgres schemas. */
export const tallied: readonly { service: ServiceName; schema: string }[] = [
  { service: 'auth', schema: 'auth' },
  { service: 'config', schema: 'config' },
  { service: 'secrets', schema: 'secrets' },
  { service: 'sync', schema: 'sync' },
];

/** How often each event id (the `ce-id` header) is on each service's stream; read incrementally. */
export interface StreamTally {
  /** Reads the messages appended since the last call; false when NATS did not answer. */
  catchUp(): Promise<boolean>;
  /** Event id → copies on the stream of `service`. */
  counts(service: ServiceName): ReadonlyMap<string, number>;
  /** Dead-lettered copies seen (they repeat an event id on purpose and are not counted as copies). */
  deadLetters(): number;
}

/** A tally of the namespace's streams on the NATS at `url`. */
export function createStreamTally(url: string, ns: MessagingNamespace): StreamTally {
  const next = new Map<ServiceName, number>(tallied.map((t) => [t.service, 1]));
  const counts = new Map<ServiceName, Map<string, number>>(tallied.map((t) => [t.service, new Map()]));
  let deadLetters = 0;

  async function readStream(js: ReturnType<typeof jetstream>, jsm: Awaited<ReturnType<typeof jetstreamManager>>, service: ServiceName): Promise<void> {
    const name = streamName(ns, service);
    const info = await jsm.streams.info(name).catch(() => undefined);
    if (!info) return;
    const last = info.state.last_seq;
    let seq = next.get(service)!;
    if (seq > last) return;
    // Messages aged out or deleted leave a gap; start at the first one the stream still has.
    seq = Math.max(seq, info.state.first_seq);
    const consumer = await js.consumers.get(name, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: seq, headers_only: true });
    const mine = counts.get(service)!;
    while (seq <= last) {
      const batch = await consumer.fetch({ max_messages: 1_000, expires: 2_000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        seq = m.seq + 1;
        const id = m.headers?.get('ce-id') ?? '';
        if (m.subject.includes('.dead_letter.')) deadLetters++;
        else if (id) mine.set(id, (mine.get(id) ?? 0) + 1);
        if (m.seq >= last) break;
      }
      if (got === 0) break;
    }
    await consumer.delete().catch(() => undefined);
    next.set(service, seq);
  }

  return {
    async catchUp() {
      let nc;
      try {
        nc = await connect({ servers: url, reconnect: false, timeout: 3_000 });
      } catch {
        return false;
      }
      try {
        const js = jetstream(nc);
        const jsm = await jetstreamManager(nc);
        for (const t of tallied) await readStream(js, jsm, t.service);
        return true;
      } catch {
        return false;
      } finally {
        await nc.close().catch(() => undefined);
      }
    },
    counts: (service) => counts.get(service)!,
    deadLetters: () => deadLetters,
  };
}
