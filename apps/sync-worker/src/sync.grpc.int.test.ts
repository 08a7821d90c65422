import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syncV1 } from '@coffer/contracts';
import { createGrpcServer, createPromiseClient, type GrpcServer } from '@coffer/rpc';
import { applyMigrations, createDatabase } from '@coffer/runtime';
import { createLogger } from '@coffer/telemetry';
import { createTestDatabase, type TestDatabase } from '@coffer/testing';
import { createTokenVerifier, TOKEN_TYPES } from '@coffer/tokens';
import { syncGrpcService } from './sync.grpc';
import { projectJobFailed, projectJobRequested, projectJobStarted, projectJobSucceeded } from './sync.postgres';
import { syncMigrations } from './sync.migrations';

const schema = 'sync';
const ISSUER = 'coffer-auth';


/** A job as the scheduler leaves it after its first attempt started. */
async function startJob(db: Kysely<any>, job: { jobId: string; connectionId: string; workspaceId: string; startedAt: string }): Promise<void> {
  await projectJobRequested(db, schema, { ...job, maxAttempts: 1, requestedAt: job.startedAt });
  await projectJobStarted(db, schema, { ...job, attempt: 1, workerId: 'worker-1' });
}

describe('coffer.sync.v1.SyncService/GetSyncJob over gRPC, against the sync_jobs read model in Postgres', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let server: GrpcServer;
  let address: string;
  let sign: (role: string) => Promise<string>;
  const clients: Array<{ close(): void }> = [];

  const clientAs = (role: string) => {
    const client = createPromiseClient(syncV1.SyncServiceClient, address, { tokenProvider: () => sign(role) });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_sync_grpc');
    db = createDatabase(tdb.url);
    await applyMigrations(db, schema, syncMigrations);
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'test', alg: 'EdDSA', use: 'sig' };
    sign = (role) =>
      new SignJWT({ role })
        .setProtectedHeader({ alg: 'EdDSA', kid: 'test', typ: TOKEN_TYPES.service })
        .setIssuer(ISSUER)
        .setAudience('sync-worker')
        .setSubject(role)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'sync-worker', fetchJwks: async () => ({ keys: [jwk] }) });
    server = createGrpcServer({ services: [syncGrpcService(db, schema)], verifier, logger: createLogger({ service: 'sync-worker', level: 'silent' }) });
    address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await server?.shutdown();
    await db?.destroy();
    await tdb?.drop();
  });

  it('reports a running job, then its success with the count, then a failed job with its reason', async () => {
    const operator = clientAs('operator');
    const jobId = randomUUID();
    const connectionId = randomUUID();
    const workspaceId = randomUUID();
    await startJob(db, { jobId, connectionId, workspaceId, startedAt: '2026-01-01T00:00:00.000Z' });
    expect((await operator.getSyncJob({ jobId })).job).toEqual({
      jobId,
      kind: 'sync',
      workspaceId,
      connectionId,
      recordsPerStream: {},
      status: syncV1.SyncJobStatus.SYNC_JOB_STATUS_RUNNING,
      recordsSynced: 0,
      failureReason: '',
      startedAt: '2026-01-01T00:00:00.000Z',
      endedAt: '',
      attempts: 1,
      workerId: 'worker-1',
      failureCode: '',
    });
    await projectJobSucceeded(db, schema, { jobId, connectionId, recordsSynced: 1203, recordsPerStream: { users: 1200, 'crm.orders': 3 }, endedAt: '2026-01-01T00:01:00.000Z' });
    expect((await operator.getSyncJob({ jobId })).job).toMatchObject({
      status: syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED,
      recordsSynced: 1203,
      recordsPerStream: { users: 1200, 'crm.orders': 3 },
      endedAt: '2026-01-01T00:01:00.000Z',
    });

    const failedId = randomUUID();
    await startJob(db, { jobId: failedId, connectionId, workspaceId: randomUUID(), startedAt: '2026-01-01T00:00:00.000Z' });
    await projectJobFailed(db, schema, { jobId: failedId, connectionId, attempt: 1, code: 'connector_error', reason: 'builtin:http-json: api.example.com answered HTTP 401', endedAt: '2026-01-01T00:00:01.000Z' });
    expect((await operator.getSyncJob({ jobId: failedId })).job).toMatchObject({
      status: syncV1.SyncJobStatus.SYNC_JOB_STATUS_FAILED,
      failureReason: 'builtin:http-json: api.example.com answered HTTP 401',
    });
  });

  it('answers NOT_FOUND for an unknown job (a uuid or not) and INVALID_ARGUMENT naming job_id for an empty one', async () => {
    const operator = clientAs('operator');
    for (const jobId of [randomUUID(), 'not-a-uuid']) {
      await expect(operator.getSyncJob({ jobId })).rejects.toMatchObject({ code: 'not_found', details: [{ field: 'job_id', reason: 'not found' }] });
    }
    await expect(operator.getSyncJob({ jobId: '' })).rejects.toMatchObject({ code: 'invalid_argument', message: expect.stringMatching(/job_id/), details: [{ field: 'job_id', reason: 'required' }] });
  });

  it('refuses a caller without sync.read (PERMISSION_DENIED) and one without a token (UNAUTHENTICATED)', async () => {
    await expect(clientAs('config').getSyncJob({ jobId: randomUUID() })).rejects.toMatchObject({ code: 'permission_denied' });
    const anonymous = createPromiseClient(syncV1.SyncServiceClient, address);
    clients.push(anonymous);
    await expect(anonymous.getSyncJob({ jobId: randomUUID() })).rejects.toMatchObject({ code: 'unauthenticated' });
  });

  it('lists the jobs of a workspace or a connection, newest first, a page at a time, and refuses bad filters naming the field', async () => {
    const operator = clientAs('operator');
    const workspaceId = randomUUID();
    const connections = [randomUUID(), randomUUID()];
    const started: { jobId: string; connectionId: string }[] = [];
    // Seven jobs, two sharing a start time to the microsecond: the job id breaks the tie.
    for (let i = 0; i < 7; i++) {
      const job = { jobId: randomUUID(), connectionId: connections[i % 2]!, workspaceId, startedAt: `2026-02-01T00:00:0${Math.min(i, 5)}.123456Z` };
      await startJob(db, job);
      started.push(job);
    }
    await startJob(db, { jobId: randomUUID(), connectionId: randomUUID(), workspaceId: randomUUID(), startedAt: '2026-02-01T00:00:09Z' });

    const pages: string[][] = [];
    let pageToken = '';
    for (let round = 0; round < 10; round++) {
      const res = await operator.listSyncJobs({ workspaceId, connectionId: '', pageSize: 3, pageToken });
      pages.push(res.jobs.map((j) => j.jobId));
      if (!res.nextPageToken) break;
      pageToken = res.nextPageToken;
    }
    expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
    const listed = pages.flat();
    expect(new Set(listed).size).toBe(7);
    expect(listed.slice(0, 2).sort()).toEqual(started.slice(5).map((j) => j.jobId).sort());
    expect(listed.slice(2)).toEqual(started.slice(0, 5).reverse().map((j) => j.jobId));

    const ofConnection = await operator.listSyncJobs({ workspaceId: '', connectionId: connections[1]!, pageSize: 0, pageToken: '' });
    expect(ofConnection.jobs.map((j) => j.jobId).sort()).toEqual(started.filter((j) => j.connectionId === connections[1]).map((j) => j.jobId).sort());
    expect(ofConnection.nextPageToken).toBe('');

    const refusals: [Partial<syncV1.ListSyncJobsRequest>, string][] = [
      [{}, 'workspace_id'],
      [{ workspaceId: 'not-a-uuid' }, 'workspace_id'],
      [{ connectionId: 'x' }, 'connection_id'],
      [{ workspaceId, pageSize: 501 }, 'page_size'],
      [{ workspaceId, pageToken: 'bm90IGEgdG9rZW4' }, 'page_token'],
      [{ workspaceId, pageToken: Buffer.from(JSON.stringify(["2026-01-01' or 1=1", randomUUID()])).toString('base64url') }, 'page_token'],
    ];
    for (const [req, field] of refusals) {
      const err = await operator.listSyncJobs({ workspaceId: '', connectionId: '', pageSize: 0, pageToken: '', ...req }).catch((e: unknown) => e);
      expect(err, JSON.stringify(req)).toMatchObject({ code: 'invalid_argument', details: [expect.objectContaining({ field })] });
    }
    await expect(clientAs('config').listSyncJobs({ workspaceId, connectionId: '', pageSize: 0, pageToken: '' })).rejects.toMatchObject({ code: 'permission_denied' });
  });
});
