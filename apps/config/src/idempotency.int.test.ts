import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, idempotentId, type CofferError } from '@coffer/contracts';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createGrpcServer, createPromiseClient, type GrpcServer, type PromiseClient } from '@coffer/rpc';
import { createDatabase } from '@coffer/runtime';
import { createLogger, createRedactor } from '@coffer/telemetry';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { createTokenVerifier, TOKEN_TYPES, userTokenKinds } from '@coffer/tokens';
import { inProcessSecretsPort, startInProcessSecretsService } from '../../secrets/src/in-process';
import { configGrpcService } from './config.grpc';
import { migrateConfigReadModel } from './config.postgres';
import { createConfigService, type ConfigService } from './config.service';

// Config over real gRPC, Postgres and the real secrets service (in-process, its own schema): every
// create called twice and eight times at once with one request_id makes one entity and one event.

const ISSUER = 'coffer-auth';
const spec = { type: 'object', required: ['url', 'api_token'], properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } } };
const canary = (label: string) => `canary-${label}-${randomUUID()}`;
type Client = PromiseClient<configV1.ConfigServiceClient> & { close(): void };

describe('config: create methods with a request_id run once', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let server: GrpcServer;
  let service: ConfigService;
  let operator: Client;
  let orgA: Client;
  let orgB: Client;
  const clients: Client[] = [];
  const orgIdA = `org-a-${randomUUID()}`;
  const orgIdB = `org-b-${randomUUID()}`;
  let sourceDefinitionId = '';
  let destinationDefinitionId = '';
  let workspaceA = '';
  let workspaceB = '';

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_config_idem');
    db = createDatabase(tdb.url, { max: 12 });
    const namespace = uniqueNamespace();
    await migrateEventStore(db, 'config');
    await migrateConfigReadModel(db, 'config');
    const secrets = await startInProcessSecretsService({ db, namespace });
    service = createConfigService({
      db,
      store: createEventStore(db, { schema: 'config' }),
      schema: 'config',
      namespace,
      secrets: inProcessSecretsPort(secrets),
      coordinatePrefix: 'coffer',
      maxConfigBytes: 256 * 1024,
      // Eight racing creates of one workspace all get a turn at secrets.
      secretWritesPerWorkspace: { concurrent: 4, queued: 32 },
      logger: createLogger({ service: 'config', level: 'silent', redactor: createRedactor() }),
      clock: () => new Date(),
      newId: randomUUID,
    });
    await service.ensureBuiltins();

    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'test', alg: 'EdDSA', use: 'sig' };
    const sign = (kind: 'service' | 'application', subject: string, claims: Record<string, string>) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'EdDSA', kid: 'test', typ: TOKEN_TYPES[kind] })
        .setIssuer(ISSUER)
        .setAudience('config')
        .setSubject(subject)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'config', acceptedKinds: ['service', ...userTokenKinds], fetchJwks: async () => ({ keys: [jwk] }) });
    server = createGrpcServer({ services: [configGrpcService(service)], verifier, logger: createLogger({ service: 'config', level: 'silent' }) });
    const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
    const client = (token: () => Promise<string>) => {
      const c = createPromiseClient(configV1.ConfigServiceClient, address, { tokenProvider: token });
      clients.push(c);
      return c;
    };
    operator = client(() => sign('service', 'operator', { role: 'operator' }));
    orgA = client(() => sign('application', 'app-a', { role: 'org_admin', org: orgIdA, azp: 'app-a' }));
    orgB = client(() => sign('application', 'app-b', { role: 'org_admin', org: orgIdB, azp: 'app-b' }));

    const register = async (name: string, actorType: configV1.ActorType, connector: string) =>
      (await operator.registerConnectorDefinition({ name, actorType, connector, specJson: JSON.stringify(spec) })).definition!.definitionId;
    sourceDefinitionId = await register('api', configV1.ActorType.ACTOR_TYPE_SOURCE, 'builtin:http-json');
    destinationDefinitionId = await register('warehouse', configV1.ActorType.ACTOR_TYPE_DESTINATION, 'builtin:postgres');
    workspaceA = (await orgA.createWorkspace({ name: 'a', organizationId: '' })).workspace!.workspaceId;
    workspaceB = (await orgB.createWorkspace({ name: 'b', organizationId: '' })).workspace!.workspaceId;
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await server?.shutdown();
    await db?.destroy();
    await tdb?.drop();
  });

  const count = async (query: RawBuilder<unknown>) => Number(((await query.execute(db)).rows[0] as { n: string }).n);
  const eventsOf = (streamId: string) => count(sql`select count(*) as n from config.events where stream_id = ${streamId}`);
  const outboxOf = (subject: string) => count(sql`select count(*) as n from config.outbox where headers->>'ce-subject' = ${subject}`);
  /** Secret versions written for an actor (owner), by state. */
  const secretStates = async (ownerId: string) =>
    (await sql<{ state: string }>`select state from secrets.secret_versions where owner_id = ${ownerId} order by state`.execute(db)).rows.map((r) => r.state);
  const actorConfig = (token: string) => JSON.stringify({ url: 'https://api.example.test', api_token: token });
  const racing = <T>(n: number, call: (i: number) => Promise<T>) => Promise.all(Array.from({ length: n }, (_, i) => call(i)));

  it('CreateActor twice with one key: one actor, one event, one secret written, the same answer', async () => {
    const requestId = randomUUID();
    const input = { workspaceId: workspaceA, definitionId: sourceDefinitionId, name: 'twice', configJson: actorConfig(canary('twice')), requestId };
    const first = (await orgA.createActor(input)).actor!;
    const again = (await orgA.createActor(input)).actor!;
    expect(again).toEqual(first);
    expect(first.actorId).toBe(idempotentId(workspaceA, 'CreateActor', requestId));
    expect(JSON.parse(first.configJson).api_token).toBe('**********');
    expect(await eventsOf(`actor-${first.actorId}`)).toBe(1);
    expect(await outboxOf(first.actorId)).toBe(1);
    expect(await count(sql`select count(*) as n from config.actors where workspace_id = ${workspaceA} and name = 'twice'`)).toBe(1);
    expect(await secretStates(first.actorId)).toEqual(['active']);
  });

  it('CreateActor eight at once with one key: one actor, one event, one live secret; the losers wrote theirs and shredded them', async () => {
    const requestId = randomUUID();
    const started = Date.now();
    const answers = await racing(8, (i) =>
      orgA.createActor({ workspaceId: workspaceA, definitionId: sourceDefinitionId, name: `racer ${i}`, configJson: actorConfig(canary(`race-${i}`)), requestId }),
    );
    console.log(`8 racing CreateActor with one request_id: ${Date.now() - started} ms`);
    const actorId = answers[0]!.actor!.actorId;
    for (const a of answers) expect(a.actor).toEqual(answers[0]!.actor);
    expect(await eventsOf(`actor-${actorId}`)).toBe(1);
    expect(await outboxOf(actorId)).toBe(1);
    expect(await count(sql`select count(*) as n from config.actors where actor_id = ${actorId}`)).toBe(1);
    await service.shredPending();
    const states = await secretStates(actorId);
    console.log(`secret versions written by the 8 racers: ${states.length} (${states.filter((s) => s === 'active').length} active)`);
    expect(states.filter((s) => s === 'active')).toHaveLength(1);
    expect(states.every((s) => s === 'active' || s === 'destroyed')).toBe(true);
    // The one active version is the one the actor refers to.
    const partial = (await sql<{ p: { api_token: { _secret: string } } }>`select partial_config as p from config.actors where actor_id = ${actorId}`.execute(db)).rows[0]!.p;
    const live = (await sql<{ coordinate: string }>`select coordinate from secrets.secret_versions where owner_id = ${actorId} and state = 'active'`.execute(db)).rows;
    expect(live.map((r) => r.coordinate)).toEqual([partial.api_token._secret]);
  });

  it('CreateWebhookConfig twice and eight at once: one webhook per key, apart from CreateActor keys', async () => {
    const requestId = randomUUID();
    const config = (i: number) => JSON.stringify({ url: 'https://hooks.example.test/in', signing_secret: canary(`hook-${i}`) });
    const answers = await racing(8, (i) => orgA.createWebhookConfig({ workspaceId: workspaceA, name: `hook ${i}`, configJson: config(i), requestId }));
    const webhook = answers[0]!.webhook!;
    for (const a of answers) expect(a.webhook).toEqual(webhook);
    expect((await orgA.createWebhookConfig({ workspaceId: workspaceA, name: 'later', configJson: config(9), requestId })).webhook).toEqual(webhook);
    expect(await eventsOf(`actor-${webhook.webhookId}`)).toBe(1);
    expect(webhook.webhookId).toBe(idempotentId(workspaceA, 'CreateWebhookConfig', requestId));
    // The same key on CreateActor is another call.
    const actor = (await orgA.createActor({ workspaceId: workspaceA, definitionId: sourceDefinitionId, name: 'same key', configJson: actorConfig(canary('k')), requestId })).actor!;
    expect(actor.actorId).not.toBe(webhook.webhookId);
    await service.shredPending();
    expect((await secretStates(webhook.webhookId)).filter((s) => s === 'active')).toHaveLength(1);
  });

  it('CreateWorkspace, RegisterConnectorDefinition, CreateConnection and RequestSync: twice and eight at once, one entity and one event each', async () => {
    const wsKey = randomUUID();
    const workspaces = await racing(8, () => orgA.createWorkspace({ name: 'raced', organizationId: '', requestId: wsKey }));
    const ws = workspaces[0]!.workspace!;
    for (const w of workspaces) expect(w.workspace).toEqual(ws);
    expect((await orgA.createWorkspace({ name: 'raced', organizationId: '', requestId: wsKey })).workspace).toEqual(ws);
    expect(await eventsOf(`workspace-${ws.workspaceId}`)).toBe(1);
    expect(await count(sql`select count(*) as n from config.workspaces where organization_id = ${orgIdA} and name = 'raced'`)).toBe(1);

    const defKey = randomUUID();
    const defs = await racing(8, () =>
      operator.registerConnectorDefinition({ name: 'raced def', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec), requestId: defKey }),
    );
    const def = defs[0]!.definition!;
    for (const d of defs) expect(d.definition).toEqual(def);
    expect(await eventsOf(`definition-${def.definitionId}`)).toBe(1);
    expect(await count(sql`select count(*) as n from config.connector_definitions where name = 'raced def'`)).toBe(1);

    const source = (await orgA.createActor({ workspaceId: ws.workspaceId, definitionId: sourceDefinitionId, name: 's', configJson: actorConfig(canary('s')) })).actor!;
    const dest = (await orgA.createActor({ workspaceId: ws.workspaceId, definitionId: destinationDefinitionId, name: 'd', configJson: actorConfig(canary('d')) })).actor!;
    const connKey = randomUUID();
    const connections = await racing(8, () => orgA.createConnection({ workspaceId: ws.workspaceId, sourceId: source.actorId, destinationId: dest.actorId, name: 'c', requestId: connKey }));
    const connection = connections[0]!.connection!;
    for (const c of connections) expect(c.connection).toEqual(connection);
    expect((await orgA.createConnection({ workspaceId: ws.workspaceId, sourceId: source.actorId, destinationId: dest.actorId, name: 'c', requestId: connKey })).connection).toEqual(connection);
    expect(await eventsOf(`connection-${connection.connectionId}`)).toBe(1);
    expect(await count(sql`select count(*) as n from config.connections where workspace_id = ${ws.workspaceId}`)).toBe(1);

    const syncKey = randomUUID();
    const jobs = await racing(8, () => orgA.requestSync({ connectionId: connection.connectionId, requestId: syncKey }));
    const jobId = jobs[0]!.jobId;
    for (const j of jobs) expect(j.jobId).toBe(jobId);
    expect((await orgA.requestSync({ connectionId: connection.connectionId, requestId: syncKey })).jobId).toBe(jobId);
    expect(await count(sql`select count(*) as n from config.events where type = 'SyncRequested' and data->>'jobId' = ${jobId}`)).toBe(1);
    expect(await outboxOf(jobId)).toBe(1);
    // Without a key, or with another, each call requests its own sync.
    const other = await orgA.requestSync({ connectionId: connection.connectionId, requestId: randomUUID() });
    const unkeyed = await orgA.requestSync({ connectionId: connection.connectionId });
    expect(new Set([jobId, other.jobId, unkeyed.jobId]).size).toBe(3);
    expect(await count(sql`select count(*) as n from config.events where stream_id = ${`connection-${connection.connectionId}`} and type = 'SyncRequested'`)).toBe(3);
  });

  it("another organization's same key is another call, and its tokens cannot reach the first organization's entity", async () => {
    const requestId = randomUUID();
    const a = (await orgA.createWorkspace({ name: 'mine', organizationId: '', requestId })).workspace!;
    const b = (await orgB.createWorkspace({ name: 'theirs', organizationId: '', requestId })).workspace!;
    expect(b.workspaceId).not.toBe(a.workspaceId);
    expect([a.organizationId, b.organizationId]).toEqual([orgIdA, orgIdB]);

    const actorA = (await orgA.createActor({ workspaceId: workspaceA, definitionId: sourceDefinitionId, name: 'a', configJson: actorConfig(canary('a')), requestId })).actor!;
    const actorB = (await orgB.createActor({ workspaceId: workspaceB, definitionId: sourceDefinitionId, name: 'b', configJson: actorConfig(canary('b')), requestId })).actor!;
    expect(actorB.actorId).not.toBe(actorA.actorId);
    expect(actorB).toMatchObject({ workspaceId: workspaceB, name: 'b' });
    // Org B replaying org A's call in org A's workspace gets what a workspace that does not exist gets.
    const intrude = await orgB
      .createActor({ workspaceId: workspaceA, definitionId: sourceDefinitionId, name: 'a', configJson: actorConfig(canary('x')), requestId })
      .catch((e: unknown) => e as CofferError);
    const unknown = await orgB
      .createActor({ workspaceId: randomUUID(), definitionId: sourceDefinitionId, name: 'a', configJson: actorConfig(canary('y')), requestId })
      .catch((e: unknown) => e as CofferError);
    expect(intrude).toMatchObject({ code: 'not_found', message: (unknown as CofferError).message });
    expect(await eventsOf(`actor-${actorA.actorId}`)).toBe(1);
  });

  it('a repeat answers the first result whatever else it holds, and after the actor changed (version 1, as created)', async () => {
    const requestId = randomUUID();
    const first = (await orgA.createActor({ workspaceId: workspaceA, definitionId: sourceDefinitionId, name: 'original', configJson: actorConfig(canary('o')), requestId })).actor!;
    const different = (await orgA.createActor({ workspaceId: workspaceA, definitionId: destinationDefinitionId, name: 'other', configJson: actorConfig(canary('p')), requestId })).actor!;
    expect(different).toEqual(first);
    await orgA.updateActor({ actorId: first.actorId, expectedVersion: 1, name: 'renamed', configJson: first.configJson });
    const afterUpdate = (await orgA.createActor({ workspaceId: workspaceA, definitionId: sourceDefinitionId, name: 'original', configJson: actorConfig(canary('q')), requestId })).actor!;
    expect(afterUpdate).toEqual(first);
    expect((await orgA.getActor({ actorId: first.actorId })).actor).toMatchObject({ name: 'renamed', version: 2 });
    expect(await eventsOf(`actor-${first.actorId}`)).toBe(2);
    expect(await secretStates(first.actorId)).toEqual(['active']);
  });

  it('a first call whose answer was lost (applied in-process, no reply) is answered by its repeat over gRPC', async () => {
    const requestId = randomUUID();
    const input = { workspaceId: workspaceA, definitionId: sourceDefinitionId, name: 'lost answer', configJson: actorConfig(canary('lost')), requestId };
    const applied = await service.createActor(input, { subject: 'app-a' });
    expect((await orgA.createActor(input)).actor).toEqual({ ...applied, actorType: configV1.ActorType.ACTOR_TYPE_SOURCE });
    expect(await eventsOf(`actor-${applied.actorId}`)).toBe(1);
  });

  it('refuses a request_id out of bounds on every create, naming request_id, before anything is written', async () => {
    const before = await count(sql`select count(*) as n from config.events`);
    for (const requestId of ['has space', 'x'.repeat(129), 'semi;colon', 'ünïcode']) {
      const calls: (() => Promise<unknown>)[] = [
        () => orgA.createWorkspace({ name: 'w', organizationId: '', requestId }),
        () => operator.registerConnectorDefinition({ name: 'd', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec), requestId }),
        () => orgA.createActor({ workspaceId: workspaceA, definitionId: sourceDefinitionId, name: 'a', configJson: actorConfig(canary('bad')), requestId }),
        () => orgA.createWebhookConfig({ workspaceId: workspaceA, name: 'h', configJson: JSON.stringify({ url: 'https://h.example.test' }), requestId }),
        () => orgA.createConnection({ workspaceId: workspaceA, sourceId: randomUUID(), destinationId: randomUUID(), name: 'c', requestId }),
      ];
      for (const call of calls) {
        const err = (await call().then(() => undefined, (e: unknown) => e)) as CofferError;
        expect(err).toMatchObject({ code: 'invalid_argument', details: [{ field: 'request_id', reason: 'invalid' }] });
        expect(err.message).not.toContain(requestId);
      }
    }
    expect(await count(sql`select count(*) as n from config.events`)).toBe(before);
  });
});
