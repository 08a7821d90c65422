import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1, idempotentId, type CofferError } from '@coffer/contracts';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createGrpcServer, createPromiseClient, type GrpcServer, type PromiseClient } from '@coffer/rpc';
import { createDatabase } from '@coffer/runtime';
import { createLogger } from '@coffer/telemetry';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createTokenVerifier, userTokenKinds } from '@coffer/tokens';
import { authGrpcService } from './auth.grpc';
import { migrateAuthReadModel } from './auth.postgres';
import { createAuthService } from './auth.service';
import { createSigningKeyRing, signServiceToken } from './signing-keys';

// Auth over real gRPC and Postgres: CreateOrganization and CreateApplication called twice and eight
// times at once with one request_id make one entity and one event.

const schema = 'auth';
const ISSUER = 'coffer-auth';
type Client = PromiseClient<authV1.AuthServiceClient> & { close(): void };

describe('auth: CreateOrganization and CreateApplication with a request_id run once', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let server: GrpcServer;
  let address = '';
  let operator: Client;
  const clients: Client[] = [];

  const client = (token: () => Promise<string>) => {
    const c = createPromiseClient(authV1.AuthServiceClient, address, { tokenProvider: token });
    clients.push(c);
    return c;
  };

  /** A client holding an application token of a new application of `organizationId`. */
  async function applicationOf(organizationId: string): Promise<Client> {
    const { application, clientSecret } = await operator.createApplication({ organizationId, name: 'admin app', allowedOrigins: [] });
    const token = await operator.issueApplicationToken({ clientId: application!.clientId, clientSecret });
    return client(async () => token.accessToken);
  }

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_auth_idem');
    db = createDatabase(tdb.url, { max: 12 });
    await migrateEventStore(db, schema);
    await migrateAuthReadModel(db, schema);
    const store = createEventStore(db, { schema });
    const namespace = uniqueNamespace();
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const rootKeyJwk = JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'root' });
    const ring = await createSigningKeyRing({ db, store, schema, namespace, rootKeyJwk, rotationIntervalMs: 24 * 3600_000, retireAfterMs: 21 * 60_000, prepublishMs: 0, clock: () => new Date(), newId: randomUUID });
    await ring.init();
    const service = createAuthService({
      db,
      store,
      schema,
      namespace,
      signingKey: () => ring.active(),
      jwks: () => ring.jwks(),
      issuer: ISSUER,
      audiences: ['auth'],
      lockoutPolicy: { maxFailures: 5, windowMs: 60_000, lockMs: 60_000 },
      clock: () => new Date(),
      newId: randomUUID,
    });
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'auth', acceptedKinds: ['service', ...userTokenKinds], fetchJwks: () => ring.jwks() as never });
    server = createGrpcServer({ services: [authGrpcService(service, ring)], verifier, logger: createLogger({ service: 'auth-test', level: 'silent' }) });
    address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
    operator = client(async () =>
      signServiceToken(await ring.active(), { issuer: ISSUER, subject: 'operator', audience: 'auth', role: 'operator', tokenId: randomUUID(), issuedAt: new Date(), ttlSeconds: 300 }),
    );
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await server?.shutdown();
    await db?.destroy();
    await tdb?.drop();
  });

  const count = async (query: ReturnType<typeof sql<{ n: string }>>) => Number((await query.execute(db)).rows[0]!.n);
  const eventsOf = (streamId: string) => count(sql<{ n: string }>`select count(*) as n from auth.events where stream_id = ${streamId}`);
  const racing = <T>(n: number, call: (i: number) => Promise<T>) => Promise.all(Array.from({ length: n }, (_, i) => call(i)));

  it('CreateOrganization twice, then eight at once, with one key: one organization, one event, the same answer', async () => {
    const requestId = randomUUID();
    const first = (await operator.createOrganization({ name: 'acme', requestId })).organization!;
    expect((await operator.createOrganization({ name: 'acme', requestId })).organization).toEqual(first);
    expect(first.organizationId).toBe(idempotentId('operators', 'CreateOrganization', requestId));

    const raceKey = randomUUID();
    const raced = await racing(8, (i) => operator.createOrganization({ name: `racer ${i}`, requestId: raceKey }));
    for (const r of raced) expect(r.organization).toEqual(raced[0]!.organization);
    for (const id of [first.organizationId, raced[0]!.organization!.organizationId]) expect(await eventsOf(`organization-${id}`)).toBe(1);
    expect(await count(sql<{ n: string }>`select count(*) as n from auth.organizations where name = 'acme' or name like 'racer %'`)).toBe(2);
    expect(await count(sql<{ n: string }>`select count(*) as n from auth.outbox where headers->>'ce-subject' = ${first.organizationId}`)).toBe(1);
  });

  it('CreateApplication eight at once with one key: one application, one event; only one answer holds the secret, and it works', async () => {
    const org = (await operator.createOrganization({ name: 'apps' })).organization!;
    const admin = await applicationOf(org.organizationId);
    const requestId = randomUUID();
    const started = Date.now();
    const raced = await racing(8, (i) => admin.createApplication({ organizationId: '', name: `app ${i}`, allowedOrigins: ['https://app.example.test'], requestId }));
    console.log(`8 racing CreateApplication with one request_id: ${Date.now() - started} ms`);
    const application = raced[0]!.application!;
    for (const r of raced) expect(r.application).toEqual(application);
    expect(application).toMatchObject({ organizationId: org.organizationId, clientId: `app-${idempotentId(org.organizationId, 'CreateApplication', requestId)}`, disabled: false });
    const secrets = raced.map((r) => r.clientSecret).filter((s) => s !== '');
    expect(secrets).toHaveLength(1);
    expect((await operator.issueApplicationToken({ clientId: application.clientId, clientSecret: secrets[0]! })).accessToken).toMatch(/^ey/);
    expect(await eventsOf(`application-${application.clientId}`)).toBe(1);
    expect(await count(sql<{ n: string }>`select count(*) as n from auth.applications where organization_id = ${org.organizationId} and name like 'app %'`)).toBe(1);

    // A later repeat: the application as first created, without the secret (only its hash is kept).
    const later = await admin.createApplication({ organizationId: '', name: 'changed', allowedOrigins: [], requestId });
    expect(later).toEqual({ application, clientSecret: '' });
    expect(await eventsOf(`application-${application.clientId}`)).toBe(1);
  });

  it("another organization's same key is another call", async () => {
    const [orgA, orgB] = [(await operator.createOrganization({ name: 'a' })).organization!, (await operator.createOrganization({ name: 'b' })).organization!];
    const [adminA, adminB] = [await applicationOf(orgA.organizationId), await applicationOf(orgB.organizationId)];
    const requestId = randomUUID();
    const a = await adminA.createApplication({ organizationId: '', name: 'same key', allowedOrigins: [], requestId });
    const b = await adminB.createApplication({ organizationId: '', name: 'same key', allowedOrigins: [], requestId });
    expect(b.application!.clientId).not.toBe(a.application!.clientId);
    expect([a.application!.organizationId, b.application!.organizationId]).toEqual([orgA.organizationId, orgB.organizationId]);
    expect(b.clientSecret).not.toBe('');
    // Org B cannot replay org A's call into org A.
    await expect(adminB.createApplication({ organizationId: orgA.organizationId, name: 'same key', allowedOrigins: [], requestId })).rejects.toMatchObject({ code: 'permission_denied' });
  });

  it('refuses a request_id out of bounds, naming request_id, before anything is written', async () => {
    const before = await count(sql<{ n: string }>`select count(*) as n from auth.events`);
    const org = (await operator.createOrganization({ name: 'bounds' })).organization!;
    for (const requestId of ['has space', 'x'.repeat(129), 'a/b']) {
      for (const call of [() => operator.createOrganization({ name: 'x', requestId }), () => operator.createApplication({ organizationId: org.organizationId, name: 'x', allowedOrigins: [], requestId })]) {
        const err = (await call().then(() => undefined, (e: unknown) => e)) as CofferError;
        expect(err).toMatchObject({ code: 'invalid_argument', details: [{ field: 'request_id', reason: 'invalid' }] });
        expect(err.message).not.toContain(requestId);
      }
    }
    expect(await count(sql<{ n: string }>`select count(*) as n from auth.events`)).toBe(before + 1);
  });
});
