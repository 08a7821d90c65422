import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { authV1, CofferError } from '@coffer/contracts';
import { connectNats, createJetStreamPublisher, ensureServiceStream, integrationEventMessage } from '@coffer/messaging';
import { createGrpcServer, defineService, type GrpcServer } from '@coffer/rpc';
import { createLogger } from '@coffer/telemetry';
import { deleteStreams, testNatsUrl, uniqueNamespace } from '@coffer/testing';
import { createTokenVerifier, TOKEN_TYPES } from '@coffer/tokens';
import { commonEnv, parseEnv } from './env';
import { REVOCATIONS_NOT_LOADED, watchRevocations, type RevocationWatch } from './revocations';
import { logSecurityFindings } from './security-findings';

const logger = createLogger({ service: 'revocations-test', level: 'silent' });
const ns = uniqueNamespace();
const soon = () => new Date(Date.now() + 600_000);
const principal = (over: { tokenId?: string; subject?: string; applicationId?: string; issuedAt?: Date }) => ({
  tokenId: randomUUID(),
  subject: 'someone',
  issuedAt: new Date(Date.now() - 60_000),
  ...over,
});

async function until(check: () => boolean, timeoutMs = 2_000): Promise<number> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now() - start;
}

describe('watchRevocations: every service follows auth’s revocation events', () => {
  let nc: NatsConnection;
  let publish: ReturnType<typeof createJetStreamPublisher>;
  const tokenRevoked = (tokenId: string, expiresAt: Date) =>
    publish(integrationEventMessage(ns, 'TokenRevoked', { tokenId, expiresAt: expiresAt.toISOString(), revokedBy: 'operator', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }));

  beforeAll(async () => {
    nc = await connectNats({ servers: testNatsUrl(), name: 'revocations-test' });
    await ensureServiceStream(nc, ns, 'auth');
    publish = createJetStreamPublisher(nc);
  });

  afterAll(async () => {
    await nc?.close();
    await deleteStreams(testNatsUrl(), ns);
  });

  it('knows, once ready, every revocation published before it started (a restarted service forgets nothing)', async () => {
    const earlier = randomUUID();
    await tokenRevoked(earlier, soon());
    await publish(integrationEventMessage(ns, 'ApplicationDisabled', { clientId: 'app-1', organizationId: 'org', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }));
    const watch = watchRevocations({ nc, namespace: ns, logger });
    await watch.ready;
    expect(watch.list.isRevoked(principal({ tokenId: earlier }))).toBe(true);
    expect(watch.list.isRevoked(principal({ subject: 'end-user', applicationId: 'app-1' }))).toBe(true);
    // Tokens of the application issued after it was disabled would not be refused by this rule (auth issues none).
    expect(watch.list.isRevoked(principal({ subject: 'end-user', applicationId: 'app-1', issuedAt: new Date(Date.now() + 60_000) }))).toBe(false);
    await watch.stop();
  });

  it('applies a new revocation within milliseconds, and ignores other auth events', async () => {
    const watch = watchRevocations({ nc, namespace: ns, logger });
    await watch.ready;
    await publish(integrationEventMessage(ns, 'OrganizationCreated', { organizationId: 'o', name: 'n', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }));
    const jti = randomUUID();
    expect(watch.list.isRevoked(principal({ tokenId: jti }))).toBe(false);
    const sent = Date.now();
    await tokenRevoked(jti, soon());
    await until(() => watch.list.isRevoked(principal({ tokenId: jti })));
    expect(Date.now() - sent).toBeLessThan(1_000);
    await publish(integrationEventMessage(ns, 'ServiceIdentityRevoked', { clientId: 'operator', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }));
    await until(() => watch.list.isRevoked(principal({ subject: 'operator' })));
    await watch.stop();
  });

  it('becomes ready even when auth has published nothing yet, and keeps retrying while the stream is missing', async () => {
    const empty = uniqueNamespace();
    const watch = watchRevocations({ nc, namespace: empty, logger, readyTimeoutMs: 500, retryDelayMs: 50 });
    await watch.ready;
    await ensureServiceStream(nc, empty, 'auth');
    const jti = randomUUID();
    await createJetStreamPublisher(nc)(
      integrationEventMessage(empty, 'TokenRevoked', { tokenId: jti, expiresAt: soon().toISOString(), revokedBy: 'x', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }),
    );
    await until(() => watch.list.isRevoked(principal({ tokenId: jti })), 5_000);
    await watch.stop();
    await deleteStreams(testNatsUrl(), empty);
  });
});

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A real pino logger whose lines are kept for the test to count. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger({ service: 'revocations-test', level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) } });
  return { logger, lines };
}

const WARN = 40;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A NATS server of this test's own, so the test can take it away and bring it back. */
function startOwnNats(port: number, storeDir: string): ChildProcess {
  return spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], { stdio: 'ignore' });
}

async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((resolve) => p.once('exit', resolve));
  p.kill('SIGKILL');
  await exited;
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.end(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - start > timeoutMs) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('revocations fail closed: no revocation list, no authenticated call', () => {
  let key: { privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey']; jwk: JWK };
  let nc: NatsConnection;
  const running: { server: GrpcServer; client: grpc.Client; watch: RevocationWatch }[] = [];

  const serviceToken = (jti: string = randomUUID()) =>
    new SignJWT({ role: 'operator' })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1', typ: TOKEN_TYPES.service })
      .setIssuer('coffer-auth')
      .setAudience('auth')
      .setSubject('operator')
      .setJti(jti)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(key.privateKey);

  /** A real gRPC server with one public method (GetJwks) and one that takes a token (CreateOrganization). */
  async function serve(watch: RevocationWatch, logger = createLogger({ service: 'revocations-test', level: 'silent' })) {
    const verifier = createTokenVerifier({ issuer: 'coffer-auth', audience: 'auth', fetchJwks: async () => ({ keys: [key.jwk] }), revocations: watch.check });
    const handlers = Object.fromEntries(
      Object.keys(authV1.AuthServiceService).map((k) => [
        k,
        {
          permission: 'auth.admin',
          handler: async () => {
            throw new CofferError('failed_precondition', 'not part of this fixture');
          },
        },
      ]),
    );
    const registration = defineService(authV1.AuthServiceService, 'coffer.auth.v1.AuthService', {
      ...handlers,
      getJwks: { permission: 'public', handler: async () => ({ keys: [] }) },
      createOrganization: { permission: 'auth.admin', handler: async () => ({ organization: { organizationId: 'o', name: 'n', createdAt: new Date().toISOString() } }) },
    } as never);
    const server = createGrpcServer({ services: [registration], verifier, logger });
    const port = await server.listen('127.0.0.1:0');
    const client = new authV1.AuthServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    running.push({ server, client, watch });
    return client;
  }

  function unary(client: grpc.Client, method: 'getJwks' | 'createOrganization', token?: string): Promise<{ status: grpc.status; message: string }> {
    const metadata = new grpc.Metadata();
    if (token) metadata.set('authorization', `Bearer ${token}`);
    const request = method === 'getJwks' ? authV1.GetJwksRequest.fromPartial({}) : authV1.CreateOrganizationRequest.fromPartial({ name: 'n' });
    return new Promise((resolve) => {
      (client as unknown as Record<string, (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void>)[method]!(
        request,
        metadata,
        { deadline: Date.now() + 5_000 },
        (err) => resolve(err ? { status: err.code, message: err.details } : { status: grpc.status.OK, message: '' }),
      );
    });
  }

  async function statusWithin(check: () => Promise<{ status: grpc.status }>, wanted: grpc.status, timeoutMs: number): Promise<number> {
    const start = Date.now();
    let last: grpc.status | undefined;
    while ((last = (await check()).status) !== wanted) {
      if (Date.now() - start > timeoutMs) throw new Error(`still ${grpc.status[last]} after ${timeoutMs} ms, wanted ${grpc.status[wanted]}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    return Date.now() - start;
  }

  beforeAll(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    key = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'EdDSA', use: 'sig' } };
    nc = await connectNats({ servers: testNatsUrl(), name: 'revocations-fail-closed-test' });
  });

  afterAll(async () => {
    for (const r of running) {
      r.client.close();
      await r.server.shutdown();
      await r.watch.stop();
    }
    await nc?.close();
  });

  it('answers UNAVAILABLE to authenticated calls while the revocation stream is missing, serves public calls, and passes them once it can be read', async () => {
    const missing = uniqueNamespace();
    const watch = watchRevocations({ nc, namespace: missing, logger, readyTimeoutMs: 300, retryDelayMs: 50, probeIntervalMs: 100, maxStalenessMs: 1_000 });
    await watch.ready;
    const client = await serve(watch);
    const token = await serviceToken();
    expect(await unary(client, 'createOrganization', token)).toEqual({ status: grpc.status.UNAVAILABLE, message: REVOCATIONS_NOT_LOADED });
    expect((await unary(client, 'getJwks')).status).toBe(grpc.status.OK);
    expect(watch.isCurrent()).toBe(false);

    await ensureServiceStream(nc, missing, 'auth');
    const jti = randomUUID();
    await createJetStreamPublisher(nc)(
      integrationEventMessage(missing, 'TokenRevoked', { tokenId: jti, expiresAt: soon().toISOString(), revokedBy: 'x', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }),
    );
    await statusWithin(() => unary(client, 'createOrganization', token), grpc.status.OK, 5_000);
    // What it read while catching up applies: the token revoked before the stream became readable is refused.
    expect((await unary(client, 'createOrganization', await serviceToken(jti))).status).toBe(grpc.status.UNAUTHENTICATED);
    // Other auth events on the same stream, which the follower never receives, do not make it look behind.
    await createJetStreamPublisher(nc)(integrationEventMessage(missing, 'OrganizationCreated', { organizationId: 'o', name: 'n', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }));
    await new Promise((r) => setTimeout(r, 1_500));
    expect(watch.isCurrent()).toBe(true);
    expect((await unary(client, 'createOrganization', token)).status).toBe(grpc.status.OK);
    await deleteStreams(testNatsUrl(), missing);
  });

  it('answers UNAVAILABLE once NATS has been unreachable longer than the staleness bound, and passes again once it is back', async () => {
    const port = await freePort();
    const storeDir = mkdtempSync(path.join(tmpdir(), 'coffer-nats-'));
    let natsServer = startOwnNats(port, storeDir);
    try {
      await waitForPort(port);
      const own = await connect({ servers: `nats://127.0.0.1:${port}`, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
      const ownNs = uniqueNamespace();
      await ensureServiceStream(own, ownNs, 'auth');
      const watch = watchRevocations({ nc: own, namespace: ownNs, logger, retryDelayMs: 100, probeIntervalMs: 100, maxStalenessMs: 1_000 });
      await watch.ready;
      const client = await serve(watch);
      const token = await serviceToken();
      expect((await unary(client, 'createOrganization', token)).status).toBe(grpc.status.OK);

      await stopProcess(natsServer);
      const lostAt = Date.now();
      // Within the bound a short outage changes nothing; past it, the service refuses to decide.
      expect((await unary(client, 'createOrganization', token)).status).toBe(grpc.status.OK);
      await statusWithin(() => unary(client, 'createOrganization', token), grpc.status.UNAVAILABLE, 5_000);
      const refusedAfter = Date.now() - lostAt;
      expect(refusedAfter).toBeGreaterThanOrEqual(900);
      expect((await unary(client, 'getJwks')).status).toBe(grpc.status.OK);

      natsServer = startOwnNats(port, storeDir);
      await waitForPort(port);
      const back = await statusWithin(() => unary(client, 'createOrganization', token), grpc.status.OK, 15_000);
      console.log(`NATS lost: authenticated calls refused after ${refusedAfter} ms; passing again ${back} ms after it came back`);
      // Revocations flow again after the outage.
      const jti = randomUUID();
      const revoked = await serviceToken(jti);
      await createJetStreamPublisher(own)(
        integrationEventMessage(ownNs, 'TokenRevoked', { tokenId: jti, expiresAt: soon().toISOString(), revokedBy: 'x', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }),
      );
      await statusWithin(() => unary(client, 'createOrganization', revoked), grpc.status.UNAUTHENTICATED, 5_000);
      await own.close();
    } finally {
      await stopProcess(natsServer);
      rmSync(storeDir, { recursive: true, force: true });
    }
  }, 60_000);

  it('with COFFER_REVOCATION_FAIL_OPEN serves authenticated calls without the list, and reports it as a security finding', async () => {
    const config = parseEnv(z.object(commonEnv), { DATABASE_URL: 'postgres://127.0.0.1/x', COFFER_REVOCATION_FAIL_OPEN: 'true' }, 'test');
    const { logger: captured, lines } = capturingLogger();
    const findings = logSecurityFindings(captured, config);
    expect(findings.map((f) => f.id)).toEqual(['revocation-fail-open']);
    expect(lines.filter((l) => l.level === WARN && l.finding === 'revocation-fail-open')).toHaveLength(1);

    const missing = uniqueNamespace();
    const watch = watchRevocations({ nc, namespace: missing, logger, readyTimeoutMs: 300, retryDelayMs: 50, failOpen: config.COFFER_REVOCATION_FAIL_OPEN });
    await watch.ready;
    const client = await serve(watch);
    expect(watch.isCurrent()).toBe(false);
    expect((await unary(client, 'createOrganization', await serviceToken())).status).toBe(grpc.status.OK);
  });

  it('backs off its warning while the stream cannot be read (first at once, then doubling to a cap), and says once when it recovers', async () => {
    const missing = uniqueNamespace();
    const { logger: captured, lines } = capturingLogger();
    const watch = watchRevocations({ nc, namespace: missing, logger: captured, readyTimeoutMs: 60_000, retryDelayMs: 10, warnIntervalMs: 50, maxWarnIntervalMs: 400, probeIntervalMs: 50 });
    await new Promise((r) => setTimeout(r, 2_000));
    const warnings = lines.filter((l) => l.msg === 'cannot follow revocations; retrying');
    // Warnings at 0, 50, 150, 350, 750, 1150, 1550, 1950 ms: eight, give or take scheduling, while it retried every 10 ms.
    expect(warnings.length).toBeGreaterThanOrEqual(5);
    expect(warnings.length).toBeLessThanOrEqual(9);
    expect(warnings.every((l) => l.level === WARN)).toBe(true);
    expect(Number(warnings.at(-1)!.failures)).toBeGreaterThan(warnings.length * 3);
    const gaps = warnings.slice(1).map((w, i) => Date.parse(String(w.time)) - Date.parse(String(warnings[i]!.time)));
    expect(Math.max(...gaps)).toBeLessThan(400 + 200);

    await ensureServiceStream(nc, missing, 'auth');
    await until(() => watch.isCurrent(), 5_000);
    await new Promise((r) => setTimeout(r, 300));
    const recovered = lines.filter((l) => l.msg === 'following revocations again');
    expect(recovered).toHaveLength(1);
    expect(recovered[0]!.level).toBe(30);
    // Nothing more to say once it follows again.
    expect(lines.slice(lines.indexOf(recovered[0]!)).filter((l) => l.level >= WARN)).toEqual([]);
    await watch.stop();
    await deleteStreams(testNatsUrl(), missing);
  });
});
