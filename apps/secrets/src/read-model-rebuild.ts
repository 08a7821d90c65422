import { sql, type Kysely } from 'kysely';
import type { SecretsDatabase } from './secrets.database';

/** What a rebuild did. */
export interface RebuildResult {
  events: number;
  versions: number;
  ms: number;
}

/**
 * Rebuilds the `secret_versions` read model from the event log, set-wise (three statements of work, however
 * many events), in one transaction: every row from its `SecretVersionWritten`, then the state of the
 * destroyed and expired ones and the KEK version of the re-wrapped ones from their later events.
 *
 * Two tables are not projections and are left alone: `data_keys` holds the wrapped data keys, which
 * the log never holds (deleting a secret deletes its key: crypto-shredding); `kek_versions` is what
 * the KMS was last seen to hold. The table is locked for the rebuild: writes and hydrates wait for it
 * (a write holding the table commits first; one that appended meanwhile projects onto the new rows).
 */
export async function rebuildSecretVersions(db: Kysely<SecretsDatabase>, schema: string): Promise<RebuildResult> {
  const s = sql.id(schema);
  const began = performance.now();
  return db.transaction().execute(async (trx) => {
    await sql`lock table ${s}.secret_versions in access exclusive mode`.execute(trx);
    await sql`truncate ${s}.secret_versions`.execute(trx);
    const inserted = await sql`
      insert into ${s}.secret_versions (coordinate, base_coordinate, workspace_id, version, state, ciphertext, data_key_id, kek_id, kek_version,
        expires_at, created_at, created_by, owner_id, owner_workspace_id, write_id)
      select e.data->>'coordinate', e.data->>'baseCoordinate', e.data->>'workspaceId', (e.data->>'version')::int, 'active',
        decode(e.data->>'ciphertext', 'base64'), (e.data->>'dataKeyId')::uuid, e.data->>'kekId', (e.data->>'kekVersion')::int,
        (e.data->>'expiresAt')::timestamptz, (e.data->>'writtenAt')::timestamptz, coalesce(e.metadata->>'actor', ''),
        e.data->>'ownerId', e.data->>'ownerWorkspaceId', e.data->>'writeId'
      from ${s}.events e where e.type = 'SecretVersionWritten' order by e.global_position`.execute(trx);
    // As the inline projections do: the last of a version's destroy or expiry events sets its state.
    await sql`
      update ${s}.secret_versions v set state = x.state, destroyed_at = x.at
      from (
        select distinct on (e.data->>'coordinate') e.data->>'coordinate' as coordinate,
          case e.type when 'SecretExpired' then 'expired' else 'destroyed' end as state,
          coalesce(e.data->>'destroyedAt', e.data->>'expiredAt')::timestamptz as at
        from ${s}.events e where e.type in ('SecretVersionDestroyed', 'SecretExpired')
        order by e.data->>'coordinate', e.global_position desc
      ) x
      where v.coordinate = x.coordinate`.execute(trx);
    await sql`
      update ${s}.secret_versions v set kek_version = x.kek_version
      from (
        select distinct on (e.data->>'coordinate') e.data->>'coordinate' as coordinate, (e.data->>'toKekVersion')::int as kek_version
        from ${s}.events e where e.type = 'DataKeyRewrapped'
        order by e.data->>'coordinate', e.global_position desc
      ) x
      where v.coordinate = x.coordinate`.execute(trx);
    const counted = await sql<{ n: string }>`select count(*)::text as n from ${s}.events`.execute(trx);
    return { events: Number(counted.rows[0]!.n), versions: Number(inserted.numAffectedRows ?? 0n), ms: performance.now() - began };
  });
}
