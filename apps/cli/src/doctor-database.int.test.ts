import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, uniqueId, type TestDatabase } from '@coffer/testing';
import { migrateAuthReadModel } from '../../auth/src/auth.postgres';
import { migrateSecretsReadModel, observeKekVersion } from '../../secrets/src/secrets.postgres';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { doctorCommand, writeServiceEnvFiles } from './doctor';
import { auditChain, eventsImmutability, kekAge, signingKeyAge } from './doctor-database';

describe('coffer doctor: the checks on a service database (real Postgres)', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  const role = `coffer_doctor_${uniqueId()}`;

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_doctor');
    db = createDatabase(tdb.url);
    await sql`create role ${sql.id(role)} nologin`.execute(db);
  });

  afterAll(async () => {
    await db?.destroy();
    await tdb?.drop();
    // Roles are cluster-wide: drop this one once nothing (the database) refers to it any more.
    const admin = createDatabase(tdb.url.replace(/\/[^/]+$/, '/postgres'));
    await sql`drop role if exists ${sql.id(role)}`.execute(admin);
    await admin.destroy();
  });

  async function freshLog(events = 3) {
    const schema = `doctor_${uniqueId()}`;
    await migrateEventStore(db, schema);
    const store = createEventStore(db, { schema });
    for (let i = 0; i < events; i++) await store.append('audit', i, [{ type: 'Written', data: { i } }]);
    return { schema, store, log: { service: 'config' as const, schema } };
  }

  it('passes an events table as the service migrates it, and skips a schema the service never used', async () => {
    const { log } = await freshLog();
    expect(await eventsImmutability(db, log)).toMatchObject({ check: 'events-immutable', severity: 'pass', service: 'config' });
    expect(await auditChain(db, log)).toMatchObject({ severity: 'pass', message: `${log.schema}.events: 3 events, chain intact` });
    expect(await eventsImmutability(db, { service: 'config', schema: `absent_${uniqueId()}` })).toMatchObject({ severity: 'skip' });
  });

  it('fails when a role or PUBLIC may UPDATE, DELETE or TRUNCATE the events, naming them', async () => {
    const { log, schema } = await freshLog(0);
    await sql`grant update, delete on ${sql.id(schema)}.events to ${sql.id(role)}`.execute(db);
    const granted = await eventsImmutability(db, log);
    expect(granted).toMatchObject({ severity: 'fail', message: expect.stringContaining(`${role} may DELETE, UPDATE`), fix: expect.stringContaining(`FROM ${role}`) });
    await sql`revoke update, delete on ${sql.id(schema)}.events from ${sql.id(role)}`.execute(db);
    await sql`grant truncate on ${sql.id(schema)}.events to public`.execute(db);
    expect(await eventsImmutability(db, log)).toMatchObject({ severity: 'fail', message: expect.stringContaining('PUBLIC may TRUNCATE') });
    await sql`revoke truncate on ${sql.id(schema)}.events from public`.execute(db);
    expect(await eventsImmutability(db, log)).toMatchObject({ severity: 'pass' });
  });

  it('fails when the immutability trigger is disabled or dropped, and finds the event changed meanwhile', async () => {
    const { log, schema, store } = await freshLog(4);
    const s = sql.id(schema);
    await sql`alter table ${s}.events disable trigger events_immutable`.execute(db);
    expect(await eventsImmutability(db, log)).toMatchObject({ severity: 'fail', message: expect.stringContaining('no enabled trigger refuses DELETE, UPDATE') });
    const target = (await store.readStream('audit')).events[1]!;
    await sql`update ${s}.events set data = '{"i": 42}'::jsonb where event_id = ${target.eventId}::uuid`.execute(db);
    await sql`alter table ${s}.events enable trigger events_immutable`.execute(db);
    expect(await auditChain(db, log)).toMatchObject({
      severity: 'fail',
      message: expect.stringContaining(`content does not match its hash at global position ${target.globalPosition}`),
      fix: expect.stringContaining(`coffer audit verify --schema ${schema}`),
    });
    await sql`drop trigger events_no_truncate on ${s}.events`.execute(db);
    expect(await eventsImmutability(db, log)).toMatchObject({ severity: 'fail', message: expect.stringContaining('no enabled trigger refuses TRUNCATE') });
  });

  it('fails a signing key older than the rotation interval, and passes a fresh one', async () => {
    const schema = `auth_${uniqueId()}`;
    await migrateEventStore(db, schema);
    await migrateAuthReadModel(db, schema);
    const now = new Date();
    expect(await signingKeyAge(db, schema, 86400, now)).toMatchObject({ severity: 'skip' });
    const insert = (kid: string, createdAt: Date, retireAt: Date | null) =>
      sql`insert into ${sql.id(schema)}.signing_keys (kid, public_jwk, sealed_private_jwk, created_at, retire_at) values (${kid}, '{}'::jsonb, 'sealed', ${createdAt}, ${retireAt})`.execute(db);
    await insert('old', new Date(now.getTime() - 3 * 86400_000), null);
    expect(await signingKeyAge(db, schema, 86400, now)).toMatchObject({ check: 'signing-key-rotation', severity: 'fail', message: expect.stringContaining('3 days ago') });
    await sql`update ${sql.id(schema)}.signing_keys set retire_at = ${now} where kid = 'old'`.execute(db);
    await insert('new', new Date(now.getTime() - 3600_000), null);
    expect(await signingKeyAge(db, schema, 86400, now)).toMatchObject({ severity: 'pass' });
  });

  it('fails a primary KEK version older than the rotation period, and passes a fresh one', async () => {
    const schema = `secrets_${uniqueId()}`;
    await migrateEventStore(db, schema);
    await migrateSecretsReadModel(db, schema);
    const now = new Date();
    expect(await kekAge(db, schema, 365, 3600, now)).toMatchObject({ severity: 'skip' });
    await observeKekVersion(db, schema, 'kek', 1, 'primary', new Date(now.getTime() - 400 * 86400_000));
    expect(await kekAge(db, schema, 365, 3600, now)).toMatchObject({ check: 'kek-rotation', severity: 'fail', message: expect.stringContaining('kek v1 is primary since 400 days') });
    await observeKekVersion(db, schema, 'kek', 2, 'primary', new Date(now.getTime() - 86400_000));
    expect(await kekAge(db, schema, 365, 3600, now)).toMatchObject({ severity: 'pass', message: expect.stringContaining('kek v2') });
  });

  it('reads the environments a running `coffer stack` leaves, when no --env is given', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'coffer-stack-env-'));
    const dir = join(parent, 'stack-env');
    try {
      const env = { COFFER_ENV: 'development', DATABASE_URL: tdb.url, SECRETS_DB_SCHEMA: `unused_${uniqueId()}`, SECRETS_LOCAL_KEYRING_FILE: '/k.json', SECRETS_GRPC_ADDRESS: '127.0.0.1:0' };
      const files = await writeServiceEnvFiles(dir, { secrets: env });
      expect((await stat(join(dir, 'secrets.env'))).mode & 0o777).toBe(0o600);
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      const out: string[] = [];
      const code = await doctorCommand(['--json'], { PATH: process.env.PATH }, (t) => out.push(t), dir);
      expect(code, out.join('\n')).toBe(0);
      expect(out[0]).toBe(`reading the settings of secrets from ${dir} (left by coffer stack)`);
      const report = JSON.parse(out[1]!) as { services: string[]; findings: Array<{ check: string; severity: string }> };
      expect(report.services).toEqual(['secrets']);
      expect(report.findings).toEqual(expect.arrayContaining([
        expect.objectContaining({ check: 'local-kms', severity: 'warn' }),
        expect.objectContaining({ check: 'events-immutable', severity: 'skip' }),
      ]));
      await files.remove();
      await expect(stat(dir)).rejects.toThrow();
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });
});
