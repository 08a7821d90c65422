import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretsV1 } from '@coffer/contracts';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createGrpcServer, ERROR_DETAILS_KEY, type GrpcServer } from '@coffer/rpc';
import { createDatabase } from '@coffer/runtime';
import { createTestDatabase, latencyFigures, p99, timedSeries, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createTokenVerifier, TOKEN_TYPES, type TokenVerifier } from '@coffer/tokens';
import { createDataKeyCache } from './data-key-cache';
import type { KeyManagementService } from './kms/kms';
import { createLocalKms, generateKeyringDocument, parseKeyring } from './kms/local-kms';
import { secretsGrpcService } from './secrets.grpc';
import { migrateSecretsReadModel } from './secrets.postgres';
import { createSecretsService, secretsChainOf, type SecretsService } from './secrets.service';

const schema = 'secrets';
const ISSUER = 'coffer-auth';
const MAX_SECRETS = 100;
const PER_WORKSPACE = 1;
const QUEUE = 2;

interface Outcome<Res> {
  code: grpc.status;
  message: string;
  field?: string;
  value?: Res;
}

/** One unary call on the raw client, its status whatever it is. */
function call<Req, Res>(client: grpc.Client, method: string, req: Req, token: string, options: { deadlineMs?: number; cancelAfterMs?: number } = {}): Promise<Outcome<Res>> {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  const callOptions: grpc.CallOptions = options.deadlineMs ? { deadline: new Date(Date.now() + options.deadlineMs) } : {};
  return new Promise((resolve) => {
    const fn = (client as unknown as Record<string, (...a: unknown[]) => grpc.ClientUnaryCall>)[method]!.bind(client);
    const c = fn(req, md, callOptions, (err: grpc.ServiceError | null, value: Res) => {
      if (!err) return resolve({ code: grpc.status.OK, message: '', value });
      const details = err.metadata?.get(ERROR_DETAILS_KEY)[0];
      resolve({ code: err.code, message: err.details, field: details ? String(details) : undefined });
    });
    if (options.cancelAfterMs !== undefined) setTimeout(() => c.cancel(), options.cancelAfterMs);
  });
}


describe('one workspace cannot stall the others: limits, bounded writes, deadlines, per-workspace concurrency', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let server: GrpcServer;
  let client: secretsV1.SecretsServiceClient;
  let configToken: string;
  let syncToken: string;
  // The KMS is the real local one; a test slows its wraps down to hold a write open long enough.
  let wrapDelayMs = 0;
  let service: SecretsService;
  let verifier: TokenVerifier;

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_secrets_flood');
    db = createDatabase(tdb.url);
    await migrateEventStore(db, schema);
    await migrateSecretsReadModel(db, schema);
    const local = createLocalKms(parseKeyring(generateKeyringDocument('flood')));
    const kms: KeyManagementService = {
      ...local,
      wrap: async (key, context) => {
        if (wrapDelayMs > 0) await sleep(wrapDelayMs);
        return local.wrap(key, context);
      },
    };
    service = createSecretsService({
      db,
      store: createEventStore(db, { schema, chainOf: secretsChainOf }),
      kms,
      schema,
      coordinatePrefix: 'coffer',
      namespace: uniqueNamespace(),
      ephemeralTtlMs: 2 * 3600 * 1000,
      cache: createDataKeyCache({ maxEntries: 1000, ttlMs: 60_000, clock: Date.now }),
      rotationPeriodMs: 365 * 24 * 3600 * 1000,
      clock: () => new Date(),
      newId: randomUUID,
      maxSecretsPerRequest: MAX_SECRETS,
    });
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'flood', alg: 'EdDSA', use: 'sig' };
    const sign = (role: string) => {
      const iat = Math.floor(Date.now() / 1000);
      return new SignJWT({ role })
        .setProtectedHeader({ alg: 'EdDSA', kid: 'flood', typ: TOKEN_TYPES.service })
        .setIssuer(ISSUER)
        .setSubject(`${role}-client`)
        .setAudience('secrets')
        .setJti(randomUUID())
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + 1200)
        .sign(privateKey);
    };
    configToken = await sign('config');
    syncToken = await sign('sync-worker');
    verifier = createTokenVerifier({ issuer: ISSUER, audience: 'secrets', fetchJwks: async () => ({ keys: [jwk] }) });
    server = createGrpcServer({
      services: [secretsGrpcService(service, { writesPerWorkspace: PER_WORKSPACE, hydratesPerWorkspace: 4, queuedPerWorkspace: QUEUE })],
      verifier,
      logger: pino({ level: 'silent' }),
    });
    const port = await server.listen('127.0.0.1:0');
    client = new secretsV1.SecretsServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await server?.shutdown();
    await db?.destroy();
    await tdb?.drop();
  });

  const rows = async () => {
    const r = await sql<{ events: number; versions: number; keys: number; outbox: number }>`select
      (select count(*)::int from secrets.events) as events,
      (select count(*)::int from secrets.secret_versions) as versions,
      (select count(*)::int from secrets.data_keys) as keys,
      (select count(*)::int from secrets.outbox) as outbox`.execute(db);
    return r.rows[0]!;
  };
  const newSecrets = (n: number, label = 'v') => Array.from({ length: n }, (_, i) => ({ baseCoordinate: '', expectedVersion: 0, value: `${label}-${i}-${randomUUID()}`, ttlSeconds: 0 }));
  const write = (workspaceId: string, n: number, options: { deadlineMs?: number; cancelAfterMs?: number } = {}) =>
    call<secretsV1.WriteSecretsRequest, secretsV1.WriteSecretsResponse>(client, 'writeSecrets', { ownerId: '', ownerWorkspaceId: '', writeId: '', workspaceId, secrets: newSecrets(n) }, configToken, options);

  it('refuses a WriteSecrets of more secrets than the limit: INVALID_ARGUMENT naming secrets, nothing written', async () => {
    const before = await rows();
    const res = await write(randomUUID(), MAX_SECRETS + 1);
    expect(res.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(res.message).toContain('secrets');
    expect(res.message).toContain(String(MAX_SECRETS));
    expect(res.field).toContain('secrets');
    expect(await rows()).toEqual(before);
    const ok = await write(randomUUID(), MAX_SECRETS);
    expect(ok.code).toBe(grpc.status.OK);
    expect(ok.value!.secrets).toHaveLength(MAX_SECRETS);
    const after = await rows();
    expect(after.versions - before.versions).toBe(MAX_SECRETS);
    expect(after.keys - before.keys).toBe(MAX_SECRETS);
    expect(after.outbox - before.outbox).toBe(MAX_SECRETS);
  }, 60_000);

  it('a WriteSecrets whose deadline passes before the commit commits nothing', async () => {
    wrapDelayMs = 20;
    try {
      const before = await rows();
      const res = await write(randomUUID(), 40, { deadlineMs: 300 });
      expect(res.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      // The server would have finished sealing 40 values (~0.8 s) and committed by now.
      await sleep(2_000);
      expect(await rows()).toEqual(before);
    } finally {
      wrapDelayMs = 0;
    }
  }, 60_000);

  it('a cancelled WriteSecrets commits nothing', async () => {
    wrapDelayMs = 20;
    try {
      const before = await rows();
      const res = await write(randomUUID(), 40, { cancelAfterMs: 200 });
      expect(res.code).toBe(grpc.status.CANCELLED);
      await sleep(2_000);
      expect(await rows()).toEqual(before);
    } finally {
      wrapDelayMs = 0;
    }
  }, 60_000);

  it('bounds concurrent heavy calls per workspace: the overflow gets UNAVAILABLE, another workspace is served', async () => {
    wrapDelayMs = 20;
    try {
      const flooder = randomUUID();
      const before = await rows();
      const flood = Array.from({ length: PER_WORKSPACE + QUEUE + 3 }, () => write(flooder, 10));
      await sleep(50);
      const other = await write(randomUUID(), 1);
      const results = await Promise.all(flood);
      expect(other.code).toBe(grpc.status.OK);
      const refused = results.filter((r) => r.code !== grpc.status.OK);
      const served = results.filter((r) => r.code === grpc.status.OK);
      expect(refused.length).toBeGreaterThanOrEqual(3);
      expect(served.length).toBeGreaterThanOrEqual(PER_WORKSPACE);
      for (const r of refused) {
        expect(r.code).toBe(grpc.status.UNAVAILABLE);
        expect(r.message).toMatch(/too many concurrent calls for this workspace/);
      }
      // Refused calls wrote nothing: exactly the served ones (and the other workspace's one) are there.
      expect((await rows()).versions - before.versions).toBe(served.length * 10 + 1);
    } finally {
      wrapDelayMs = 0;
    }
  }, 60_000);

  it('spreads one workspace\'s writes at its rate: a full burst at once, then a write that could not be served before its deadline is refused and writes nothing', async () => {
    // A second server over the same service, with a rate low enough that the refusal does not depend on how fast this machine is.
    const rated = createGrpcServer({
      services: [secretsGrpcService(service, { writesPerWorkspace: PER_WORKSPACE, hydratesPerWorkspace: 4, queuedPerWorkspace: QUEUE, writeRatePerWorkspace: 10, writeBurstPerWorkspace: MAX_SECRETS })],
      verifier,
      logger: pino({ level: 'silent' }),
    });
    const ratedClient = new secretsV1.SecretsServiceClient(`127.0.0.1:${await rated.listen('127.0.0.1:0')}`, grpc.credentials.createInsecure());
    const writeRated = (workspaceId: string, n: number, deadlineMs: number) =>
      call<secretsV1.WriteSecretsRequest, secretsV1.WriteSecretsResponse>(ratedClient, 'writeSecrets', { ownerId: '', ownerWorkspaceId: '', writeId: '', workspaceId, secrets: newSecrets(n, 'rated') }, configToken, { deadlineMs });
    try {
      const ws = randomUUID();
      expect((await writeRated(ws, MAX_SECRETS, 60_000)).code).toBe(grpc.status.OK);
      const before = await rows();
      // The next 100 versions are due 10 s after the first ones: past a 2 s deadline, so refused at once.
      const refused = await writeRated(ws, MAX_SECRETS, 2_000);
      expect(refused.code).toBe(grpc.status.UNAVAILABLE);
      expect(refused.message).toMatch(/^this workspace is over its rate of 10 secret versions per second; retry in \d+ s$/);
      expect(await rows()).toEqual(before);
      // Another workspace has a budget of its own; a small write of this one waits for its share and is served.
      expect((await writeRated(randomUUID(), MAX_SECRETS, 60_000)).code).toBe(grpc.status.OK);
      expect((await writeRated(ws, 5, 30_000)).code).toBe(grpc.status.OK);
    } finally {
      ratedClient.close();
      await rated.shutdown();
    }
  });

  it("another workspace's HydrateConfig p99 while one workspace writes its maximum stays near idle", async () => {
    const reader = randomUUID();
    const written = await write(reader, 3);
    expect(written.code).toBe(grpc.status.OK);
    const partial = JSON.stringify(Object.fromEntries(written.value!.secrets.map((s, i) => [`k${i}`, { _secret: s.coordinate }])));
    const hydrateOnce = async () => {
      const r = await call<secretsV1.HydrateConfigRequest, secretsV1.HydrateConfigResponse>(client, 'hydrateConfig', { ownerId: '', workspaceId: reader, partialConfigJson: partial, reason: 'p99' }, syncToken);
      expect(r.code).toBe(grpc.status.OK);
    };
    // Bounded by count and by time, so an unbounded stall shows as figures rather than a hang.
    const series = (n: number) => timedSeries(n, hydrateOnce, 30_000);
    await series(10);
    const idle = await series(150);

    const flooder = randomUUID();
    let stop = false;
    let floodWrites = 0;
    let floodRefused = 0;
    // As many writers as the workspace may run at once, plus one that keeps knocking.
    const flooding = Array.from({ length: PER_WORKSPACE + 1 }, async () => {
      while (!stop) {
        const r = await write(flooder, MAX_SECRETS);
        if (r.code === grpc.status.OK) floodWrites++;
        else {
          expect(r.code).toBe(grpc.status.UNAVAILABLE);
          floodRefused++;
          await sleep(20);
        }
      }
    });
    await sleep(200);
    const loaded = await series(150);
    stop = true;
    await Promise.all(flooding);

    const figures = { ...latencyFigures(idle, loaded), floodWrites, floodRefused };
    console.log(`hydrate latency (ms) while another workspace writes ${MAX_SECRETS} secrets per call:`, JSON.stringify(figures));
    expect(floodWrites).toBeGreaterThan(0);
    // Loose on this shared machine (the figures are printed above): the target is 2x idle; the
    // assertion catches the unbounded case, where a flood stalled other workspaces for seconds.
    expect(loaded.length).toBeGreaterThanOrEqual(20);
    expect(p99(loaded)).toBeLessThan(Math.max(10 * p99(idle), 2_000));
  }, 180_000);
});
