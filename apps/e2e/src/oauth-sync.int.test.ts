import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import Provider from 'oidc-provider';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type RunningService, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';

// A real OAuth 2.0 server (oidc-provider, refresh-token rotation with reuse detection) and a resource
// API that accepts only the access tokens it issued, both on 127.0.0.1; four Coffer processes plus a
// second sync-worker replica; real Postgres and NATS.

const CLIENT_ID = 'coffer-sync';
const CLIENT_SECRET = `canary-client-secret-${randomUUID()}`;
const records = Array.from({ length: 20 }, (_, i) => ({ id: i + 1, name: `row-${i + 1}` }));
const secret = { type: 'string', airbyte_secret: true };

describe('OAuth 2.0 credentials and sync jobs across two sync-worker replicas', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let replica: RunningService;
  let config: PromiseClient<configV1.ConfigServiceClient>;
  let server: Server;
  let provider: Provider;
  let issuer = '';
  let workspaceId = '';
  let sourceDefinitionId = '';
  let destinationDefinitionId = '';
  const issued: string[] = [];
  const refreshes: string[] = [];
  const grantErrors: string[] = [];
  let hold: Promise<void> | undefined;
  let apiRequests = 0;

  async function query<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as T[];
    } finally {
      await client.end();
    }
  }

  /** A grant for a fresh account and its refresh token, issued by the provider itself. */
  async function newGrant(): Promise<{ refreshToken: string; grantId: string }> {
    const accountId = `user-${randomUUID()}`;
    const client = await provider.Client.find(CLIENT_ID);
    const grant = new provider.Grant({ accountId, clientId: CLIENT_ID });
    grant.addOIDCScope('openid offline_access');
    const grantId = await grant.save();
    const rt = new provider.RefreshToken({ accountId, client, grantId, scope: 'openid offline_access', gty: 'authorization_code' });
    const refreshToken = await rt.save();
    issued.push(refreshToken);
    return { refreshToken, grantId };
  }

  async function oauthSource(name: string, refreshToken: string, accessToken: string, expiry: string): Promise<string> {
    issued.push(accessToken);
    return (
      await config.createActor({
        workspaceId,
        definitionId: sourceDefinitionId,
        name,
        configJson: JSON.stringify({ url: `${issuer}/api/records`, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, refresh_token: refreshToken, access_token: accessToken, token_expiry_date: expiry }),
      })
    ).actor!.actorId;
  }

  async function destination(table: string): Promise<string> {
    const u = new URL(db.url);
    return (
      await config.createActor({
        workspaceId,
        definitionId: destinationDefinitionId,
        name: table,
        configJson: JSON.stringify({ host: u.hostname, port: Number(u.port || 5432), database: db.name, username: decodeURIComponent(u.username || 'postgres'), password: u.password ? decodeURIComponent(u.password) : 'unused', schema: 'oauth_dest', table }),
      })
    ).actor!.actorId;
  }

  async function sync(sourceId: string, destinationId: string): Promise<string> {
    const connectionId = (await config.createConnection({ workspaceId, sourceId, destinationId, name: randomUUID() })).connection!.connectionId;
    return (await config.requestSync({ connectionId })).jobId;
  }

  type Job = { status: string; attempts: number; failure_code: string | null; worker_id: string | null };
  async function waitForJob(jobId: string, done: (j: Job) => boolean, timeoutMs = 90_000): Promise<Job> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [job] = await query<Job>('select status, attempts, failure_code, worker_id from sync.sync_jobs where job_id = $1', [jobId]);
      if (job && done(job)) return job;
      if (Date.now() > deadline) throw new Error(`job ${jobId} is ${JSON.stringify(job)}`);
      await sleep(200);
    }
  }
  const ended = (j: Job) => ['succeeded', 'failed', 'cancelled'].includes(j.status);

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e_oauth');
    ns = uniqueNamespace();
    server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    provider = new Provider(issuer, {
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], redirect_uris: ['https://app.example.com/callback'] }],
      features: { revocation: { enabled: true }, devInteractions: { enabled: false } },
      rotateRefreshToken: true,
      issueRefreshToken: async () => true,
      scopes: ['openid', 'offline_access'],
      ttl: { AccessToken: 3600, RefreshToken: 86_400, Grant: 86_400, IdToken: 3600 },
    });
    provider.on('grant.success', (ctx) => {
      if (ctx.oidc.params?.grant_type === 'refresh_token') refreshes.push(String(ctx.oidc.entities.RefreshToken?.grantId ?? ''));
    });
    provider.on('grant.error', (_ctx, err) => grantErrors.push(err.error ?? 'error'));
    provider.on('access_token.saved', (t) => issued.push(t.jti));
    provider.on('refresh_token.saved', (t) => issued.push(t.jti));
    const oidc = provider.callback();
    server.on('request', (req, res) => {
      if (!req.url?.startsWith('/api/records')) return void oidc(req, res);
      apiRequests++;
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      void (async () => {
        const found = token ? await provider.AccessToken.find(token) : undefined;
        if (!found) return void res.writeHead(401).end();
        await hold;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(records));
      })();
    });
    const dbUrl = new URL(db.url);
    const jobEnv = {
      SYNC_WORKER_HEARTBEAT_INTERVAL_MS: '300',
      SYNC_WORKER_HEARTBEAT_TIMEOUT_MS: '3000',
      SYNC_WORKER_POLL_INTERVAL_MS: '200',
      SYNC_WORKER_JOB_BACKOFF_MS: '200',
      SYNC_WORKER_CONCURRENCY: '8',
    };
    stack = await startStack({
      databaseUrl: db.url,
      natsUrl: testNatsUrl(),
      namespace: ns,
      egressAllow: [`127.0.0.1:${(server.address() as AddressInfo).port}`, `${dbUrl.hostname}:${dbUrl.port || 5432}`],
      serviceEnv: { 'sync-worker': jobEnv },
    });
    replica = await stack.addSyncWorker();
    const operator = stack.credentials.clients.operator;
    config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, {
      tokenProvider: createServiceTokenProvider({ authAddress: stack.services.auth.address, ...operator, audience: 'config' }),
    });
    workspaceId = (await config.createWorkspace({ name: 'oauth', organizationId: '' })).workspace!.workspaceId;
    const sourceSpec = {
      type: 'object',
      required: ['url'],
      properties: { url: { type: 'string' }, client_id: secret, client_secret: secret, refresh_token: secret, access_token: secret, token_expiry_date: secret },
      'x-coffer-oauth': { token_endpoint: `${issuer}/token`, revocation_endpoint: `${issuer}/token/revocation`, scopes: ['openid', 'offline_access'] },
    };
    sourceDefinitionId = (await config.registerConnectorDefinition({ name: 'OAuth API', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(sourceSpec) })).definition!.definitionId;
    const destinationSpec = {
      type: 'object',
      properties: { host: { type: 'string' }, port: { type: 'integer' }, database: { type: 'string' }, username: { type: 'string' }, password: secret, schema: { type: 'string' }, table: { type: 'string' } },
    };
    destinationDefinitionId = (await config.registerConnectorDefinition({ name: 'Postgres', actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION, connector: 'builtin:postgres', specJson: JSON.stringify(destinationSpec) })).definition!.definitionId;
  }, 240_000);

  afterAll(async () => {
    await stack?.stop();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  it('refreshes an expired access token before the run: the sync succeeds, the new access and rotated refresh tokens are new versions', async () => {
    const { refreshToken } = await newGrant();
    const sourceId = await oauthSource('expired', refreshToken, `canary-expired-${randomUUID()}`, '2000-01-01T00:00:00Z');
    const before = refreshes.length;
    const jobId = await sync(sourceId, await destination('expired'));
    const job = await waitForJob(jobId, ended);
    expect(job).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(refreshes.length - before).toBe(1);
    const [cred] = await query<{ coordinates: Record<string, string>; refreshes: number }>('select coordinates, refreshes from sync.oauth_credentials where actor_id = $1', [sourceId]);
    expect(cred!.refreshes).toBe(1);
    expect(cred!.coordinates.access_token).toMatch(/_v2$/);
    expect(cred!.coordinates.refresh_token).toMatch(/_v2$/);
    expect(cred!.coordinates.token_expiry_date).toMatch(/_v2$/);
    const events = await query<{ type: string }>("select type from sync.events where stream_id = $1", [`credential-${sourceId}`]);
    expect(events.map((e) => e.type)).toEqual(['CredentialRefreshed']);
    expect((await query<{ n: number }>('select count(*)::int as n from oauth_dest.expired'))[0]!.n).toBe(records.length);
  });

  it('refreshes on an expired-token answer (401) and runs again', async () => {
    const { refreshToken } = await newGrant();
    const sourceId = await oauthSource('rejected', refreshToken, `canary-unknown-${randomUUID()}`, '2999-01-01T00:00:00Z');
    const jobId = await sync(sourceId, await destination('rejected'));
    expect(await waitForJob(jobId, ended)).toMatchObject({ status: 'succeeded', attempts: 1 });
    const [cred] = await query<{ refreshes: number }>('select refreshes from sync.oauth_credentials where actor_id = $1', [sourceId]);
    expect(cred!.refreshes).toBe(1);
  });

  it('two replicas and 50 concurrent syncs on one expired credential make exactly one refresh and meet no invalid_grant', async () => {
    const { refreshToken, grantId } = await newGrant();
    const sourceId = await oauthSource('shared', refreshToken, `canary-shared-${randomUUID()}`, '2000-01-01T00:00:00Z');
    const destinationId = await destination('shared');
    const errorsBefore = grantErrors.length;
    const jobIds: string[] = [];
    // Fifty connections on the one credential, their syncs requested ten at a time.
    for (let i = 0; i < 5; i++) jobIds.push(...(await Promise.all(Array.from({ length: 10 }, () => sync(sourceId, destinationId)))));
    let jobs: Job[] = [];
    const deadline = Date.now() + 180_000;
    // One polling query for all fifty: the shared Postgres has few connections to spare.
    while ((jobs = await query<Job>('select status, attempts, failure_code, worker_id from sync.sync_jobs where job_id = any($1)', [jobIds])).filter(ended).length < 50 && Date.now() < deadline) await sleep(300);
    expect(jobs).toHaveLength(50);
    expect(jobs.every((j) => j.status === 'succeeded')).toBe(true);
    expect(refreshes.filter((g) => g === grantId)).toHaveLength(1);
    expect(grantErrors.slice(errorsBefore)).toEqual([]);
    // Both replicas ran some of them.
    expect(new Set(jobs.map((j) => j.worker_id!.split(':')[1])).size).toBe(2);
    expect((await query<{ n: number }>('select count(*)::int as n from oauth_dest.shared'))[0]!.n).toBe(50 * records.length);
  }, 240_000);

  it('a revoked grant fails the job once with CredentialNeedsReauthorization, and the next sync does not ask the provider again', async () => {
    const { refreshToken } = await newGrant();
    const sourceId = await oauthSource('revoked', refreshToken, `canary-revoked-${randomUUID()}`, '2000-01-01T00:00:00Z');
    const found = await provider.RefreshToken.find(refreshToken);
    await found!.destroy();
    const errorsBefore = grantErrors.length;
    const destinationId = await destination('revoked');
    const job = await waitForJob(await sync(sourceId, destinationId), ended);
    expect(job).toMatchObject({ status: 'failed', attempts: 1, failure_code: 'credential_needs_reauthorization' });
    expect(grantErrors.slice(errorsBefore)).toEqual(['invalid_grant']);
    const events = await query<{ type: string }>('select type from sync.events where stream_id = $1', [`credential-${sourceId}`]);
    expect(events.map((e) => e.type)).toEqual(['CredentialNeedsReauthorization']);
    const again = await waitForJob(await sync(sourceId, destinationId), ended);
    expect(again).toMatchObject({ status: 'failed', attempts: 1, failure_code: 'credential_needs_reauthorization' });
    expect(grantErrors.length - errorsBefore).toBe(1);
  });

  it('SIGKILL of the replica running a sync: the other replica retries it after the heartbeat timeout, and the rows land once', async () => {
    const { refreshToken } = await newGrant();
    const sourceId = await oauthSource('killed', refreshToken, `canary-killed-${randomUUID()}`, '2000-01-01T00:00:00Z');
    let release!: () => void;
    hold = new Promise<void>((r) => (release = r));
    const seen = apiRequests;
    const jobId = await sync(sourceId, await destination('killed'));
    const running = await waitForJob(jobId, (j) => j.status === 'running' && apiRequests > seen);
    const pid = Number(running.worker_id!.split(':')[1]);
    const victim = [stack.services['sync-worker'], replica].find((s) => s.process.pid === pid)!;
    expect(victim).toBeDefined();
    await new Promise<void>((resolve) => {
      victim.process.once('exit', () => resolve());
      victim.process.kill('SIGKILL');
    });
    release();
    hold = undefined;
    const job = await waitForJob(jobId, ended);
    expect(job.status).toBe('succeeded');
    expect(job.attempts).toBe(2);
    expect(Number(job.worker_id!.split(':')[1])).not.toBe(pid);
    const events = await query<{ type: string; data: { code?: string } }>('select type, data from sync.events where stream_id = $1 order by stream_version', [`sync-job-${jobId}`]);
    expect(events.map((e) => e.type)).toEqual(['SyncJobRequested', 'SyncJobStarted', 'SyncJobAttemptFailed', 'SyncJobStarted', 'SyncJobSucceeded']);
    expect(events[2]!.data.code).toBe('worker_lost');
    expect((await query<{ n: number }>('select count(*)::int as n from oauth_dest.killed'))[0]!.n).toBe(records.length);
  }, 120_000);

  it('deleting an OAuth source revokes its newest refresh token at the provider before its secrets are shredded', async () => {
    const { grantId, refreshToken } = await newGrant();
    const latestRefresh = new Map<string, string>();
    provider.on('refresh_token.saved', (t) => latestRefresh.set(String(t.grantId), t.jti));
    const sourceId = await oauthSource('revoked-on-delete', refreshToken, `canary-revoke-${randomUUID()}`, '2000-01-01T00:00:00Z');
    const jobId = await sync(sourceId, await destination('revoked_on_delete'));
    expect(await waitForJob(jobId, ended)).toMatchObject({ status: 'succeeded' });
    const rotated = latestRefresh.get(grantId);
    expect(rotated).toBeDefined();
    expect(rotated).not.toBe(refreshToken);

    const actor = await config.getActor({ actorId: sourceId });
    await config.deleteActor({ actorId: sourceId, expectedVersion: actor.actor!.version });
    const deadline = Date.now() + 60_000;
    let types: string[] = [];
    while (!types.includes('CredentialRevokedAtProvider') && Date.now() < deadline) {
      await sleep(200);
      types = (await query<{ type: string }>('select type from sync.events where stream_id = $1 order by global_position', [`credential-${sourceId}`])).map((e) => e.type);
    }
    expect(types).toEqual(['CredentialRefreshed', 'CredentialRevokedAtProvider']);

    // At the provider: the grant is gone and the rotated refresh token no longer works.
    expect(await provider.Grant.find(grantId)).toBeUndefined();
    const answer = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rotated! }).toString(),
    });
    expect(answer.status).toBe(400);
    expect(((await answer.json()) as { error: string }).error).toBe('invalid_grant');

    // Config released the hold and shredded every secret of the actor.
    for (;;) {
      const [held] = await query<{ n: number }>('select count(*)::int as n from config.credential_revocations where actor_id = $1', [sourceId]);
      const [queued] = await query<{ n: number }>('select count(*)::int as n from config.secret_shredding where actor_id = $1', [sourceId]);
      if (held!.n === 0 && queued!.n === 0) break;
      if (Date.now() > deadline) throw new Error(`revocation hold ${held!.n}, shredding queue ${queued!.n}`);
      await sleep(200);
    }
    const published = await query<{ type: string }>("select type from config.events where stream_id = $1", [`actor-${sourceId}`]);
    expect(published.map((e) => e.type)).toContain('ActorDeleted');
  });

  it('no client secret, refresh token or access token in any log line or sync event', async () => {
    const output = stack.output();
    const events = JSON.stringify(await query('select data, metadata from sync.events'));
    const outbox = JSON.stringify(await query('select * from sync.outbox').catch(() => []));
    const values = [CLIENT_SECRET, ...issued].filter((v) => v.length >= 16);
    expect(values.length).toBeGreaterThan(10);
    for (const v of values) {
      expect(output).not.toContain(v);
      expect(events).not.toContain(v);
      expect(outbox).not.toContain(v);
    }
    expect(output).toContain('OAuth access token refreshed');
  });
});
