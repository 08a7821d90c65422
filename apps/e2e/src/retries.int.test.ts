import { randomUUID } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, streamName, type CofferError, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';

// A client whose call times out cannot tell whether it was applied. Here it was: secrets is paused
// (SIGSTOP) so config's CreateActor outlives the client's deadline, then resumes and completes. The
// client retries with the same request_id, as a client should, and there is still one actor.

const spec = { type: 'object', required: ['url', 'api_token'], properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } } };
const SHORT_DEADLINE_MS = 1_500;
type ConfigClient = PromiseClient<configV1.ConfigServiceClient> & { close(): void };

describe('retries over real processes: CreateActor retried after the deadline with one request_id', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let patient: ConfigClient;
  let hasty: ConfigClient;
  let workspaceId = '';
  let definitionId = '';

  beforeAll(async () => {
    db = await createTestDatabase('coffer_retries');
    ns = uniqueNamespace();
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns });
    const tokenProvider = createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'config' });
    patient = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, { tokenProvider, deadlineMs: 60_000 });
    hasty = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, { tokenProvider, deadlineMs: SHORT_DEADLINE_MS });
    workspaceId = (await patient.createWorkspace({ name: 'retries', organizationId: '' })).workspace!.workspaceId;
    definitionId = (await patient.registerConnectorDefinition({ name: 'api', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) }))
      .definition!.definitionId;
  }, 180_000);

  afterAll(async () => {
    stack?.services.secrets.process.kill('SIGCONT');
    patient?.close();
    hasty?.close();
    await stack?.stop();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  async function query<T extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (await client.query<T>(text, params)).rows;
    } finally {
      await client.end();
    }
  }

  async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  /** Messages on config's stream about one actor (ce-subject), by type. */
  async function publishedAbout(actorId: string): Promise<string[]> {
    const nc = await connect({ servers: testNatsUrl() });
    try {
      const jsm = await jetstreamManager(nc);
      const stream = streamName(ns, 'config');
      const { state } = await jsm.streams.info(stream);
      const types: string[] = [];
      for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        if (m?.header?.get('ce-subject') === actorId) types.push(m.header.get('ce-type'));
      }
      return types;
    } finally {
      await nc.close();
    }
  }

  /** Secret versions owned by an actor, by state. */
  const secretStates = async (actorId: string) => (await query<{ state: string }>('select state from secrets.secret_versions where owner_id = $1 order by state', [actorId])).map((r) => r.state);

  /** Pauses the secrets process (it holds config's write) for as long as `during` runs. */
  async function withSecretsPaused<T>(during: () => Promise<T>): Promise<T> {
    const secrets = stack.services.secrets.process;
    secrets.kill('SIGSTOP');
    try {
      return await during();
    } finally {
      secrets.kill('SIGCONT');
    }
  }

  const request = (name: string, requestId: string) => ({
    workspaceId,
    definitionId,
    name,
    configJson: JSON.stringify({ url: 'https://api.example.test', api_token: `canary-${randomUUID()}` }),
    requestId,
  });

  it('a call that timed out and was applied afterwards: its retry answers that actor, and nothing is doubled', async () => {
    const requestId = randomUUID();
    const started = Date.now();
    const timedOut = await withSecretsPaused(() => hasty.createActor(request('after the deadline', requestId)).catch((e: unknown) => e as CofferError));
    expect(timedOut).toMatchObject({ code: 'unavailable' });
    console.log(`first CreateActor failed after ${Date.now() - started} ms (client deadline ${SHORT_DEADLINE_MS} ms)`);
    // Config carries on once secrets resumes: the timed-out call is applied after its caller gave up.
    await eventually(async () => (await query('select 1 from config.actors where workspace_id = $1 and name = $2', [workspaceId, 'after the deadline'])).length === 1, 'the timed-out call to be applied');

    const retried = (await patient.createActor(request('after the deadline', requestId))).actor!;
    const again = (await patient.createActor(request('after the deadline', requestId))).actor!;
    expect(again).toEqual(retried);
    expect(retried).toMatchObject({ name: 'after the deadline', version: 1 });
    expect(JSON.parse(retried.configJson).api_token).toBe('**********');
    expect(await query('select actor_id from config.actors where workspace_id = $1 and name = $2', [workspaceId, 'after the deadline'])).toEqual([{ actor_id: retried.actorId }]);
    expect(await query(`select type from config.events where stream_id = $1`, [`actor-${retried.actorId}`])).toEqual([{ type: 'ActorCreated' }]);
    // The retries wrote no secret: the one the applied call wrote is the actor's.
    expect(await secretStates(retried.actorId)).toEqual(['active']);
    await eventually(async () => (await publishedAbout(retried.actorId)).length > 0, 'SourceCreated on NATS');
    expect(await publishedAbout(retried.actorId)).toEqual(['coffer.config.v1.SourceCreated']);
  });

  it('a retry sent while the timed-out call is still running: both answer one actor; the loser shreds the secret it wrote', async () => {
    const requestId = randomUUID();
    const { retry } = await withSecretsPaused(async () => {
      const timedOut = await hasty.createActor(request('racing retry', requestId)).catch((e: unknown) => e as CofferError);
      expect(timedOut).toMatchObject({ code: 'unavailable' });
      // The retry reaches config while the first call still waits on secrets.
      const pending = patient.createActor(request('racing retry', requestId));
      await new Promise((r) => setTimeout(r, 300));
      // Wrapped, so that secrets resumes before the retry is awaited.
      return { retry: pending };
    });
    const actor = (await retry).actor!;
    expect((await patient.createActor(request('racing retry', requestId))).actor).toEqual(actor);
    expect(await query('select actor_id from config.actors where workspace_id = $1 and name = $2', [workspaceId, 'racing retry'])).toEqual([{ actor_id: actor.actorId }]);
    expect(await query(`select type from config.events where stream_id = $1`, [`actor-${actor.actorId}`])).toEqual([{ type: 'ActorCreated' }]);
    // Both calls wrote a secret at secrets; the one whose append lost shreds its own.
    await eventually(async () => (await secretStates(actor.actorId)).join() === 'active,destroyed', 'the losing call\'s secret to be shredded');
    const live = await query<{ coordinate: string }>(`select coordinate from secrets.secret_versions where owner_id = $1 and state = 'active'`, [actor.actorId]);
    const partial = (await query<{ p: { api_token: { _secret: string } } }>('select partial_config as p from config.actors where actor_id = $1', [actor.actorId]))[0]!.p;
    expect(live.map((r) => r.coordinate)).toEqual([partial.api_token._secret]);
    await eventually(async () => (await publishedAbout(actor.actorId)).length > 0, 'SourceCreated on NATS');
    expect(await publishedAbout(actor.actorId)).toEqual(['coffer.config.v1.SourceCreated']);
  });
});
