import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EPHEMERAL_WORKSPACE_ID, secretsV1 } from '@coffer/contracts';
import { createGrpcServer, createPromiseClient, type GrpcServer } from '@coffer/rpc';
import { createDatabase } from '@coffer/runtime';
import { createLogger } from '@coffer/telemetry';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createTokenVerifier, TOKEN_TYPES } from '@coffer/tokens';
import { startInProcessSecretsService } from './in-process';
import { secretsGrpcService } from './secrets.grpc';

const ISSUER = 'coffer-auth';
const wsA = randomUUID();
const wsB = randomUUID();
const ref = (coordinate: string) => JSON.stringify({ token: { _secret: coordinate } });

describe('every secret belongs to one owner (workspace and actor or check run), over gRPC against Postgres', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let server: GrpcServer;
  let config: ReturnType<typeof client>;
  let worker: ReturnType<typeof client>;
  const clients: Array<{ close(): void }> = [];
  let address = '';
  let sign: (role: string) => Promise<string>;

  const client = (role: string) => {
    const c = createPromiseClient(secretsV1.SecretsServiceClient, address, { tokenProvider: () => sign(role) });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_secrets_ownership');
    db = createDatabase(tdb.url);
    const service = await startInProcessSecretsService({ db, namespace: uniqueNamespace() });
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'test', alg: 'EdDSA', use: 'sig' };
    sign = (role) =>
      new SignJWT({ role })
        .setProtectedHeader({ alg: 'EdDSA', kid: 'test', typ: TOKEN_TYPES.service })
        .setIssuer(ISSUER)
        .setAudience('secrets')
        .setSubject(role)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'secrets', fetchJwks: async () => ({ keys: [jwk] }) });
    server = createGrpcServer({ services: [secretsGrpcService(service)], verifier, logger: createLogger({ service: 'secrets', level: 'silent' }) });
    address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
    config = client('config');
    worker = client('sync-worker');
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await server?.shutdown();
    await db?.destroy();
    await tdb?.drop();
  });

  const write = async (workspaceId: string, value: string, ownerId: string, ownerWorkspaceId = '') =>
    (await config.writeSecrets({ workspaceId, ownerId, ownerWorkspaceId, writeId: '', secrets: [{ baseCoordinate: '', expectedVersion: 0, value, ttlSeconds: 0 }] })).secrets[0]!;

  async function denied(p: Promise<unknown>, coordinate: string): Promise<void> {
    const err = (await p.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code: string; message: string } | undefined;
    expect(err).toMatchObject({ code: 'permission_denied' });
    expect(err!.message).not.toContain(coordinate);
    expect(err!.message).not.toContain(coordinate.replace(/_v\d+$/, ''));
  }

  it("refuses to hydrate a check/discover secret for any workspace but the one whose check wrote it, or for another run", async () => {
    const jobA = randomUUID();
    const canary = `canary-ephemeral-${randomUUID()}`;
    const eph = await write(EPHEMERAL_WORKSPACE_ID, canary, jobA, wsA);
    expect(eph.coordinate.startsWith(`coffer_workspace_${EPHEMERAL_WORKSPACE_ID}_`)).toBe(true);
    await denied(worker.hydrateConfig({ workspaceId: wsB, partialConfigJson: ref(eph.coordinate), reason: 'check b', ownerId: jobA }), eph.coordinate);
    await denied(worker.hydrateConfig({ workspaceId: wsB, partialConfigJson: ref(eph.coordinate), reason: 'sync b', ownerId: randomUUID() }), eph.coordinate);
    await denied(worker.hydrateConfig({ workspaceId: wsA, partialConfigJson: ref(eph.coordinate), reason: 'another run of a', ownerId: randomUUID() }), eph.coordinate);
    await denied(worker.hydrateConfig({ workspaceId: EPHEMERAL_WORKSPACE_ID, partialConfigJson: ref(eph.coordinate), reason: 'no workspace', ownerId: jobA }), eph.coordinate);
    const ok = await worker.hydrateConfig({ workspaceId: wsA, partialConfigJson: ref(eph.coordinate), reason: `check ${jobA}`, ownerId: jobA });
    expect(JSON.parse(ok.configJson)).toEqual({ token: canary });
  });

  it('refuses a check/discover write that names no owner workspace', async () => {
    await expect(
      config.writeSecrets({ workspaceId: EPHEMERAL_WORKSPACE_ID, ownerId: randomUUID(), ownerWorkspaceId: '', writeId: '', secrets: [{ baseCoordinate: '', expectedVersion: 0, value: 'v', ttlSeconds: 0 }] }),
    ).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field: 'owner_workspace_id' }] });
    await expect(
      config.writeSecrets({ workspaceId: wsA, ownerId: randomUUID(), ownerWorkspaceId: wsB, writeId: '', secrets: [{ baseCoordinate: '', expectedVersion: 0, value: 'v', ttlSeconds: 0 }] }),
    ).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field: 'owner_workspace_id' }] });
  });

  it("refuses to hydrate another actor's coordinate of the same workspace, and another workspace's", async () => {
    const actorX = randomUUID();
    const actorY = randomUUID();
    const y = await write(wsA, `canary-y-${randomUUID()}`, actorY);
    await denied(worker.hydrateConfig({ workspaceId: wsA, partialConfigJson: ref(y.coordinate), reason: 'sync x', ownerId: actorX }), y.coordinate);
    await denied(worker.hydrateConfig({ workspaceId: wsA, partialConfigJson: ref(y.coordinate), reason: 'no owner named', ownerId: '' }), y.coordinate);
    await denied(worker.hydrateConfig({ workspaceId: wsB, partialConfigJson: ref(y.coordinate), reason: 'sync b', ownerId: actorY }), y.coordinate);
    expect(JSON.parse((await worker.hydrateConfig({ workspaceId: wsA, partialConfigJson: ref(y.coordinate), reason: 'sync y', ownerId: actorY })).configJson).token).toMatch(/^canary-y-/);
  });

  it("a later version of a base must come from its owner", async () => {
    const actorY = randomUUID();
    const y = await write(wsA, 'y1', actorY);
    await expect(
      config.writeSecrets({ workspaceId: wsA, ownerId: randomUUID(), ownerWorkspaceId: '', writeId: '', secrets: [{ baseCoordinate: y.baseCoordinate, expectedVersion: 1, value: 'stolen', ttlSeconds: 0 }] }),
    ).rejects.toMatchObject({ code: 'permission_denied' });
    const next = await config.writeSecrets({ workspaceId: wsA, ownerId: actorY, ownerWorkspaceId: '', writeId: '', secrets: [{ baseCoordinate: y.baseCoordinate, expectedVersion: 1, value: 'y2', ttlSeconds: 0 }] });
    expect(next.secrets[0]!.version).toBe(2);
  });

  it("a delete on behalf of another owner destroys nothing; the owner's own delete destroys", async () => {
    const actorX = randomUUID();
    const actorY = randomUUID();
    const y = await write(wsA, `canary-y-${randomUUID()}`, actorY);
    const eph = await write(EPHEMERAL_WORKSPACE_ID, 'check value', randomUUID(), wsA);
    expect((await config.deleteSecrets({ workspaceId: wsA, coordinates: [y.baseCoordinate], ownerId: actorX, writeId: '' })).destroyed).toEqual([]);
    expect((await config.deleteSecrets({ workspaceId: wsA, coordinates: [y.coordinate], ownerId: '', writeId: '' })).destroyed).toEqual([]);
    expect((await config.deleteSecrets({ workspaceId: EPHEMERAL_WORKSPACE_ID, coordinates: [eph.baseCoordinate], ownerId: actorX, writeId: '' })).destroyed).toEqual([]);
    const versions = await config.listSecretVersions({ workspaceId: wsA, baseCoordinate: y.baseCoordinate });
    expect(versions.versions.map((v) => v.state)).toEqual(['active']);
    await worker.hydrateConfig({ workspaceId: wsA, partialConfigJson: ref(y.coordinate), reason: 'sync y', ownerId: actorY });
    expect((await config.deleteSecrets({ workspaceId: wsA, coordinates: [y.baseCoordinate], ownerId: actorY, writeId: '' })).destroyed).toEqual([y.coordinate]);
  });

  it('a secret stored before owners existed: a check/discover one hydrates for nobody; another stays in its workspace', async () => {
    const eph = await write(EPHEMERAL_WORKSPACE_ID, 'legacy check', randomUUID(), wsA);
    const old = await write(wsA, 'legacy value', randomUUID());
    await sql`update secrets.secret_versions set owner_id = null, owner_workspace_id = null where base_coordinate in (${eph.baseCoordinate}, ${old.baseCoordinate})`.execute(db);
    await denied(worker.hydrateConfig({ workspaceId: wsA, partialConfigJson: ref(eph.coordinate), reason: 'legacy check', ownerId: '' }), eph.coordinate);
    await denied(worker.hydrateConfig({ workspaceId: wsB, partialConfigJson: ref(old.coordinate), reason: 'legacy b', ownerId: '' }), old.coordinate);
    expect(JSON.parse((await worker.hydrateConfig({ workspaceId: wsA, partialConfigJson: ref(old.coordinate), reason: 'legacy a', ownerId: randomUUID() })).configJson)).toEqual({ token: 'legacy value' });
  });
});
