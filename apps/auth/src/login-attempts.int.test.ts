import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1 } from '@coffer/contracts';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createGrpcServer, type GrpcServer } from '@coffer/rpc';
import { createDatabase } from '@coffer/runtime';
import { createLogger } from '@coffer/telemetry';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createTokenVerifier, type Principal } from '@coffer/tokens';
import { authGrpcService } from './auth.grpc';
import { migrateAuthReadModel, pruneLoginAttempts } from './auth.postgres';
import { createAuthService, type AuthService } from './auth.service';
import { verifySecret } from './password-hash';
import { importSigningKey } from './signing-keys';

const schema = 'auth';
const ISSUER = 'coffer-auth';
const MAX_FAILURES = 5;
const serviceSecret = `service-secret-${randomUUID()}`;

type Answer = { status: grpc.status; message: string; ms: number; token?: string };

function unary(client: grpc.Client, method: string, req: unknown): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve) => {
    (client as unknown as Record<string, (r: unknown, cb: (e: grpc.ServiceError | null, r?: { accessToken: string }) => void) => void>)[method]!(req, (err, res) =>
      resolve(err ? { status: err.code, message: err.details, ms: performance.now() - started } : { status: grpc.status.OK, message: '', ms: performance.now() - started, token: res!.accessToken }),
    );
  });
}

const operator: Principal = {
  subject: 'operator',
  kind: 'service',
  tokenType: 'coffer-service+jwt',
  role: 'operator',
  tokenId: 'test',
  issuedAt: new Date(),
  expiresAt: new Date(Date.now() + 600_000),
};

/**
 * Two replicas of auth (two services, two gRPC servers) over one real Postgres, with the real clock
 * and the real failure delays; the only instrument is a count of the secrets actually checked.
 */
describe('auth: client-credential lockout holds under concurrency and tells known from unknown ids by nothing', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  const servers: GrpcServer[] = [];
  const clients: authV1.AuthServiceClient[] = [];
  const services: AuthService[] = [];
  let checked = 0;

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_auth_attempts');
    db = createDatabase(tdb.url);
    await migrateEventStore(db, schema);
    await migrateAuthReadModel(db, schema);
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const key = await importSigningKey(JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'test' }));
    const namespace = uniqueNamespace();
    for (let i = 0; i < 2; i++) {
      const service = createAuthService({
        db,
        store: createEventStore(db, { schema }),
        schema,
        namespace,
        signingKey: async () => key,
        jwks: async () => ({ keys: [key.publicJwk] }),
        issuer: ISSUER,
        audiences: ['secrets'],
        lockoutPolicy: { maxFailures: MAX_FAILURES, windowMs: 900_000, lockMs: 900_000 },
        verifySecret: async (secret, hash) => {
          checked++;
          return verifySecret(secret, hash);
        },
        clock: () => new Date(),
        newId: randomUUID,
      });
      const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'auth', fetchJwks: async () => ({ keys: [key.publicJwk] }) as never });
      const server = createGrpcServer({ services: [authGrpcService(service, undefined as never)], verifier, logger: createLogger({ service: 'auth-test', level: 'silent' }) });
      const port = await server.listen('127.0.0.1:0');
      services.push(service);
      servers.push(server);
      clients.push(new authV1.AuthServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()));
    }
    await services[0]!.registerIdentities([{ clientId: 'config', clientSecret: serviceSecret, role: 'config' }]);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const s of servers) await s.shutdown();
    await db?.destroy();
    await tdb?.drop();
  });

  async function newApplication(): Promise<{ clientId: string; clientSecret: string }> {
    const org = await services[0]!.createOrganization(`org ${randomUUID()}`);
    const { application, clientSecret } = await services[0]!.createApplication(operator, { organizationId: org.organizationId, name: 'app', allowedOrigins: [] });
    return { clientId: application.clientId, clientSecret };
  }

  it('50 concurrent wrong secrets over two replicas: the right secret works before, at most 5 secrets are checked, the right one is refused after', async () => {
    const app = await newApplication();
    expect((await unary(clients[0]!, 'issueApplicationToken', app)).status).toBe(grpc.status.OK);
    checked = 0;
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => unary(clients[i % 2]!, 'issueApplicationToken', { clientId: app.clientId, clientSecret: `wrong-${i}` })),
    );
    const checkedBeforeLock = checked;
    console.log(`50 concurrent wrong secrets: ${checkedBeforeLock} secrets checked before the lock (max ${MAX_FAILURES})`);
    expect(answers.every((a) => a.status === grpc.status.UNAUTHENTICATED && a.message === 'invalid client credentials')).toBe(true);
    expect(checkedBeforeLock).toBeLessThanOrEqual(MAX_FAILURES);
    expect(checkedBeforeLock).toBeGreaterThan(0);
    const right = await unary(clients[1]!, 'issueApplicationToken', app);
    expect({ status: right.status, message: right.message }).toEqual({ status: grpc.status.UNAUTHENTICATED, message: 'invalid client credentials' });
    expect(checked).toBe(checkedBeforeLock);
  }, 60_000);

  it('the same holds for service identities: 50 concurrent wrong secrets check at most 5', async () => {
    expect((await unary(clients[0]!, 'issueServiceToken', { clientId: 'config', clientSecret: serviceSecret, audience: 'secrets' })).status).toBe(grpc.status.OK);
    checked = 0;
    await Promise.all(Array.from({ length: 50 }, (_, i) => unary(clients[i % 2]!, 'issueServiceToken', { clientId: 'config', clientSecret: `wrong-${i}`, audience: 'secrets' })));
    console.log(`50 concurrent wrong service secrets: ${checked} secrets checked before the lock`);
    expect(checked).toBeLessThanOrEqual(MAX_FAILURES);
    const right = await unary(clients[0]!, 'issueServiceToken', { clientId: 'config', clientSecret: serviceSecret, audience: 'secrets' });
    expect(right.status).toBe(grpc.status.UNAUTHENTICATED);
  }, 60_000);

  const N = MAX_FAILURES + 2;
  const compare = async (method: string, known: object, unknown: object) => {
    const run = async (req: object) => {
      const out: Answer[] = [];
      for (let i = 0; i < N; i++) out.push(await unary(clients[i % 2]!, method, req));
      return out;
    };
    // Side by side, so that load on the machine falls on both alike.
    const [k, u] = await Promise.all([run(known), run(unknown)]);
    console.log(`${method} delays (ms), known:   ${k.map((a) => Math.round(a.ms)).join(', ')}`);
    console.log(`${method} delays (ms), unknown: ${u.map((a) => Math.round(a.ms)).join(', ')}`);
    for (let i = 0; i < N; i++) {
      expect({ status: k[i]!.status, message: k[i]!.message }).toEqual({ status: u[i]!.status, message: u[i]!.message });
      expect(Math.abs(k[i]!.ms - u[i]!.ms)).toBeLessThan(150 + 0.2 * Math.max(k[i]!.ms, u[i]!.ms));
    }
    return { k, u };
  };

  it('IssueApplicationToken: a known and an unknown client id get the same answers on the same delay schedule, locked alike', async () => {
    const app = await newApplication();
    const { k, u } = await compare('issueApplicationToken', { clientId: app.clientId, clientSecret: 'wrong' }, { clientId: `app-${randomUUID()}`, clientSecret: 'wrong' });
    // Both are locked after the limit: their answers come after the longest delay (4 s), not at once.
    expect(k[N - 1]!.ms).toBeGreaterThan(3_900);
    expect(u[N - 1]!.ms).toBeGreaterThan(3_900);
  }, 120_000);

  it('IssueServiceToken: a known and an unknown client id get the same answers on the same delay schedule', async () => {
    await services[0]!.registerIdentities([{ clientId: 'sync-worker', clientSecret: `sw-${randomUUID()}`, role: 'sync-worker' }]);
    await compare('issueServiceToken', { clientId: 'sync-worker', clientSecret: 'wrong', audience: 'secrets' }, { clientId: 'no-such-service', clientSecret: 'wrong', audience: 'secrets' });
  }, 120_000);

  it('unknown client ids leave no event and nothing that names them', async () => {
    const dump = await sql<{ t: string }>`select string_agg(t::text, ' ') as t from (
      select e::text as t from auth.events e union all select o::text from auth.outbox o
      union all select a::text from auth.login_attempts a) x`.execute(db);
    expect(dump.rows[0]!.t).not.toContain('no-such-service');
    expect(dump.rows[0]!.t).toContain('config');
  });

  it('forgets the counts whose window and lock have passed, and only those', async () => {
    const locked = await sql<{ n: number }>`select count(*)::int as n from auth.login_attempts where locked_until > now()`.execute(db);
    expect(locked.rows[0]!.n).toBeGreaterThan(0);
    expect(await pruneLoginAttempts(db, schema, 900_000, new Date())).toBe(0);
    expect(await pruneLoginAttempts(db, schema, 900_000, new Date(Date.now() + 2 * 900_000))).toBeGreaterThan(0);
    const left = await sql<{ n: number }>`select count(*)::int as n from auth.login_attempts`.execute(db);
    expect(left.rows[0]!.n).toBe(0);
  });
});
