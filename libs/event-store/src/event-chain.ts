import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { EventStoreDatabase } from './event-store-database';
import { quotedSchema } from './event-store-schema';

/** The `prev_hash` of the first event of a log. */
export const GENESIS_HASH = '0'.repeat(64);

/** What the chain hash covers of an event: everything but its position and transaction id. */
export interface ChainedContent {
  eventId: string;
  streamId: string;
  streamVersion: number;
  type: string;
  data: unknown;
  metadata: unknown;
  /** ISO 8601 with milliseconds, as stored. */
  recordedAt: string;
}

// JSON with object keys sorted at every depth: jsonb does not keep the order keys were written in.
function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonical(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
}

/** @internal sha256(prevHash | canonical content), hex. */
export function chainHash(prevHash: string, content: ChainedContent): string {
  return createHash('sha256').update(prevHash).update('|').update(canonical(content)).digest('hex');
}

/** The verdict of {@link verifyEventChain}. */
export type ChainVerdict =
  | { ok: true; checked: number }
  | {
      ok: false;
      checked: number;
      /** The first event whose link does not hold. */
      broken: { globalPosition: string; eventId: string; streamId: string; type: string };
      reason: 'content does not match its hash' | 'previous hash does not match';
    };

/**
 * Walks a schema's log in order, recomputing every hash of every chain (the main one and any a
 * stream was given of its own); reports the first event whose link is broken.
 */
export async function verifyEventChain(db: Kysely<EventStoreDatabase>, schema: string, options: { batchSize?: number } = {}): Promise<ChainVerdict> {
  const s = quotedSchema(schema);
  const batchSize = options.batchSize ?? 1000;
  const last = new Map<string, string>();
  let after = '0';
  let checked = 0;
  for (;;) {
    const { rows } = await sql<{
      global_position: string;
      event_id: string;
      stream_id: string;
      stream_version: number;
      type: string;
      data: unknown;
      metadata: unknown;
      recorded_at: Date;
      chain: string;
      prev_hash: string;
      hash: string;
    }>`select global_position::text, event_id::text, stream_id, stream_version, type, data, metadata, recorded_at, chain, prev_hash, hash
       from ${s}.events e where e.global_position > ${after}::bigint order by e.global_position limit ${batchSize}`.execute(db);
    if (rows.length === 0) return { ok: true, checked };
    for (const r of rows) {
      const broken = { globalPosition: r.global_position, eventId: r.event_id, streamId: r.stream_id, type: r.type };
      const prev = last.get(r.chain) ?? GENESIS_HASH;
      if (r.prev_hash !== prev) return { ok: false, checked, broken, reason: 'previous hash does not match' };
      const expected = chainHash(prev, {
        eventId: r.event_id,
        streamId: r.stream_id,
        streamVersion: Number(r.stream_version),
        type: r.type,
        data: r.data,
        metadata: r.metadata,
        recordedAt: r.recorded_at.toISOString(),
      });
      if (expected !== r.hash) return { ok: false, checked, broken, reason: 'content does not match its hash' };
      last.set(r.chain, r.hash);
      checked++;
    }
    after = rows.at(-1)!.global_position;
  }
}
