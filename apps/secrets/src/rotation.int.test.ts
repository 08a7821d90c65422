import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventStore, migrateEventStore, verifyEventChain } from '@coffer/event-store';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createDataKeyCache } from './data-key-cache';
import { generateKeyringDocument, loadLocalKms, parseKeyring } from './kms/local-kms';
import { migrateSecretsReadModel } from './secrets.postgres';
import { createSecretsService, secretsChainOf, type SecretsService } from './secrets.service';

const schema = 'secrets';
const ws = randomUUID();
const VERSIONS = 1000;

describe('KEK rotation survives a killed re-wrap', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let dir: string;
  let keyringFile: string;
  let service: SecretsService;
  const values = new Map<string, string>();

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_rotation');
    db = createDatabase(tdb.url);
    await migrateEventStore(db, schema);
    await migrateSecretsReadModel(db, schema);
    dir = await mkdtemp(join(tmpdir(), 'coffer-rotation-'));
    keyringFile = join(dir, 'keyring.json');
    await writeFile(keyringFile, generateKeyringDocument('rotation'), { mode: 0o600 });
    service = createSecretsService({
      db,
      store: createEventStore(db, { schema, chainOf: secretsChainOf }),
      kms: await loadLocalKms(keyringFile),
      schema,
      coordinatePrefix: 'coffer',
      namespace: uniqueNamespace(),
      ephemeralTtlMs: 7_200_000,
      cache: createDataKeyCache({ maxEntries: 0, ttlMs: 1, clock: Date.now }),
      rotationPeriodMs: 365 * 24 * 3600 * 1000,
      clock: () => new Date(),
      newId: randomUUID,
    });
  });

  afterAll(async () => {
    await db?.destroy();
    await tdb?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function rotationProcess(...args: string[]) {
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'rotate-kek.ts'), ...args], {
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: tdb.url,
        SECRETS_KMS_PROVIDER: 'local',
        SECRETS_LOCAL_KEYRING_FILE: keyringFile,
        SECRETS_DB_SCHEMA: schema,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    return { child, exited, output: () => output };
  }

  const countByKek = async () =>
    new Map(
      (await sql<{ v: number; n: string }>`select kek_version as v, count(*) as n from secrets.data_keys group by kek_version`.execute(db)).rows.map((r) => [
        Number(r.v),
        Number(r.n),
      ]),
    );

  const hydrateAll = async (coordinates: string[]) => {
    const partial = Object.fromEntries(coordinates.map((c, i) => [`k${i}`, { _secret: c }]));
    const full = JSON.parse(await service.hydrateConfig(ws, JSON.stringify(partial), 'rotation check', { subject: 'sync-worker' })) as Record<string, string>;
    coordinates.forEach((c, i) => expect(full[`k${i}`]).toBe(values.get(c)));
  };

  it(`writes ${VERSIONS} versions, rotates, is killed half-way, resumes, retires the old KEK: every version still hydrates`, async () => {
    for (let batch = 0; batch < VERSIONS / 50; batch++) {
      const inputs = Array.from({ length: 50 }, (_, i) => ({ baseCoordinate: '', expectedVersion: 0, value: `value-${batch}-${i}-${randomUUID()}` }));
      const written = await service.writeSecrets(ws, inputs, { subject: 'config' });
      written.forEach((w, i) => values.set(w.coordinate, inputs[i]!.value));
    }
    const coordinates = [...values.keys()];
    expect(await countByKek()).toEqual(new Map([[1, VERSIONS]]));

    const first = rotationProcess();
    let killedAt = 0;
    for (;;) {
      const moved = (await countByKek()).get(2) ?? 0;
      if (moved >= 100) {
        first.child.kill('SIGKILL');
        killedAt = moved;
        break;
      }
      if (first.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const ended = await first.exited;
    expect(ended.signal, `the rotation finished before it could be killed:\n${first.output()}`).toBe('SIGKILL');
    const half = await countByKek();
    expect(killedAt).toBeGreaterThan(0);
    expect(half.get(1)).toBeGreaterThan(0);
    expect(half.get(2)).toBeGreaterThan(0);
    expect(parseKeyring(await readFile(keyringFile, 'utf8')).primaryVersion).toBe(2);

    // Reads keep working while the data keys are split between two KEK versions.
    await hydrateAll(coordinates.slice(0, 200));
    await expect(service.retireKek(1, { subject: 'operator' })).rejects.toThrow(/still wrapped by KEK version 1/);

    const resumed = rotationProcess('--resume');
    const done = await resumed.exited;
    expect(done.code, resumed.output()).toBe(0);
    expect(resumed.output()).toContain('"event":"rotated"');
    expect(await countByKek()).toEqual(new Map([[2, VERSIONS]]));

    await service.retireKek(1, { subject: 'operator' });
    const keyring = parseKeyring(await readFile(keyringFile, 'utf8'));
    expect([...keyring.keys.keys()]).toEqual([2]);
    expect(keyring.retired).toEqual([1]);
    await hydrateAll(coordinates);

    const rewraps = await sql<{ n: string; distinct_coordinates: string }>`
      select count(*) as n, count(distinct data->>'coordinate') as distinct_coordinates from secrets.events where type = 'DataKeyRewrapped'`.execute(db);
    expect(Number(rewraps.rows[0]!.n)).toBe(VERSIONS);
    expect(Number(rewraps.rows[0]!.distinct_coordinates)).toBe(VERSIONS);
    expect(await verifyEventChain(db, schema)).toMatchObject({ ok: true });
  }, 180_000);
});
