import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1, configV1, syncV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { call, ok, rawClient as client, type Answer } from './raw-grpc';

const EPHEMERAL = '00000000-0000-0000-0000-000000000000';


// Every position kind a hostile config can hide a reference in. `strict` has an open object, an
// untyped nested object, an untyped array and an untyped secret field, so the JSON Schema lets each through.
const strictSpec = {
  type: 'object',
  required: ['url', 'api_token'],
  properties: {
    url: { type: 'string' },
    api_token: { type: 'string', airbyte_secret: true },
    any_secret: { airbyte_secret: true },
    nested: { type: 'object' },
    tags: { type: 'array' },
    open: { type: 'object', additionalProperties: true },
  },
};
const looseSpec = { type: 'object', properties: { url: { type: 'string' } } };
const destinationSpec = {
  type: 'object',
  required: ['host', 'port', 'database', 'username', 'password', 'schema', 'table'],
  properties: {
    host: { type: 'string' },
    port: { type: 'integer' },
    database: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string', airbyte_secret: true },
    schema: { type: 'string' },
    table: { type: 'string' },
  },
};

/** The configs that place `ref` at each position kind, with the JSON path each must be refused at. */
function injections(url: string, ref: { _secret: string }): { kind: string; loose?: boolean; config: Record<string, unknown>; path: string }[] {
  return [
    { kind: 'extra field', config: { url, api_token: 'b-token', stolen: ref }, path: '$.stolen' },
    { kind: 'nested object', config: { url, api_token: 'b-token', nested: { deep: { x: ref } } }, path: '$.nested.deep.x' },
    { kind: 'array item', config: { url, api_token: 'b-token', tags: ['a', ref] }, path: '$.tags[1]' },
    { kind: 'open object', config: { url, api_token: 'b-token', open: { header: ref } }, path: '$.open.header' },
    { kind: 'loose spec', loose: true, config: { url, api_token: ref }, path: '$.api_token' },
    { kind: 'secret field', config: { url, api_token: 'b-token', any_secret: ref }, path: '$.any_secret' },
    { kind: 'typed secret field', config: { url, api_token: ref }, path: '$.api_token' },
  ];
}

describe('tenant isolation: a coordinate is hydrated only into, and shredded only for, the actor or check run that owns it', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let auth: authV1.AuthServiceClient;
  let config: configV1.ConfigServiceClient;
  let sync: syncV1.SyncServiceClient;
  let http: Server;
  let url = '';
  let pool: pg.Pool;
  const op = { auth: '', config: '', sync: '' };
  // Every request the local HTTP API received: what a tenant's connector sent out.
  const received: string[] = [];

  const query = async <T extends pg.QueryResultRow>(text: string, params: unknown[] = []) => (await pool.query<T>(text, params)).rows;

  async function operatorToken(audience: string): Promise<string> {
    const { clientId, clientSecret } = stack.credentials.clients.operator;
    return (await ok(call<authV1.IssueServiceTokenResponse>(auth, 'issueServiceToken', { clientId, clientSecret, audience }))).accessToken;
  }

  async function tenant(name: string): Promise<{ workspaceId: string; scoped: string }> {
    const organizationId = (await ok(call<authV1.CreateOrganizationResponse>(auth, 'createOrganization', { name }, op.auth))).organization!.organizationId;
    const app = await ok(call<authV1.CreateApplicationResponse>(auth, 'createApplication', { organizationId, name: `${name} platform`, allowedOrigins: [] }, op.auth));
    const appToken = (await ok(call<authV1.IssueApplicationTokenResponse>(auth, 'issueApplicationToken', { clientId: app.application!.clientId, clientSecret: app.clientSecret }))).accessToken;
    const scoped = await ok(call<authV1.IssueScopedTokenResponse>(auth, 'issueScopedToken', { externalUserId: `${name}-user`, createWorkspace: true }, appToken));
    return { workspaceId: scoped.workspaceId, scoped: scoped.accessToken };
  }

  const register = async (name: string, actorType: configV1.ActorType, connector: string, spec: unknown) =>
    (await ok(call<configV1.RegisterConnectorDefinitionResponse>(config, 'registerConnectorDefinition', { name, actorType, connector, specJson: JSON.stringify(spec) }, op.config))).definition!.definitionId;

  async function syncOutcome(connectionId: string, token: string): Promise<syncV1.SyncJob> {
    const { jobId } = await ok(call<configV1.RequestSyncResponse>(config, 'requestSync', { connectionId }, token));
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      const a = await call<syncV1.GetSyncJobResponse>(sync, 'getSyncJob', { jobId }, op.sync);
      const status = a.res?.job?.status;
      if (status === syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED || status === syncV1.SyncJobStatus.SYNC_JOB_STATUS_FAILED) return a.res!.job!;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`sync ${jobId} did not finish`);
  }

  let strict = '';
  let loose = '';
  let destinationDefinition = '';
  let a = { workspaceId: '', scoped: '' };
  let b = { workspaceId: '', scoped: '' };
  const canaryA = `canary-tenant-a-${randomUUID()}`;
  const canaryY = `canary-actor-y-${randomUUID()}`;
  let ephemeralOfA = '';
  // Actors of B that config wrongly accepted with an injected reference (none, once fixed).
  const accepted: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e_tenants');
    ns = uniqueNamespace();
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    http = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        received.push(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body }));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ id: 1, name: 'alpha' }]));
      });
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/records`;
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns, egressAllow: ['127.0.0.1'] });
    auth = client(authV1.AuthServiceClient, stack.services.auth.address, authV1);
    config = client(configV1.ConfigServiceClient, stack.services.config.address, configV1);
    sync = client(syncV1.SyncServiceClient, stack.services['sync-worker'].address, syncV1);
    op.auth = await operatorToken('auth');
    op.config = await operatorToken('config');
    op.sync = await operatorToken('sync-worker');
    strict = await register('strict', configV1.ActorType.ACTOR_TYPE_SOURCE, 'builtin:http-json', strictSpec);
    loose = await register('loose', configV1.ActorType.ACTOR_TYPE_SOURCE, 'builtin:http-json', looseSpec);
    destinationDefinition = await register('warehouse', configV1.ActorType.ACTOR_TYPE_DESTINATION, 'builtin:postgres', destinationSpec);
    a = await tenant('tenant-a');
    b = await tenant('tenant-b');
  }, 240_000);

  afterAll(async () => {
    for (const c of [auth, config, sync]) c?.close();
    await stack?.stop();
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
    await pool?.end();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  async function createDestination(workspaceId: string, token: string, table: string): Promise<string> {
    const dbUrl = new URL(db.url);
    const configJson = JSON.stringify({
      host: dbUrl.hostname,
      port: Number(dbUrl.port || 5432),
      database: db.name,
      username: decodeURIComponent(dbUrl.username || 'postgres'),
      password: `destination-${randomUUID()}`,
      schema: 'e2e_tenants',
      table,
    });
    return (await ok(call<configV1.CreateActorResponse>(config, 'createActor', { workspaceId, definitionId: destinationDefinition, name: `dest ${table}`, configJson }, token))).actor!.actorId;
  }

  it("tenant A checks a config with its canary; the check/discover secret is bound to A's workspace", async () => {
    const before = new Set((await query<{ coordinate: string }>(`select coordinate from secrets.secret_versions where workspace_id = $1`, [EPHEMERAL])).map((r) => r.coordinate));
    // A scoped token's check runs in the token's own workspace; it cannot run one for another workspace.
    const checked = await ok(call<configV1.CheckConfigResponse>(config, 'checkConfig', { definitionId: strict, configJson: JSON.stringify({ url, api_token: canaryA }) }, a.scoped));
    expect(checked).toMatchObject({ succeeded: true });
    const after = await query<{ coordinate: string }>(`select coordinate from secrets.secret_versions where workspace_id = $1`, [EPHEMERAL]);
    const fresh = after.map((r) => r.coordinate).filter((c) => !before.has(c));
    expect(fresh).toHaveLength(1);
    ephemeralOfA = fresh[0]!;
    expect(received.some((r) => r.includes(canaryA))).toBe(true);
    received.length = 0;
    const denied = await call(config, 'checkConfig', { workspaceId: a.workspaceId, definitionId: strict, configJson: JSON.stringify({ url, api_token: 'x' }) }, b.scoped);
    // Another tenant's workspace is answered exactly as one that does not exist.
    expect(denied.status).toBe(grpc.status.NOT_FOUND);
  });

  it("tenant B cannot put A's ephemeral coordinate anywhere on create, update, check or discover: INVALID_ARGUMENT naming the path", async () => {
    const ref = { _secret: ephemeralOfA };
    const own = await ok(
      call<configV1.CreateActorResponse>(config, 'createActor', { workspaceId: b.workspaceId, definitionId: strict, name: 'b own', configJson: JSON.stringify({ url, api_token: 'b-token' }) }, b.scoped),
    );
    const failures: string[] = [];
    for (const inj of injections(url, ref)) {
      const definitionId = inj.loose ? loose : strict;
      const configJson = JSON.stringify(inj.config);
      const attempts: [string, Answer<{ actor?: configV1.Actor; succeeded?: boolean }>][] = [
        ['create', await call(config, 'createActor', { workspaceId: b.workspaceId, definitionId, name: `b ${inj.kind}`, configJson }, b.scoped)],
        ['check', await call(config, 'checkConfig', { definitionId, configJson }, b.scoped)],
        ['discover', await call(config, 'discoverSchema', { definitionId, configJson }, b.scoped)],
      ];
      if (!inj.loose) attempts.push(['update', await call(config, 'updateActor', { actorId: own.actor!.actorId, name: 'b own', configJson }, b.scoped)]);
      for (const [what, answer] of attempts) {
        if (what === 'create' && answer.status === grpc.status.OK) accepted.push(answer.res!.actor!.actorId);
        if (answer.status !== grpc.status.INVALID_ARGUMENT || !answer.message.includes(inj.path)) failures.push(`${what} at ${inj.kind}: ${grpc.status[answer.status]} ${answer.message}`);
        expect(answer.message).not.toContain(ephemeralOfA);
      }
    }
    expect(failures).toEqual([]);
    expect(received.filter((r) => r.includes(canaryA))).toEqual([]);
  });

  it("a sync of B's connections never delivers A's canary to B's endpoint", async () => {
    const clean = (await ok(call<configV1.CreateActorResponse>(config, 'createActor', { workspaceId: b.workspaceId, definitionId: strict, name: 'b clean', configJson: JSON.stringify({ url, api_token: 'b-token' }) }, b.scoped)))
      .actor!.actorId;
    const destinationId = await createDestination(b.workspaceId, b.scoped, 'tenant_b');
    for (const sourceId of [clean, ...accepted]) {
      const connectionId = (await ok(call<configV1.CreateConnectionResponse>(config, 'createConnection', { workspaceId: b.workspaceId, sourceId, destinationId, name: `b ${sourceId}` }, b.scoped))).connection!
        .connectionId;
      const job = await syncOutcome(connectionId, b.scoped);
      if (sourceId === clean) expect(job.status, job.failureReason).toBe(syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED);
      expect(job.failureReason).not.toContain(canaryA);
    }
    expect(received.some((r) => r.includes('b-token'))).toBe(true);
    expect(received.filter((r) => r.includes(canaryA))).toEqual([]);
  });

  it("A's check/discover secret was destroyed as soon as the check answered", async () => {
    const rows = await query<{ state: string }>(`select state from secrets.secret_versions where coordinate = $1`, [ephemeralOfA]);
    expect(rows.map((r) => r.state)).toEqual(['destroyed']);
    expect((await query(`select 1 from secrets.data_keys where coordinate = $1`, [ephemeralOfA])).length).toBe(0);
  });

  it("inside one workspace: actor X cannot hold actor Y's coordinate; deleting X never shreds Y, which still hydrates at sync", async () => {
    const y = (
      await ok(call<configV1.CreateActorResponse>(config, 'createActor', { workspaceId: b.workspaceId, definitionId: strict, name: 'y', configJson: JSON.stringify({ url, api_token: canaryY }) }, b.scoped))
    ).actor!.actorId;
    const [stored] = await query<{ partial_config: { api_token: { _secret: string } } }>(`select partial_config from config.actors where actor_id = $1`, [y]);
    const coordinateOfY = stored!.partial_config.api_token._secret;
    const refused = await call<configV1.CreateActorResponse>(
      config,
      'createActor',
      { workspaceId: b.workspaceId, definitionId: strict, name: 'x', configJson: JSON.stringify({ url, api_token: 'x-token', open: { borrowed: { _secret: coordinateOfY } } }) },
      b.scoped,
    );
    if (refused.status === grpc.status.OK) accepted.push(refused.res!.actor!.actorId);
    // Soft: the rest (delete, shredding, sync) runs even when config wrongly accepted X.
    expect.soft(refused.status).toBe(grpc.status.INVALID_ARGUMENT);
    expect.soft(refused.message).toContain('$.open.borrowed');
    expect.soft(refused.message).not.toContain(coordinateOfY);

    // X with only its own secret (or, before the fix, the one that borrowed Y's) is deleted.
    const x =
      refused.res?.actor?.actorId ??
      (await ok(call<configV1.CreateActorResponse>(config, 'createActor', { workspaceId: b.workspaceId, definitionId: strict, name: 'x', configJson: JSON.stringify({ url, api_token: 'x-token' }) }, b.scoped)))
        .actor!.actorId;
    const [xStored] = await query<{ partial_config: { api_token: { _secret: string } } }>(`select partial_config from config.actors where actor_id = $1`, [x]);
    const coordinateOfX = xStored!.partial_config.api_token._secret;
    await ok(call(config, 'deleteActor', { actorId: x }, b.scoped));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && (await query(`select 1 from config.secret_shredding`)).length > 0) await new Promise((r) => setTimeout(r, 200));
    expect((await query<{ state: string }>(`select state from secrets.secret_versions where coordinate = $1`, [coordinateOfX])).map((r) => r.state)).toEqual(['destroyed']);
    expect((await query<{ state: string }>(`select state from secrets.secret_versions where coordinate = $1`, [coordinateOfY])).map((r) => r.state)).toEqual(['active']);

    received.length = 0;
    const destinationId = await createDestination(b.workspaceId, b.scoped, 'actor_y');
    const connectionId = (await ok(call<configV1.CreateConnectionResponse>(config, 'createConnection', { workspaceId: b.workspaceId, sourceId: y, destinationId, name: 'y' }, b.scoped))).connection!.connectionId;
    const job = await syncOutcome(connectionId, b.scoped);
    expect(job.status, job.failureReason).toBe(syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED);
    expect(received.some((r) => r.includes(`Bearer ${canaryY}`))).toBe(true);
  });
});
