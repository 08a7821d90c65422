import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EPHEMERAL_WORKSPACE_ID, streamName } from '@coffer/contracts';
import { createEventStore, createOutboxRelay, migrateEventStore, outboxBacklog } from '@coffer/event-store';
import { connectNats, createJetStreamPublisher, ensureServiceStream } from '@coffer/messaging';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createDataKeyCache } from './data-key-cache';
import { bindingOf, openWithKey } from './envelope';
import type { KeyManagementService } from './kms/kms';
import { createLocalKms, generateKeyringDocument, parseKeyring } from './kms/local-kms';
import { migrateSecretsReadModel } from './secrets.postgres';
import { rebuildSecretVersions } from './read-model-rebuild';
import { createSecretsService, secretsChainOf, type SecretsService } from './secrets.service';

const schema = 'secrets';
const ws = randomUUID();
const canaries: string[] = [];
const canary = (label: string) => {
  const c = `canary-${label}-${randomUUID()}`;
  canaries.push(c);
  return c;
};
const writer = { subject: 'config', onBehalfOf: 'user:alice' };
const hydrator = { subject: 'sync-worker', onBehalfOf: 'job:42' };
const admin = { subject: 'operator' };
const ref = (coordinate: string) => JSON.stringify({ v: { _secret: coordinate } });

describe('secrets in depth: expiry, deletion, history, rotation, audit, cache, published events', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let service: SecretsService;
  let nc: NatsConnection;
  const ns = uniqueNamespace();
  let now = new Date('2026-03-01T00:00:00Z');
  const keyring = parseKeyring(generateKeyringDocument('lifecycle'));
  const kms = createLocalKms(keyring);
  let unwraps = 0;
  const counting: KeyManagementService = { ...kms, unwrap: (k, c) => (unwraps++, kms.unwrap(k, c)) };
  const retiredKeys: Buffer[] = [];
  const wrappedSeen: Buffer[] = [];

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_secrets_depth');
    db = createDatabase(tdb.url);
    await migrateEventStore(db, schema);
    await migrateSecretsReadModel(db, schema);
    service = createSecretsService({
      db,
      store: createEventStore(db, { schema, chainOf: secretsChainOf }),
      kms: counting,
      schema,
      coordinatePrefix: 'coffer',
      namespace: ns,
      ephemeralTtlMs: 2 * 3600 * 1000,
      cache: createDataKeyCache({ maxEntries: 100, ttlMs: 60_000, clock: () => now.getTime() }),
      rotationPeriodMs: 30 * 24 * 3600 * 1000,
      clock: () => now,
      newId: randomUUID,
    });
    nc = await connectNats({ servers: testNatsUrl(), name: 'secrets-depth-test' });
    await ensureServiceStream(nc, ns, 'secrets');
  });

  afterAll(async () => {
    await nc?.close();
    await deleteStreams(testNatsUrl(), ns);
    await db?.destroy();
    await tdb?.drop();
  });

  async function keepWrapped(): Promise<void> {
    const rows = await sql<{ wrapped: Buffer }>`select wrapped from secrets.data_keys`.execute(db);
    wrappedSeen.push(...rows.rows.map((r) => r.wrapped));
  }

  it('expires check/discover secrets after 2 hours and per-write TTLs anywhere; the sweeper shreds them and says so', async () => {
    const [eph] = await service.writeSecrets(EPHEMERAL_WORKSPACE_ID, [{ baseCoordinate: '', expectedVersion: 0, value: canary('check') }], writer, { ownerId: 'job-7', ownerWorkspaceId: ws });
    const [short] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: canary('ttl'), ttlSeconds: 60 }], writer);
    const [lasting] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: canary('lasting') }], writer);
    await keepWrapped();
    await expect(service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: 'x', ttlSeconds: -1 }], writer)).rejects.toThrow(/secrets\[0\]\.ttl_seconds/);
    expect(await service.expireDue()).toBe(0);
    now = new Date(now.getTime() + 61_000);
    expect(await service.expireDue()).toBe(1);
    await expect(service.hydrateConfig(ws, ref(short!.coordinate), 'job', hydrator)).rejects.toThrow(/expired/);
    now = new Date(now.getTime() + 2 * 3600 * 1000);
    expect(await service.expireDue()).toBe(1);
    await expect(service.hydrateConfig(ws, ref(eph!.coordinate), 'check', hydrator, 'job-7')).rejects.toMatchObject({ code: 'not_found', message: expect.stringMatching(/expired/) });
    expect(JSON.parse(await service.hydrateConfig(ws, ref(lasting!.coordinate), 'job', hydrator)).v).toMatch(/^canary-lasting-/);
    expect(await service.listSecretVersions(ws, short!.baseCoordinate)).toMatchObject([{ version: 1, state: 'expired' }]);
    const keys = await sql`select coordinate from secrets.data_keys where coordinate in (${short!.coordinate}, ${eph!.coordinate})`.execute(db);
    expect(keys.rows).toEqual([]);
    const events = await sql<{ type: string; actor: string }>`select type, metadata->>'actor' as actor from secrets.events where type = 'SecretExpired'`.execute(db);
    expect(events.rows).toEqual([
      { type: 'SecretExpired', actor: 'secrets-expiry-sweeper' },
      { type: 'SecretExpired', actor: 'secrets-expiry-sweeper' },
    ]);
  });

  it('reads a past version that is still active, rolls back to it as a new version, and refuses a destroyed one', async () => {
    const first = canary('history-v1');
    const [v1] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: first }], writer);
    await service.writeSecrets(ws, [{ baseCoordinate: v1!.baseCoordinate, expectedVersion: 1, value: canary('history-v2') }], writer);
    expect(JSON.parse(await service.hydrateConfig(ws, ref(v1!.coordinate), 'audit of v1', hydrator)).v).toBe(first);
    await expect(service.rollbackSecret(ws, v1!.baseCoordinate, 1, 1, writer)).rejects.toMatchObject({ code: 'version_conflict' });
    // A caller naming an owner rolls back only that owner's secret (this one has none).
    await expect(service.rollbackSecret(ws, v1!.baseCoordinate, 1, 2, writer, { ownerId: 'another-actor' })).rejects.toMatchObject({ code: 'permission_denied' });
    const v3 = await service.rollbackSecret(ws, v1!.baseCoordinate, 1, 2, writer);
    expect(v3.coordinate).toBe(`${v1!.baseCoordinate}_v3`);
    expect(JSON.parse(await service.hydrateConfig(ws, ref(v3.coordinate), 'job', hydrator)).v).toBe(first);
    const meta = await sql<{ m: Record<string, unknown> }>`select metadata as m from secrets.events where type = 'SecretVersionWritten' and data->>'coordinate' = ${v3.coordinate}`.execute(db);
    expect(meta.rows[0]!.m).toMatchObject({ actor: 'config', onBehalfOf: 'user:alice', rolledBackFrom: 1 });
    await service.deleteSecrets(ws, [v1!.coordinate], writer);
    await expect(service.rollbackSecret(ws, v1!.baseCoordinate, 1, 0, writer)).rejects.toThrow(/was deleted/);
    const versions = await service.listSecretVersions(ws, v1!.baseCoordinate);
    expect(versions.map((v) => [v.version, v.state, v.createdBy])).toEqual([
      [1, 'destroyed', 'config'],
      [2, 'active', 'config'],
      [3, 'active', 'config'],
    ]);
    await keepWrapped();
  });

  it('caches unwrapped data keys, and a delete makes the cached key useless at once', async () => {
    const [s] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: canary('cached') }], writer);
    await keepWrapped();
    const before = unwraps;
    await service.hydrateConfig(ws, ref(s!.coordinate), 'job', hydrator);
    await service.hydrateConfig(ws, ref(s!.coordinate), 'job', hydrator);
    await service.hydrateConfig(ws, ref(s!.coordinate), 'job', hydrator);
    expect(unwraps - before).toBe(1);
    await service.deleteSecrets(ws, [s!.baseCoordinate], writer);
    await expect(service.hydrateConfig(ws, ref(s!.coordinate), 'job', hydrator)).rejects.toThrow(/was deleted/);
  });

  it('a hydrate whose audit event cannot be written fails and returns nothing', async () => {
    const [s] = await service.writeSecrets(ws, [{ baseCoordinate: '', expectedVersion: 0, value: canary('audit') }], writer);
    await sql`create function secrets.refuse_hydrate_audit() returns trigger language plpgsql as $$
      begin if new.type = 'SecretsHydrated' then raise exception 'audit store unavailable'; end if; return new; end $$`.execute(db);
    await sql`create trigger refuse_hydrate_audit before insert on secrets.events for each row execute function secrets.refuse_hydrate_audit()`.execute(db);
    try {
      const err = await service.hydrateConfig(ws, ref(s!.coordinate), 'job', hydrator).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      expect(String((err as Error).message)).not.toMatch(/canary-audit/);
    } finally {
      await sql`drop trigger refuse_hydrate_audit on secrets.events`.execute(db);
      await sql`drop function secrets.refuse_hydrate_audit()`.execute(db);
    }
    const audit = await sql<{ n: string }>`select count(*) as n from secrets.events where type = 'SecretsHydrated' and data->'coordinates' ? ${s!.coordinate}`.execute(db);
    expect(Number(audit.rows[0]!.n)).toBe(0);
    await keepWrapped();
  });

  it('rotates the KEK: every live data key is re-wrapped, the old version retires, every version still hydrates', async () => {
    const written = await service.writeSecrets(
      ws,
      Array.from({ length: 25 }, (_, i) => ({ baseCoordinate: '', expectedVersion: 0, value: `rot-${i}-${canaries[0]}` })),
      writer,
    );
    await keepWrapped();
    const old = counting.primaryVersion();
    await expect(service.retireKek(old, admin)).rejects.toThrow(/primary/);
    const { kekVersion, rewrapped } = await service.rotateKek(false, admin);
    expect(kekVersion).toBe(old + 1);
    expect(rewrapped).toBeGreaterThanOrEqual(25);
    await keepWrapped();
    const listed = await service.listKekVersions();
    expect(listed.versions).toEqual([
      { kekVersion: old, state: 'active', dataKeys: 0 },
      { kekVersion: old + 1, state: 'primary', dataKeys: expect.any(Number) },
    ]);
    retiredKeys.push(Buffer.from(keyring.keys.get(old)!));
    await service.retireKek(old, admin);
    for (const w of written) {
      expect(JSON.parse(await service.hydrateConfig(ws, ref(w.coordinate), 'after rotation', hydrator)).v).toMatch(/^rot-/);
    }
    const rewrapEvents = await sql<{ n: string }>`select count(*) as n from secrets.events where type = 'DataKeyRewrapped'`.execute(db);
    expect(Number(rewrapEvents.rows[0]!.n)).toBe(rewrapped);
    expect((await service.listKekVersions()).versions[0]).toEqual({ kekVersion: old, state: 'retired', dataKeys: 0 });
  });

  it('deleting a workspace shreds every secret of it and nothing of another', async () => {
    const other = randomUUID();
    const [keep] = await service.writeSecrets(other, [{ baseCoordinate: '', expectedVersion: 0, value: canary('other-ws') }], writer);
    const destroyed = await service.deleteWorkspaceSecrets(ws, writer);
    expect(destroyed).toBeGreaterThan(25);
    const live = await sql<{ n: string }>`select count(*) as n from secrets.data_keys k join secrets.secret_versions v using (coordinate) where v.workspace_id = ${ws}`.execute(db);
    expect(Number(live.rows[0]!.n)).toBe(0);
    expect(JSON.parse(await service.hydrateConfig(other, ref(keep!.coordinate), 'job', hydrator)).v).toMatch(/^canary-other-ws-/);
    expect(await service.deleteWorkspaceSecrets(ws, writer)).toBe(0);
  });

  it('the ciphertexts left in the log open with no key that still exists, nor with a retired one', async () => {
    const rows = await sql<{ coordinate: string; workspace: string; c: string }>`
      select data->>'coordinate' as coordinate, data->>'workspaceId' as workspace, data->>'ciphertext' as c
      from secrets.events where type = 'SecretVersionWritten' and data->>'workspaceId' = ${ws}`.execute(db);
    expect(rows.rows.length).toBeGreaterThan(25);
    for (const r of rows.rows) {
      for (const key of [...keyring.keys.values(), ...retiredKeys]) {
        expect(() => openWithKey(key, Buffer.from(r.c, 'base64'), bindingOf(r.workspace, r.coordinate))).toThrow();
      }
    }
  });

  it('every integration event published for all of the above carries no plaintext, ciphertext or key material', async () => {
    const relay = createOutboxRelay(db, { schema, name: 'depth-test', publish: createJetStreamPublisher(nc) });
    // A round publishes nothing while an older transaction anywhere in the cluster is open (other
    // tests run beside this one): go on until nothing is left behind the checkpoint.
    for (let i = 0; i < 600 && (await outboxBacklog(db, schema, 'depth-test')) > 0; i++) {
      if ((await relay.relayOnce()) === 0) await new Promise((r) => setTimeout(r, 50));
    }
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(streamName(ns, 'secrets'));
    const ciphertexts = (await sql<{ c: string }>`select data->>'ciphertext' as c from secrets.events where data ? 'ciphertext'`.execute(db)).rows.map((r) => r.c);
    const forbidden = [...canaries, ...ciphertexts, ...wrappedSeen.map((w) => w.toString('base64')), ...[...keyring.keys.values(), ...retiredKeys].map((k) => k.toString('base64'))];
    const types = new Set<string>();
    expect(info.state.messages).toBeGreaterThan(50);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(streamName(ns, 'secrets'), { seq });
      if (!m) continue;
      const text = `${m.subject} ${JSON.stringify([...(m.header ?? [])])} ${new TextDecoder().decode(m.data)}`;
      types.add(m.header?.get('ce-type') ?? '');
      for (const f of forbidden) expect(text.includes(f), `forbidden material in ${m.subject}`).toBe(false);
      expect(text).not.toMatch(/"(ciphertext|wrapped|value|plaintext|dataKey)"\s*:/i);
    }
    expect([...types].sort()).toEqual(
      [
        'coffer.secrets.v1.DataKeyRewrapped',
        'coffer.secrets.v1.KeyEncryptionKeyRetired',
        'coffer.secrets.v1.KeyEncryptionKeyRotated',
        'coffer.secrets.v1.SecretExpired',
        'coffer.secrets.v1.SecretVersionDestroyed',
        'coffer.secrets.v1.SecretVersionWritten',
        'coffer.secrets.v1.SecretsHydratedBatch',
      ].sort(),
    );
  });
  it('rebuilding secret_versions from the log gives back every row as the inline projections left it; hydrates go on', async () => {
    const fresh = randomUUID();
    const [live] = await service.writeSecrets(fresh, [{ baseCoordinate: '', expectedVersion: 0, value: canary('rebuilt') }], writer);
    const snapshot = () => sql<Record<string, unknown>>`select * from secrets.secret_versions order by coordinate`.execute(db).then((r) => r.rows);
    const before = await snapshot();
    expect(new Set(before.map((r) => r.state))).toEqual(new Set(['active', 'destroyed', 'expired']));
    await sql`update secrets.secret_versions set state = 'active', kek_version = 0`.execute(db);
    const result = await rebuildSecretVersions(db, schema);
    expect(result.versions).toBe(before.length);
    expect(result.events).toBeGreaterThan(before.length);
    expect(await snapshot()).toEqual(before);
    expect(JSON.parse(await service.hydrateConfig(fresh, ref(live!.coordinate), 'after rebuild', hydrator)).v).toMatch(/^canary-rebuilt-/);
  });
});
