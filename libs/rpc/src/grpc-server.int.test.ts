import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { context, ROOT_CONTEXT, trace, TraceFlags, type Context, type ContextManager } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CofferError, secretsV1 } from '@coffer/contracts';
import { createTokenVerifier } from '@coffer/tokens';
import { defineService } from './define-service';
import { ERROR_DETAILS_KEY } from './error-details';
import { createGrpcServer, type GrpcServer } from './grpc-server';
import { createPromiseClient } from './promise-client';
import { CONNECTION_LOST_MESSAGE } from './unary-middleware';
import { bearer, captureLogger, createTestIssuer, healthCheck, ISSUER, rawUnary, reflect, type TestIssuer } from '../test/fixtures';

const SERVICE = 'coffer.secrets.v1.SecretsService';

// A minimal AsyncLocalStorage context manager, so a test can make a span context active the way the
// OpenTelemetry SDK would, without starting the SDK.
function asyncContextManager(): ContextManager {
  const storage = new AsyncLocalStorage<Context>();
  return {
    active: () => storage.getStore() ?? ROOT_CONTEXT,
    with: (ctx, fn, thisArg, ...args) => storage.run(ctx, () => fn.call(thisArg, ...args)),
    bind: (_ctx, target) => target,
    enable() {
      return this;
    },
    disable() {
      storage.disable();
      return this;
    },
  };
}

const notInFixture = async (): Promise<never> => {
  throw new CofferError('failed_precondition', 'not part of this fixture');
};

function secretsRegistration() {
  return defineService(secretsV1.SecretsServiceService, SERVICE, {
    writeSecrets: {
      permission: 'secrets.write',
      handler: async (req) => ({
        secrets: req.secrets.map((s) => ({ coordinate: `${s.baseCoordinate}_v1`, baseCoordinate: s.baseCoordinate, version: 1 })),
      }),
    },
    hydrateConfig: {
      permission: 'secrets.hydrate',
      handler: async (req, ctx) => {
        if (req.reason === 'slow') await sleep(1_000);
        return {
          configJson: JSON.stringify({
            subject: ctx.principal?.subject,
            role: ctx.principal?.role,
            traceId: ctx.traceId ?? null,
            deadline: ctx.deadline?.toISOString() ?? null,
          }),
        };
      },
    },
    deleteSecrets: {
      // Public only in this fixture, to exercise the no-auth path.
      permission: 'public',
      handler: async (req, ctx) => ({ destroyed: ctx.principal ? [] : req.coordinates }),
    },
    listSecretVersions: {
      permission: 'secrets.list',
      handler: async (req) => {
        if (req.baseCoordinate === 'missing') {
          throw new CofferError('not_found', 'secret coffer_workspace_w_secret_missing not found', [{ field: 'base_coordinate', reason: 'unknown – ü' }]);
        }
        if (req.baseCoordinate === 'boom') throw new Error('db password=hunter2');
        // The shape node-postgres gives a query whose connection was terminated (pg_terminate_backend).
        if (req.baseCoordinate === 'lost') throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
        if (req.baseCoordinate === 'refused') throw new AggregateError([Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })]);
        if (req.baseCoordinate === 'conflict') throw new CofferError('version_conflict', 'expected version 2, stream is at 3');
        // A handler that echoes its input without bound: the middleware is the last guard.
        if (req.baseCoordinate.startsWith('huge:')) {
          const echo = req.baseCoordinate;
          throw new CofferError('invalid_argument', `no secret ${echo}`, Array.from({ length: 50 }, () => ({ field: echo, reason: `bad ${echo}` })));
        }
        return { versions: [{ coordinate: `${req.baseCoordinate}_v1`, version: 1, state: 'active', createdAt: '2030-01-01T00:00:00Z', createdBy: 'config', kekVersion: 1 }] };
      },
    },
    getLatestSecretVersions: { permission: 'secrets.list', handler: notInFixture },
    deleteWorkspaceSecrets: { permission: 'secrets.delete', handler: notInFixture },
    rollbackSecret: { permission: 'secrets.write', handler: notInFixture },
    rotateKeyEncryptionKey: { permission: 'secrets.admin', handler: notInFixture },
    retireKeyEncryptionKeyVersion: { permission: 'secrets.admin', handler: notInFixture },
    listKeyEncryptionKeyVersions: { permission: 'secrets.admin', handler: notInFixture },
  });
}

describe('createGrpcServer', () => {
  let issuer: TestIssuer;
  let server: GrpcServer;
  let address: string;
  let raw: secretsV1.SecretsServiceClient;
  const log = captureLogger();
  const contextManager = asyncContextManager();

  beforeAll(async () => {
    context.setGlobalContextManager(contextManager);
    issuer = await createTestIssuer();
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'secrets', fetchJwks: async () => issuer.jwks });
    server = createGrpcServer({ services: [secretsRegistration()], verifier, logger: log.logger });
    const port = await server.listen('127.0.0.1:0');
    expect(port).toBeGreaterThan(0);
    address = `127.0.0.1:${port}`;
    raw = new secretsV1.SecretsServiceClient(address, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    raw?.close();
    await server?.shutdown();
    context.disable();
  });

  const listReq = (baseCoordinate: string) => ({ workspaceId: 'w', baseCoordinate });
  const hydrateReq = (reason = 'test') => ({ ownerId: '', workspaceId: 'w', partialConfigJson: '{}', reason });

  it('refuses a protected call without a token: UNAUTHENTICATED', async () => {
    const res = await rawUnary(raw, 'listSecretVersions', listReq('a'));
    expect(res.status).toBe(grpc.status.UNAUTHENTICATED);
    expect(res.message).toBe('missing bearer token');
  });

  it('refuses an invalid token: UNAUTHENTICATED, without echoing the token', async () => {
    const wrongAudience = await issuer.sign({ role: 'config', audience: 'config' });
    const res = await rawUnary(raw, 'listSecretVersions', listReq('a'), bearer(wrongAudience));
    expect(res.status).toBe(grpc.status.UNAUTHENTICATED);
    expect(res.message).toMatch(/^invalid token: /);
    expect(res.message).not.toContain(wrongAudience);

    const forged = await (await createTestIssuer()).sign({ role: 'sync-worker', audience: 'secrets' });
    expect((await rawUnary(raw, 'hydrateConfig', hydrateReq(), bearer(forged))).status).toBe(grpc.status.UNAUTHENTICATED);

    const notBearer = new grpc.Metadata();
    notBearer.set('authorization', `Basic ${Buffer.from('a:b').toString('base64')}`);
    expect((await rawUnary(raw, 'listSecretVersions', listReq('a'), notBearer)).status).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('refuses a role that lacks the permission: PERMISSION_DENIED', async () => {
    const configToken = await issuer.sign({ role: 'config', audience: 'secrets' });
    const res = await rawUnary(raw, 'hydrateConfig', hydrateReq(), bearer(configToken));
    expect(res.status).toBe(grpc.status.PERMISSION_DENIED);
    expect(res.message).toBe('role config lacks secrets.hydrate');
  });

  it('lets an allowed role through and gives the handler its principal and deadline', async () => {
    const token = await issuer.sign({ role: 'sync-worker', subject: 'worker-1', audience: 'secrets' });
    const res = await rawUnary<unknown, secretsV1.HydrateConfigResponse>(raw, 'hydrateConfig', hydrateReq(), bearer(token));
    expect(res.status).toBe(grpc.status.OK);
    const seen = JSON.parse(res.res!.configJson) as { subject: string; role: string; deadline: string | null };
    expect(seen).toMatchObject({ subject: 'worker-1', role: 'sync-worker' });
    expect(Date.parse(seen.deadline!)).toBeGreaterThan(Date.now());
  });

  it('serves public methods without a token', async () => {
    const res = await rawUnary<unknown, secretsV1.DeleteSecretsResponse>(raw, 'deleteSecrets', { workspaceId: 'w', coordinates: ['c1'] });
    expect(res.status).toBe(grpc.status.OK);
    expect(res.res!.destroyed).toEqual(['c1']);
  });

  it('maps a CofferError to its status, message and details', async () => {
    const token = await issuer.sign({ role: 'config', audience: 'secrets' });
    const res = await rawUnary(raw, 'listSecretVersions', listReq('missing'), bearer(token));
    expect(res.status).toBe(grpc.status.NOT_FOUND);
    expect(res.message).toBe('secret coffer_workspace_w_secret_missing not found');
    expect(JSON.parse(res.trailers!.get(ERROR_DETAILS_KEY)[0] as string)).toEqual([{ field: 'base_coordinate', reason: 'unknown – ü' }]);

    const conflict = await rawUnary(raw, 'listSecretVersions', listReq('conflict'), bearer(token));
    expect(conflict.status).toBe(grpc.status.ABORTED);
  });

  it('answers promptly with a bounded status message and details when a handler echoes a 100 KB input', async () => {
    const token = await issuer.sign({ role: 'config', audience: 'secrets' });
    const started = performance.now();
    const res = await rawUnary(raw, 'listSecretVersions', listReq(`huge:${'x'.repeat(100_000)}`), bearer(token));
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(res.status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(Buffer.byteLength(res.message)).toBeLessThanOrEqual(1024);
    expect(res.message.startsWith('no secret huge:xxx')).toBe(true);
    const details = res.trailers!.get(ERROR_DETAILS_KEY)[0] as string;
    expect(details.length).toBeLessThanOrEqual(2048);
    expect(JSON.parse(details).length).toBeGreaterThan(0);

    // A multi-byte message is bounded in bytes too, and the channel still answers afterwards.
    const wide = await rawUnary(raw, 'listSecretVersions', listReq(`huge:${'ü'.repeat(50_000)}`), bearer(token));
    expect(wide.status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(Buffer.byteLength(wide.message)).toBeLessThanOrEqual(1024);
    expect((await rawUnary(raw, 'listSecretVersions', listReq('a'), bearer(token))).status).toBe(grpc.status.OK);
  });

  it('turns a lost or refused database connection into UNAVAILABLE, to retry, without its message', async () => {
    const token = await issuer.sign({ role: 'config', audience: 'secrets' });
    for (const which of ['lost', 'refused']) {
      const res = await rawUnary(raw, 'listSecretVersions', listReq(which), bearer(token));
      expect(res.status).toBe(grpc.status.UNAVAILABLE);
      expect(res.message).toBe(CONNECTION_LOST_MESSAGE);
    }
    const logged = log.lines().filter((l) => l.msg === 'call failed: a backing connection was lost');
    expect(logged.map((l) => l.connection)).toEqual(expect.arrayContaining(['postgres:57P01', 'network:ECONNREFUSED']));
  });

  it('turns any other error into INTERNAL "internal error" and logs the real one server-side only', async () => {
    const token = await issuer.sign({ role: 'config', audience: 'secrets' });
    const traceId = 'ab'.repeat(16);
    const md = bearer(token);
    md.set('traceparent', `00-${traceId}-${'cd'.repeat(8)}-01`);
    const res = await rawUnary(raw, 'listSecretVersions', listReq('boom'), md);
    expect(res.status).toBe(grpc.status.INTERNAL);
    expect(res.message).toBe('internal error');
    const trailers = JSON.stringify(res.trailers?.getMap() ?? {});
    expect(`${res.message}${trailers}`).not.toContain('hunter2');

    const client = createPromiseClient(secretsV1.SecretsServiceClient, address, { tokenProvider: async () => token });
    try {
      const err = await client.listSecretVersions(listReq('boom')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CofferError);
      expect(err).toMatchObject({ code: 'internal', message: 'internal error' });
      expect(JSON.stringify(err)).not.toContain('hunter2');
    } finally {
      client.close();
    }

    const logged = log.lines().find((l) => l.traceId === traceId && l.level === 50);
    expect(logged).toMatchObject({ method: '/coffer.secrets.v1.SecretsService/ListSecretVersions', msg: 'unhandled error in handler' });
    expect(JSON.stringify(logged)).toContain('hunter2');
  });

  describe('createPromiseClient', () => {
    it('calls with a bearer token and resolves the response', async () => {
      const token = await issuer.sign({ role: 'config', audience: 'secrets' });
      const client = createPromiseClient(secretsV1.SecretsServiceClient, address, { tokenProvider: async () => token });
      try {
        const res = await client.writeSecrets({ ownerId: '', ownerWorkspaceId: '', writeId: '', workspaceId: 'w', secrets: [{ baseCoordinate: 'coffer_x', expectedVersion: 0, value: 'v', ttlSeconds: 0 }] });
        expect(res.secrets).toEqual([{ coordinate: 'coffer_x_v1', baseCoordinate: 'coffer_x', version: 1 }]);
      } finally {
        client.close();
      }
    });

    it('rejects with CofferErrors carrying the mapped code, message and details', async () => {
      const anonymous = createPromiseClient(secretsV1.SecretsServiceClient, address);
      const token = await issuer.sign({ role: 'config', audience: 'secrets' });
      const client = createPromiseClient(secretsV1.SecretsServiceClient, address, { tokenProvider: async () => token });
      try {
        await expect(anonymous.listSecretVersions(listReq('a'))).rejects.toMatchObject({ code: 'unauthenticated', message: 'missing bearer token' });
        await expect(client.hydrateConfig(hydrateReq())).rejects.toMatchObject({ code: 'permission_denied' });
        const notFound = await client.listSecretVersions(listReq('missing')).catch((e: unknown) => e);
        expect(notFound).toBeInstanceOf(CofferError);
        expect(notFound).toMatchObject({
          code: 'not_found',
          message: 'secret coffer_workspace_w_secret_missing not found',
          details: [{ field: 'base_coordinate', reason: 'unknown – ü' }],
        });
        await expect(client.listSecretVersions(listReq('conflict'))).rejects.toMatchObject({ code: 'version_conflict' });
      } finally {
        anonymous.close();
        client.close();
      }
    });

    it('applies its deadline: a slow call fails as unavailable', async () => {
      const token = await issuer.sign({ role: 'sync-worker', audience: 'secrets' });
      const client = createPromiseClient(secretsV1.SecretsServiceClient, address, { tokenProvider: async () => token, deadlineMs: 200 });
      try {
        const started = Date.now();
        await expect(client.hydrateConfig(hydrateReq('slow'))).rejects.toMatchObject({ code: 'unavailable' });
        expect(Date.now() - started).toBeLessThan(900);
      } finally {
        client.close();
      }
    });

    it('propagates the active trace context as traceparent', async () => {
      const token = await issuer.sign({ role: 'sync-worker', audience: 'secrets' });
      const client = createPromiseClient(secretsV1.SecretsServiceClient, address, { tokenProvider: async () => token });
      const traceId = '0af7651916cd43dd8448eb211c80319c';
      const active = trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED });
      try {
        const res = await context.with(active, () => client.hydrateConfig(hydrateReq()));
        expect(JSON.parse(res.configJson)).toMatchObject({ traceId });
        const untraced = await client.hydrateConfig(hydrateReq());
        expect(JSON.parse(untraced.configJson)).toMatchObject({ traceId: null });
      } finally {
        client.close();
      }
    });

    it('fails with unavailable when nothing listens', async () => {
      const client = createPromiseClient(secretsV1.SecretsServiceClient, '127.0.0.1:1', { deadlineMs: 2_000 });
      try {
        await expect(client.listSecretVersions(listReq('a'))).rejects.toMatchObject({ code: 'unavailable' });
      } finally {
        client.close();
      }
    });

    it('turns a failing token provider into a CofferError before calling', async () => {
      const client = createPromiseClient(secretsV1.SecretsServiceClient, address, {
        tokenProvider: async () => {
          throw new Error('socket hang up');
        },
      });
      try {
        await expect(client.listSecretVersions(listReq('a'))).rejects.toMatchObject({ code: 'unavailable', message: 'could not obtain a service token' });
      } finally {
        client.close();
      }
    });
  });

  it('answers grpc.health.v1.Health/Check with SERVING for the server and each service', async () => {
    expect(await healthCheck(address)).toMatchObject({ status: grpc.status.OK, res: { status: 'SERVING' } });
    expect(await healthCheck(address, SERVICE)).toMatchObject({ status: grpc.status.OK, res: { status: 'SERVING' } });
    expect((await healthCheck(address, 'coffer.nope.v1.Nope')).status).toBe(grpc.status.NOT_FOUND);
  });

  it('lists its services through server reflection and serves their descriptors', async () => {
    const listed = await reflect(address, { list_services: '' });
    const names = listed.list_services_response!.service.map((s) => s.name);
    expect(names).toContain(SERVICE);
    expect(names).toContain('grpc.health.v1.Health');
    expect(names).toContain('grpc.reflection.v1.ServerReflection');
    expect(names).not.toContain('coffer.auth.v1.AuthService');

    const file = await reflect(address, { file_containing_symbol: SERVICE });
    const protos = file.file_descriptor_response!.file_descriptor_proto;
    expect(protos.length).toBeGreaterThan(0);
    expect(Buffer.concat(protos).toString('latin1')).toContain('coffer/secrets/v1/secrets.proto');
  });

  it('flips health to NOT_SERVING with setServing(false) and back', async () => {
    server.setServing(false);
    try {
      expect(await healthCheck(address)).toMatchObject({ res: { status: 'NOT_SERVING' } });
      expect(await healthCheck(address, SERVICE)).toMatchObject({ res: { status: 'NOT_SERVING' } });
    } finally {
      server.setServing(true);
    }
    expect(await healthCheck(address)).toMatchObject({ res: { status: 'SERVING' } });
  });
});

describe('createGrpcServer start-up checks', () => {
  it('refuses protected methods without a verifier', () => {
    expect(() => createGrpcServer({ services: [secretsRegistration()], logger: captureLogger().logger })).toThrow(/verifier/);
  });

  it('refuses the same service twice', async () => {
    const issuer = await createTestIssuer();
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'secrets', fetchJwks: async () => issuer.jwks });
    expect(() => createGrpcServer({ services: [secretsRegistration(), secretsRegistration()], verifier, logger: captureLogger().logger })).toThrow(/twice/);
  });
});

describe('GrpcServer.shutdown', () => {
  it('lets an in-flight call finish, then stops accepting calls', async () => {
    const issuer = await createTestIssuer();
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'secrets', fetchJwks: async () => issuer.jwks });
    const server = createGrpcServer({ services: [secretsRegistration()], verifier, logger: captureLogger().logger });
    const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
    const token = await issuer.sign({ role: 'sync-worker', audience: 'secrets' });
    const client = createPromiseClient(secretsV1.SecretsServiceClient, address, { tokenProvider: async () => token, deadlineMs: 5_000 });
    try {
      const inFlight = client.hydrateConfig({ ownerId: '', workspaceId: 'w', partialConfigJson: '{}', reason: 'slow' });
      await sleep(200);
      await server.shutdown();
      await expect(inFlight).resolves.toHaveProperty('configJson');
      await expect(client.listSecretVersions({ workspaceId: 'w', baseCoordinate: 'a' })).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      client.close();
    }
  });

  it('cancels calls still running after the timeout', async () => {
    const issuer = await createTestIssuer();
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'secrets', fetchJwks: async () => issuer.jwks });
    const server = createGrpcServer({ services: [secretsRegistration()], verifier, logger: captureLogger().logger, shutdownTimeoutMs: 100 });
    const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
    const token = await issuer.sign({ role: 'sync-worker', audience: 'secrets' });
    const client = createPromiseClient(secretsV1.SecretsServiceClient, address, { tokenProvider: async () => token, deadlineMs: 5_000 });
    try {
      const inFlight = client.hydrateConfig({ ownerId: '', workspaceId: 'w', partialConfigJson: '{}', reason: 'slow' }).catch((e: unknown) => e);
      await sleep(200);
      const started = Date.now();
      await server.shutdown();
      expect(Date.now() - started).toBeLessThan(800);
      expect(await inFlight).toMatchObject({ code: 'unavailable' });
    } finally {
      client.close();
    }
  });
});
