import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { loginAttemptKey, migrateAuthReadModel } from './auth.postgres';
import { createAuthService, type AuthService } from './auth.service';
import { importSigningKey } from './signing-keys';

const schema = 'auth';
const secret = `client-secret-${randomUUID()}`;

describe('auth: repeated bad client secrets are slowed, then locked out', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let service: AuthService;
  let now = new Date('2026-05-01T00:00:00Z');
  const delays: number[] = [];

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_auth');
    db = createDatabase(tdb.url);
    await migrateEventStore(db, schema);
    await migrateAuthReadModel(db, schema);
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const key = await importSigningKey(JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'test' }));
    service = createAuthService({
      db,
      store: createEventStore(db, { schema }),
      schema,
      namespace: uniqueNamespace(),
      signingKey: async () => key,
      jwks: async () => ({ keys: [key.publicJwk] }),
      issuer: 'coffer-auth',
      audiences: ['secrets'],
      lockoutPolicy: { maxFailures: 3, windowMs: 60_000, lockMs: 300_000 },
      sleep: async (ms) => void delays.push(ms),
      clock: () => now,
      newId: randomUUID,
    });
    await service.registerIdentities([{ clientId: 'config', clientSecret: secret, role: 'config' }]);
  });

  afterAll(async () => {
    await db?.destroy();
    await tdb?.drop();
  });

  const attempt = (s: string, clientId = 'config') => service.issueServiceToken(clientId, s, 'secrets');

  it('slows each failure down more, locks after the third, and refuses even the right secret while locked', async () => {
    for (let i = 0; i < 3; i++) await expect(attempt('wrong')).rejects.toMatchObject({ code: 'unauthenticated', message: 'invalid client credentials' });
    expect(delays).toEqual([250, 500, 1000]);
    await expect(attempt(secret)).rejects.toMatchObject({ code: 'unauthenticated' });
    const lock = await sql<{ locked_until: Date }>`select locked_until from auth.login_attempts where key_hash = ${loginAttemptKey('config')}`.execute(db);
    expect(lock.rows[0]!.locked_until.toISOString()).toBe(new Date(now.getTime() + 300_000).toISOString());
    const events = await sql<{ type: string; data: string }>`select type, data::text as data from auth.events where stream_id = 'login-config' order by global_position`.execute(db);
    expect(events.rows.map((e) => e.type)).toEqual(['LoginFailed', 'LoginFailed', 'LoginFailed', 'ClientLocked']);
    for (const e of events.rows) expect(e.data).not.toContain(secret);
    const published = await sql<{ type: string }>`select headers->>'ce-type' as type from auth.outbox where headers->>'ce-subject' = 'config' and headers->>'ce-type' like '%Login%' or headers->>'ce-type' like '%Locked' order by position`.execute(db);
    expect(published.rows.map((r) => r.type)).toEqual([
      'coffer.auth.v1.LoginFailed',
      'coffer.auth.v1.LoginFailed',
      'coffer.auth.v1.LoginFailed',
      'coffer.auth.v1.ClientLocked',
    ]);
  });

  it('lets the right secret in once the lock has passed, and a success clears earlier failures', async () => {
    now = new Date(now.getTime() + 300_001);
    expect((await attempt(secret)).accessToken).toMatch(/^ey/);
    await expect(attempt('wrong')).rejects.toMatchObject({ code: 'unauthenticated' });
    expect((await attempt(secret)).expiresIn).toBe(900);
    const types = (await sql<{ type: string }>`select type from auth.events where stream_id = 'login-config' order by global_position`.execute(db)).rows.map((r) => r.type);
    expect(types.slice(-2)).toEqual(['LoginFailed', 'FailedLoginsCleared']);
  });

  it('records no event for unknown client ids, but answers them just as slowly and locks them alike', async () => {
    delays.length = 0;
    for (let i = 0; i < 4; i++) await expect(attempt('whatever', 'no-such-client')).rejects.toMatchObject({ code: 'unauthenticated', message: 'invalid client credentials' });
    expect(delays).toEqual([250, 500, 1000, 1000]);
    const rows = await sql`select 1 from auth.events where stream_id = 'login-no-such-client'`.execute(db);
    expect(rows.rows).toEqual([]);
  });

  it('refuses a scoped token for a workspace_id when it cannot ask config who owns the workspace', async () => {
    const org = await service.createOrganization('org');
    const operator = { subject: 'operator', kind: 'service', tokenType: 'coffer-service+jwt', role: 'operator', tokenId: 't', issuedAt: now, expiresAt: now } as const;
    const { application } = await service.createApplication(operator, { organizationId: org.organizationId, name: 'app', allowedOrigins: [] });
    const caller = { ...operator, kind: 'application', role: 'org_admin', subject: application.clientId, applicationId: application.clientId, organizationId: org.organizationId } as const;
    await expect(service.issueScopedToken(caller, { workspaceId: randomUUID(), externalUserId: '', createWorkspace: false, role: '' })).rejects.toMatchObject({
      code: 'failed_precondition',
      message: expect.stringContaining('CONFIG_ADDRESS'),
    });
  });
});
