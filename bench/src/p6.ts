// P6: the secrets log and read model at 10⁶ versions. The fill appends real `SecretVersionWritten`
// events (hash-chained onto the main chain, as the service chains them) with random ciphertexts
// and data keys that are never opened; the read model is then made by the rebuild, which is timed.
import { randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { chainHash, GENESIS_HASH } from '@coffer/event-store';

const ROWS_PER_STATEMENT = 5_000;
const FILL_WORKSPACES = 1_000;

/**
 * Appends `count` one-version secrets to the secrets log of `schema`, in one transaction holding the
 * main chain's lock, `ROWS_PER_STATEMENT` events per statement, with their data keys (random bytes:
 * these versions are never hydrated). Returns the seconds it took.
 */
export async function fillSecretVersions(
  client: pg.Client,
  options: { schema: string; prefix: string; count: number; kekId: string; kekVersion: number; progress?: (done: number) => void },
): Promise<number> {
  const began = performance.now();
  const s = `"${options.schema}"`;
  await client.query('begin');
  try {
    await client.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [`coffer-chain:${options.schema}`]);
    const head = await client.query<{ hash: string }>(`select hash from ${s}.events where chain = 'main' order by global_position desc limit 1`);
    let prevHash = head.rows[0]?.hash ?? GENESIS_HASH;
    const noise = randomBytes(1 << 16);
    for (let done = 0; done < options.count; done += ROWS_PER_STATEMENT) {
      const n = Math.min(ROWS_PER_STATEMENT, options.count - done);
      const cols = { id: [] as string[], stream: [] as string[], data: [] as string[], at: [] as string[], prev: [] as string[], hash: [] as string[] };
      const recordedAt = new Date().toISOString();
      for (let i = 0; i < n; i++) {
        const workspaceId = `fill-${(done + i) % FILL_WORKSPACES}`;
        const base = `${options.prefix}_workspace_${workspaceId}_secret_${randomUUID()}`;
        const offset = (done + i) % (noise.length - 48);
        const data = {
          coordinate: `${base}_v1`,
          baseCoordinate: base,
          version: 1,
          workspaceId,
          ciphertext: noise.subarray(offset, offset + 48).toString('base64'),
          dataKeyId: randomUUID(),
          kekId: options.kekId,
          kekVersion: options.kekVersion,
          expiresAt: null,
          writtenAt: recordedAt,
          ownerId: null,
          ownerWorkspaceId: workspaceId,
        };
        const content = { eventId: randomUUID(), streamId: `secret-${base}`, streamVersion: 1, type: 'SecretVersionWritten', data, metadata: { actor: 'bench-fill' }, recordedAt };
        const hash = chainHash(prevHash, content);
        cols.id.push(content.eventId);
        cols.stream.push(content.streamId);
        cols.data.push(JSON.stringify(data));
        cols.at.push(recordedAt);
        cols.prev.push(prevHash);
        cols.hash.push(hash);
        prevHash = hash;
      }
      // `with ordinality … order by` keeps the chain order in the identity column.
      await client.query(
        `insert into ${s}.events (event_id, stream_id, stream_version, type, data, metadata, recorded_at, chain, prev_hash, hash)
         select t.id, t.stream, 1, 'SecretVersionWritten', t.data::jsonb, '{"actor":"bench-fill"}'::jsonb, t.at::timestamptz, 'main', t.prev, t.hash
         from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) with ordinality as t(id, stream, data, at, prev, hash, n)
         order by t.n`,
        [cols.id, cols.stream, cols.data, cols.at, cols.prev, cols.hash],
      );
      options.progress?.(done + n);
    }
    // The data keys of the filled versions (wrapped keys nobody can open: they are never hydrated).
    await client.query(
      `insert into ${s}.data_keys (data_key_id, coordinate, kek_id, kek_version, wrapped, created_at)
       select (e.data->>'dataKeyId')::uuid, e.data->>'coordinate', e.data->>'kekId', (e.data->>'kekVersion')::int,
         decode(md5(e.event_id::text) || md5(e.hash), 'hex'), e.recorded_at
       from ${s}.events e where e.type = 'SecretVersionWritten' and e.metadata->>'actor' = 'bench-fill'`,
    );
    await client.query('commit');
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  }
  return (performance.now() - began) / 1000;
}
