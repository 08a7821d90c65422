import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EPHEMERAL_WORKSPACE_ID } from '@coffer/contracts';
import { createEventStore, migrateEventStore, verifyEventChain } from '@coffer/event-store';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import type { Kysely } from 'kysely';
import { createDataKeyCache } from './data-key-cache';
import { bindingOf, openWithKey } from './envelope';
import { createLocalKms, generateKeyringDocument, parseKeyring } from './kms/local-kms';
import { migrateSecretsReadModel } from './secrets.postgres';
import { createSecretsService, secretsChainOf, type SecretsService } from './secrets.service';

const schema = 'secrets';
const ws = randomUUID();
const actor = { subject: 'config' };
const canary = `canary-secret-${randomUUID()}`;

describe('secrets service against Postgres', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let service: SecretsService;
  let now = new Date('2026-01-01T00:00:00Z');
  const keyring = parseKeyring(generateKeyringDocument());

  beforeAll(async () => {
    tdb = await createTestDatabase();
    db = createDatabase(tdb.url);
    await migrateEventStore(db, schema);
    await migrateSecretsReadModel(db, schema);
    service = createSecretsService({
      db,
      store: createEventStore(db, { schema, chainOf: secretsChainOf }),
      kms: createLocalKms(keyring),
      schema,
      coordinatePrefix: 'coffer',
      namespace: uniqueNamespace(),
      ephemeralTtlMs: 2 * 3600 * 1000,
      cache: createDataKeyCache({ maxEntries: 100, ttlMs: 60_000, clock: () => now.getTime() }),
      rotationPeriodMs: 365 * 24 * 3600 * 1000,
      clock: () => now,
      newId: randomUUID,
    });
  });

  afterAll(async () => {
    await db?.destroy();
    await tdb?.drop();
  });

  async function rawRows(sql: string, params: unknown[] = []) {
    const c = new pg.Client({ connectionString: tdb.url });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows;
    } finally {
      await c.end();
    }
  }

  it('writes v1 then v2 of the same base and hydrates the latest', async () => {
    const [v1] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: `${canary}-1` }], actor);
    expect(v1!.coordinate).toMatch(new RegExp(`^coffer_workspace_${ws}_secret_[0-9a-f-]{36}_v1$`));
    const [v2] = await service.writeSecrets(ws, [{ baseCoordinate: v1!.baseCoordinate, expectedVersion: 1, value: `${canary}-2` }], actor);
    expect(v2!.coordinate).toBe(v1!.coordinate.replace(/_v1$/, '_v2'));
    const partial = JSON.stringify({ host: 'h', nested: { token: { _secret: v2!.coordinate } }, old: { _secret: v1!.coordinate } });
    const hydrated = JSON.parse(await service.hydrateConfig(ws, partial, 'job:1', { subject: 'sync-worker' }));
    expect(hydrated).toEqual({ host: 'h', nested: { token: `${canary}-2` }, old: `${canary}-1` });
  });

  it('a stale expected version gets version_conflict and writes nothing', async () => {
    const [v1] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: 'value-a' }], actor);
    await service.writeSecrets(ws, [{ baseCoordinate: v1!.baseCoordinate, expectedVersion: 1, value: 'value-b' }], actor);
    const before = await rawRows('select count(*)::int as n from secrets.events');
    await expect(
      service.writeSecrets(ws, [
        { baseCoordinate: '', expectedVersion: 0, value: 'value-new' },
        { baseCoordinate: v1!.baseCoordinate, expectedVersion: 1, value: 'value-c' },
      ], actor),
    ).rejects.toMatchObject({ code: 'version_conflict' });
    expect(await rawRows('select count(*)::int as n from secrets.events')).toEqual(before);
  });

  it('errors name no stream and no coordinate: concurrent writers of one base, and a hydrate of a missing secret', async () => {
    const [v1] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: 'value-race' }], actor);
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => service.writeSecrets(ws, [{ baseCoordinate: v1!.baseCoordinate, expectedVersion: 1, value: `value-race-${i}` }], actor)),
    );
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as { code: string; message: string; details: unknown });
    expect(refused.length).toBeGreaterThan(0);
    const secretId = v1!.baseCoordinate.split('_secret_')[1]!;
    for (const err of refused) {
      expect(err.code).toBe('version_conflict');
      const text = JSON.stringify({ message: err.message, details: err.details });
      expect(text).not.toMatch(/stream|_secret_|coffer_workspace/);
      expect(text).not.toContain(secretId);
    }
    const missing = `${v1!.baseCoordinate}_v99`;
    const err = (await service.hydrateConfig(ws, JSON.stringify({ t: { _secret: missing } }), 'job:2', { subject: 'sync-worker' }).catch((e: unknown) => e)) as Error;
    expect(err).toMatchObject({ code: 'not_found' });
    expect(err.message).not.toContain(secretId);
  });

  it('stores neither plaintext nor the wrapped key in the event log', async () => {
    const events = await rawRows('select data::text as d from secrets.events');
    expect(events.length).toBeGreaterThan(0);
    for (const e of events) {
      expect(e.d).not.toContain(canary);
      expect(e.d).not.toContain('wrapped');
    }
    const outbox = await rawRows('select headers::text || body as m from secrets.outbox');
    for (const m of outbox) {
      expect(m.m).not.toContain(canary);
      expect(m.m).not.toContain('ciphertext');
    }
  });

  it('deleting a base shreds every version: the data keys are gone and the logged ciphertext stays unreadable', async () => {
    const [v1] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: `${canary}-shred` }], actor);
    const destroyed = await service.deleteSecrets(ws, [v1!.baseCoordinate], actor);
    expect(destroyed).toEqual([v1!.coordinate]);
    await expect(service.hydrateConfig(ws, JSON.stringify({ t: { _secret: v1!.coordinate } }), 'job', actor)).rejects.toMatchObject({ code: 'not_found' });
    expect(await rawRows('select * from secrets.data_keys where coordinate = $1', [v1!.coordinate])).toEqual([]);
    const [logged] = await rawRows(`select data->>'ciphertext' as c from secrets.events where type = 'SecretVersionWritten' and data->>'coordinate' = $1`, [v1!.coordinate]);
    const ciphertext = Buffer.from(logged.c, 'base64');
    for (const key of keyring.keys.values()) {
      expect(() => openWithKey(key, ciphertext, bindingOf(ws, v1!.coordinate))).toThrow();
    }
    const versions = await service.listSecretVersions(ws, v1!.baseCoordinate);
    expect(versions).toMatchObject([{ version: 1, state: 'destroyed', createdBy: 'config' }]);
  });

  it('deleting a version again, or many times at once, succeeds and destroys it once', async () => {
    const [v1] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: 'value-shred-once-1' }], actor, { ownerId: 'actor-1' });
    const [v2] = await service.writeSecrets(ws, [{ baseCoordinate: v1!.baseCoordinate, expectedVersion: 1, value: 'value-shred-once-2' }], actor, { ownerId: 'actor-1' });
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => service.deleteSecrets(ws, [v1!.coordinate], actor, 'actor-1')));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill('fulfilled'));
    const destroyedBy = results.map((r) => (r as PromiseFulfilledResult<string[]>).value);
    expect(destroyedBy.filter((d) => d.length === 1)).toEqual([[v1!.coordinate]]);
    expect(await service.deleteSecrets(ws, [v1!.coordinate], actor, 'actor-1')).toEqual([]);
    // A whole-base delete racing a single-version one: v2 is destroyed once, v1 not again.
    const [base, one] = await Promise.all([service.deleteSecrets(ws, [v1!.baseCoordinate], actor, 'actor-1'), service.deleteSecrets(ws, [v2!.coordinate], actor, 'actor-1')]);
    expect([...base, ...one]).toEqual([v2!.coordinate]);
    const events = await rawRows(`select data->>'coordinate' as c from secrets.events where type = 'SecretVersionDestroyed' and data->>'baseCoordinate' = $1`, [v1!.baseCoordinate]);
    expect(events.map((e) => e.c).sort()).toEqual([v1!.coordinate, v2!.coordinate]);
  });

  it('a delete by write id destroys only the versions that write made, and names the field of bad input', async () => {
    const [v1] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: 'value-write-id-1' }], actor, { ownerId: 'actor-w', writeId: 'write-a' });
    const [v2] = await service.writeSecrets(ws, [{ baseCoordinate: v1!.baseCoordinate, expectedVersion: 1, value: 'value-write-id-2' }], actor, { ownerId: 'actor-w', writeId: 'write-b' });
    // write-a names v2 too (it meant to write it), but write-b made it: only v1 goes.
    expect(await service.deleteSecrets(ws, [v1!.coordinate, v2!.coordinate], actor, 'actor-w', 'write-a')).toEqual([v1!.coordinate]);
    expect(await service.deleteSecrets(ws, [v2!.coordinate, `${v1!.baseCoordinate}_v3`], actor, 'actor-w', 'write-a')).toEqual([]);
    expect((await service.listSecretVersions(ws, v1!.baseCoordinate)).map((v) => [v.version, v.state])).toEqual([
      [1, 'destroyed'],
      [2, 'active'],
    ]);
    await expect(service.deleteSecrets(ws, [v1!.baseCoordinate], actor, 'actor-w', 'write-b')).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field: 'coordinates[0]' }] });
    await expect(service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: 'x' }], actor, { ownerId: 'actor-w', writeId: 'no spaces' })).rejects.toMatchObject({
      code: 'invalid_argument',
      details: [{ field: 'write_id' }],
    });
  });

  it('answers the highest version ever written of each base, destroyed ones included', async () => {
    const [v1] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: 'value-latest-1' }], actor);
    await service.writeSecrets(ws, [{ baseCoordinate: v1!.baseCoordinate, expectedVersion: 1, value: 'value-latest-2' }], actor);
    await service.deleteSecrets(ws, [`${v1!.baseCoordinate}_v2`], actor);
    const never = `coffer_workspace_${ws}_secret_${randomUUID()}`;
    expect(await service.latestVersions(ws, [never, v1!.baseCoordinate])).toEqual([
      { baseCoordinate: never, version: 0 },
      { baseCoordinate: v1!.baseCoordinate, version: 2 },
    ]);
    // The next version is planned from it: a destroyed v2 is never written again.
    const [v3] = await service.writeSecrets(ws, [{ baseCoordinate: v1!.baseCoordinate, expectedVersion: 2, value: 'value-latest-3' }], actor);
    expect(v3!.version).toBe(3);
    const other = `coffer_workspace_${randomUUID()}_secret_${randomUUID()}`;
    await expect(service.latestVersions(ws, [v1!.baseCoordinate, other])).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field: 'base_coordinates[1]' }] });
    await expect(service.latestVersions(ws, ['nonsense'])).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field: 'base_coordinates[0]' }] });
    await expect(service.latestVersions(ws, Array(101).fill(never))).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field: 'base_coordinates' }] });
  });

  it('refuses to update or delete stored events', async () => {
    await expect(rawRows(`update secrets.events set data = '{}'::jsonb`)).rejects.toThrow();
    await expect(rawRows('delete from secrets.events')).rejects.toThrow();
  });

  it('check/discover secrets expire after the TTL', async () => {
    const [w] = await service.writeSecrets(EPHEMERAL_WORKSPACE_ID, [{ baseCoordinate: '', expectedVersion: 0, value: 'ephemeral-value' }], actor, { ownerId: 'job-1', ownerWorkspaceId: ws });
    const partial = JSON.stringify({ t: { _secret: w!.coordinate } });
    expect(JSON.parse(await service.hydrateConfig(ws, partial, 'check', actor, 'job-1'))).toEqual({ t: 'ephemeral-value' });
    now = new Date(now.getTime() + 2 * 3600 * 1000 + 1);
    await expect(service.hydrateConfig(ws, partial, 'check', actor, 'job-1')).rejects.toThrow(/expired/);
  });

  it('refuses coordinates of another workspace and bad input, naming the field', async () => {
    const other = randomUUID();
    const [w] = await service.writeSecrets(other, [{ baseCoordinate: '', expectedVersion: 0, value: 'other-ws' }], actor);
    await expect(service.hydrateConfig(ws, JSON.stringify({ t: { _secret: w!.coordinate } }), 'x', actor)).rejects.toMatchObject({ code: 'permission_denied' });
    await expect(service.writeSecrets(ws, [{ baseCoordinate: w!.baseCoordinate, expectedVersion: 0, value: 'x' }], actor)).rejects.toThrow(/secrets\[0\]\.base_coordinate/);
    await expect(service.hydrateConfig(ws, '{not json', 'x', actor)).rejects.toThrow(/partial_config_json/);
    await expect(service.writeSecrets('bad ws!', [{ baseCoordinate: '', expectedVersion: 0, value: 'x' }], actor)).rejects.toThrow(/workspace_id/);
  });
  it('concurrent hydrates are checked one by one and audited together: each gets its own answer, one audit event per success, the chains intact', async () => {
    const spaces = Array.from({ length: 5 }, () => randomUUID());
    const written = await Promise.all(spaces.map((w, i) => service.writeSecrets(w, [{ baseCoordinate: '', expectedVersion: 0, value: `${canary}-ws${i}` }], actor)));
    const [gone] = await service.writeSecrets(spaces[0]!, [{ baseCoordinate: '', expectedVersion: 0, value: 'doomed' }], actor);
    await service.deleteSecrets(spaces[0]!, [gone!.coordinate], actor);
    const ref = (c: string) => JSON.stringify({ token: { _secret: c } });
    const calls = Array.from({ length: 60 }, (_, i) => {
      const k = i % 5;
      // Every 7th call asks for another workspace's coordinate, every 11th for a deleted one.
      if (i % 7 === 3) return service.hydrateConfig(spaces[k]!, ref(written[(k + 1) % 5]![0]!.coordinate), `job-${i}`, { subject: 'sync-worker' });
      if (i % 11 === 5) return service.hydrateConfig(spaces[0]!, ref(gone!.coordinate), `job-${i}`, { subject: 'sync-worker' });
      return service.hydrateConfig(spaces[k]!, ref(written[k]![0]!.coordinate), `job-${i}`, { subject: 'sync-worker' });
    });
    const settled = await Promise.allSettled(calls);
    let ok = 0;
    for (const [i, r] of settled.entries()) {
      const k = i % 5;
      if (i % 7 === 3) expect(r, `call ${i}`).toMatchObject({ status: 'rejected', reason: { code: 'permission_denied' } });
      else if (i % 11 === 5) expect(r, `call ${i}`).toMatchObject({ status: 'rejected', reason: { code: 'not_found' } });
      else {
        expect(r.status === 'fulfilled' && JSON.parse(r.value).token, `call ${i}`).toBe(`${canary}-ws${k}`);
        ok++;
      }
    }
    const audited = await rawRows(
      `select event_id::text, data->>'workspaceId' as ws, data->'coordinates' as coordinates, data->>'reason' as reason from secrets.events
        where type = 'SecretsHydrated' and data->>'reason' like 'job-%' and stream_id = any($1) order by global_position`,
      [spaces.map((w) => `hydrations-${w}`)],
    );
    expect(audited).toHaveLength(ok);
    const versions = await rawRows(`select stream_id, array_agg(stream_version order by stream_version) as v from secrets.events where stream_id = any($1) group by stream_id`, [spaces.map((w) => `hydrations-${w}`)]);
    for (const r of versions) expect(r.v).toEqual(Array.from({ length: r.v.length }, (_, i) => i + 1));
    // Published in batches: each audited hydrate listed once, in the order of the log, in fewer messages than hydrates.
    const messages = (await rawRows(`select headers, body from secrets.outbox where subject like '%.secret.hydrated_batch' order by transaction_id, position`))
      .map((r) => ({ headers: r.headers as Record<string, string>, hydrations: (JSON.parse(r.body) as { hydrations: Record<string, unknown>[] }).hydrations }))
      .filter((m) => m.hydrations.some((h) => (spaces as string[]).includes(h.workspaceId as string)));
    const listed = messages.flatMap((m) => m.hydrations);
    expect(listed.map((h) => h.eventId)).toEqual(audited.map((a) => a.event_id));
    expect(listed).toEqual(audited.map((a) => ({ workspaceId: a.ws, coordinates: a.coordinates, actor: 'sync-worker', reason: a.reason, occurredAt: expect.any(String), eventId: a.event_id })));
    expect(messages.length).toBeLessThan(ok / 2);
    for (const m of messages) expect(m.headers['ce-type']).toBe('coffer.secrets.v1.SecretsHydratedBatch');
  });

  it('a batch of hydrates of large configs is published in messages of at most 256 KiB; a config of more than 1,000 secrets is refused', async () => {
    const big = randomUUID();
    const written = [];
    for (let i = 0; i < 10; i++) {
      written.push(...(await service.writeSecrets(big, Array.from({ length: 100 }, (_, j) => ({ baseCoordinate: '', expectedVersion: 0, value: `v-${i}-${j}` })), actor)));
    }
    const partial = JSON.stringify({ keys: written.map((w) => ({ _secret: w.coordinate })) });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => service.hydrateConfig(big, partial, `large-${i}`, actor)));
    for (const a of answers) expect((JSON.parse(a) as { keys: string[] }).keys).toHaveLength(1000);
    const bodies = (await rawRows(`select body from secrets.outbox where subject like '%.secret.hydrated_batch' and body like $1`, [`%${big}%`])).map((r) => r.body as string);
    const listed = bodies.flatMap((b) => (JSON.parse(b) as { hydrations: { reason: string; coordinates: string[] }[] }).hydrations);
    expect(listed.map((h) => h.reason).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `large-${i}`).sort());
    for (const h of listed) expect(h.coordinates).toHaveLength(1000);
    for (const b of bodies) expect(Buffer.byteLength(b)).toBeLessThanOrEqual(256 * 1024);
    expect(bodies.length).toBeGreaterThan(1);

    const tooMany = JSON.stringify({ keys: Array.from({ length: 1001 }, () => ({ _secret: `coffer_workspace_${big}_secret_${randomUUID()}_v1` })) });
    await expect(service.hydrateConfig(big, tooMany, 'x', actor)).rejects.toMatchObject({
      code: 'invalid_argument',
      details: [{ field: 'partial_config_json', reason: 'too many secrets' }],
    });
  });

  it("a workspace's writes take turns on its own chain: a write of another workspace commits while one holds the lock; every chain verifies", async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    // An open transaction holds workspace a's chain lock, as a long write of a would.
    const holder = new pg.Client({ connectionString: tdb.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query(`select pg_advisory_xact_lock(hashtextextended($1, 0))`, [`coffer-chain:${schema}:workspace-${a}`]);
      let aDone = false;
      const aWrite = service.writeSecrets(a, [{ baseCoordinate: '', expectedVersion: 0, value: 'value-of-a' }], actor).then((r) => ((aDone = true), r));
      const [wb] = await service.writeSecrets(b, [{ baseCoordinate: '', expectedVersion: 0, value: 'value-of-b' }], actor);
      expect(wb!.coordinate).toContain(b);
      expect(aDone).toBe(false);
      await holder.query('commit');
      const [wa] = await aWrite;
      expect(wa!.coordinate).toContain(a);
    } finally {
      await holder.end();
    }
    const chains = await rawRows(`select stream_id, chain from secrets.events where stream_id like 'secret-%' and (stream_id like $1 or stream_id like $2)`, [`%${a}%`, `%${b}%`]);
    expect(chains.map((r) => r.chain).sort()).toEqual([`workspace-${a}`, `workspace-${b}`].sort());
    expect(await verifyEventChain(db, schema)).toMatchObject({ ok: true });
  });
});
