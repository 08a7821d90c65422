import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1 } from '@coffer/contracts';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createGrpcServer, type GrpcServer } from '@coffer/rpc';
import { createDatabase } from '@coffer/runtime';
import { createLogger } from '@coffer/telemetry';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createTokenVerifier } from '@coffer/tokens';
import { authGrpcService } from './auth.grpc';
import { migrateAuthReadModel } from './auth.postgres';
import { createAuthService } from './auth.service';
import { createSigningKeyRing, type SigningKeyRing } from './signing-keys';

const schema = 'auth';
const ISSUER = 'coffer-auth';
const RETIRE_AFTER_MS = 21 * 60_000;
const PREPUBLISH_MS = 6 * 60_000;

function call<Res>(client: grpc.Client, method: string, req: unknown, token: string): Promise<{ status: grpc.status; message: string; res?: Res }> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    (client as unknown as Record<string, (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Res) => void) => void>)[method]!(req, metadata, (err, res) =>
      resolve(err ? { status: err.code, message: err.details } : { status: grpc.status.OK, message: '', res }),
    );
  });
}

describe('signing keys: rotation keeps the old key published for its grace, then a token it signs is refused', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let ring: SigningKeyRing;
  let server: GrpcServer;
  let client: authV1.AuthServiceClient;
  let now = new Date('2026-06-01T00:00:00Z');
  let rootJwk: JWK;

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_auth_keys');
    db = createDatabase(tdb.url);
    await migrateEventStore(db, schema);
    await migrateAuthReadModel(db, schema);
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    rootJwk = { ...(await exportJWK(privateKey)), kid: 'root' };
    const store = createEventStore(db, { schema });
    const namespace = uniqueNamespace();
    const clock = () => now;
    ring = await createSigningKeyRing({ db, store, schema, namespace, rootKeyJwk: JSON.stringify(rootJwk), rotationIntervalMs: 24 * 3600_000, retireAfterMs: RETIRE_AFTER_MS, prepublishMs: PREPUBLISH_MS, clock, newId: randomUUID, cacheMs: 0 });
    await ring.init();
    const service = createAuthService({
      db, store, schema, namespace, signingKey: () => ring.active(), jwks: () => ring.jwks(), issuer: ISSUER, audiences: ['auth'],
      lockoutPolicy: { maxFailures: 5, windowMs: 60_000, lockMs: 60_000 }, clock, newId: randomUUID,
    });
    // The verifier's clock is real: the keys it trusts are whatever GetJwks publishes at the ring's time.
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'auth', fetchJwks: () => ring.jwks() as never, cacheTtlMs: 0, minRefetchIntervalMs: 0 });
    server = createGrpcServer({ services: [authGrpcService(service, ring)], verifier, logger: createLogger({ service: 'auth-test', level: 'silent' }) });
    const port = await server.listen('127.0.0.1:0');
    client = new authV1.AuthServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await server?.shutdown();
    await db?.destroy();
    await tdb?.drop();
  });

  async function operatorToken(kid: string, key: JWK): Promise<string> {
    const iat = Math.floor(Date.now() / 1000);
    return new SignJWT({ role: 'operator' })
      .setProtectedHeader({ alg: 'EdDSA', kid, typ: 'coffer-service+jwt' })
      .setIssuer(ISSUER).setSubject('operator').setAudience('auth').setJti(randomUUID())
      .setIssuedAt(iat).setNotBefore(iat).setExpirationTime(iat + 600)
      .sign(await importJWK(key, 'EdDSA'));
  }

  it('seeds the ring with AUTH_SIGNING_KEY, sealed at rest, and publishes only its public half', async () => {
    const jwks = await ring.jwks();
    expect(jwks.keys).toEqual([{ kty: 'OKP', crv: 'Ed25519', x: rootJwk.x, kid: 'root', alg: 'EdDSA', use: 'sig' }]);
    const rows = await sql<{ row: string }>`select t::text as row from auth.signing_keys t`.execute(db);
    expect(rows.rows[0]!.row).not.toContain(rootJwk.d!);
    const events = await sql<{ data: string }>`select data::text as data from auth.events`.execute(db);
    for (const e of events.rows) expect(e.data).not.toContain(rootJwk.d!);
  });

  it('rotates: the new key is published first and signs later; the old stays until every token it signed has expired, then it is refused', async () => {
    const oldToken = await operatorToken('root', rootJwk);
    expect((await call(client, 'getClientLockout', { clientId: 'x' }, oldToken)).status).toBe(grpc.status.OK);

    const rotated = await call<authV1.RotateSigningKeyResponse>(client, 'rotateSigningKey', {}, oldToken);
    expect(rotated.status).toBe(grpc.status.OK);
    expect(rotated.res).toMatchObject({ previousKid: 'root', activateAt: new Date(now.getTime() + PREPUBLISH_MS).toISOString() });
    expect(rotated.res!.previousRetireAt).toBe(new Date(now.getTime() + PREPUBLISH_MS + RETIRE_AFTER_MS).toISOString());
    // Published at once, so every verifier's cached JWKS has it before it signs anything...
    expect((await ring.jwks()).keys.map((k) => k.kid).sort()).toEqual(['root', rotated.res!.kid].sort());
    expect((await ring.active()).kid).toBe('root');
    // ...and it takes over once the pre-publication time has passed.
    now = new Date(now.getTime() + PREPUBLISH_MS);
    expect((await ring.active()).kid).toBe(rotated.res!.kid);

    // Within the grace the old key still verifies.
    now = new Date(now.getTime() + RETIRE_AFTER_MS - 1000);
    expect((await call(client, 'getClientLockout', { clientId: 'x' }, await operatorToken('root', rootJwk))).status).toBe(grpc.status.OK);

    // After it, the key is gone from the JWKS and a token it signs (even a fresh one) is refused.
    now = new Date(now.getTime() + 2000);
    expect((await ring.jwks()).keys.map((k) => k.kid)).toEqual([rotated.res!.kid]);
    const refused = await call(client, 'getClientLockout', { clientId: 'x' }, await operatorToken('root', rootJwk));
    expect(refused).toMatchObject({ status: grpc.status.UNAUTHENTICATED, message: 'invalid token: unknown signing key' });
  });

  it('rotates on schedule once, however many replicas race, and a ring under another root key refuses to start', async () => {
    now = new Date(now.getTime() + 25 * 3600_000);
    const results = await Promise.all([ring.rotateIfDue(), ring.rotateIfDue(), ring.rotateIfDue()]);
    expect(results.filter(Boolean).length).toBeLessThanOrEqual(1);
    expect(await ring.rotateIfDue()).toBe(false);
    const active = await sql<{ n: number }>`select count(*)::int as n from auth.signing_keys where retire_at is null`.execute(db);
    expect(active.rows[0]!.n).toBe(1);

    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const other = await createSigningKeyRing({
      db, store: createEventStore(db, { schema }), schema, namespace: uniqueNamespace(),
      rootKeyJwk: JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'other' }),
      rotationIntervalMs: 3600_000, retireAfterMs: 60_000, clock: () => now, newId: randomUUID,
    });
    await expect(other.init()).rejects.toMatchObject({ code: 'failed_precondition', message: expect.stringContaining('cannot be unsealed') });
  });
});
