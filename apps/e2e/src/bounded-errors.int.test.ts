import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { configV1, streamName, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';

const HUGE = 100_000;
const spec = {
  type: 'object',
  required: ['api_token'],
  properties: {
    api_token: { type: 'string', airbyte_secret: true },
    base_url: { type: 'string' },
    extra: { type: 'object' },
  },
};

interface Answer {
  status: grpc.status;
  message: string;
  trailers: string;
  ms: number;
}

describe('large echoed inputs, bounded errors, and what errors, logs and events never carry', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let nc: NatsConnection;
  let config: PromiseClient<configV1.ConfigServiceClient> & { close(): void };
  let raw: configV1.ConfigServiceClient;
  let token: () => Promise<string>;
  let closeProvider = () => {};
  let workspaceId = '';
  let definitionId = '';

  beforeAll(async () => {
    db = await createTestDatabase('coffer_bounds');
    ns = uniqueNamespace();
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns });
    const provider = createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'config' });
    token = () => provider();
    closeProvider = () => provider.close();
    config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, { tokenProvider: provider });
    raw = new configV1.ConfigServiceClient(stack.services.config.address, grpc.credentials.createInsecure());
    nc = await connect({ servers: testNatsUrl() });
    workspaceId = (await config.createWorkspace({ name: 'bounds', organizationId: '' })).workspace!.workspaceId;
    definitionId = (
      await config.registerConnectorDefinition({ name: 'API', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) })
    ).definition!.definitionId;
  }, 180_000);

  afterAll(async () => {
    config?.close();
    closeProvider();
    raw?.close();
    await nc?.close();
    await stack?.stop();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  /** One call on a raw channel with a 10 s deadline: a hung call shows as DEADLINE_EXCEEDED, not as a hung test. */
  async function call(method: string, req: unknown): Promise<Answer> {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${await token()}`);
    const started = performance.now();
    const fn = (raw as unknown as Record<string, (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void>)[method]!;
    return new Promise((resolve) => {
      fn.call(raw, req, md, { deadline: Date.now() + 10_000 }, (err) =>
        resolve({
          status: err ? err.code : grpc.status.OK,
          message: err?.details ?? '',
          trailers: JSON.stringify(err?.metadata?.getMap() ?? {}),
          ms: performance.now() - started,
        }),
      );
    });
  }

  function expectBoundedRefusal(answer: Answer, field: string): void {
    expect(answer.status, answer.message).toBe(grpc.status.INVALID_ARGUMENT);
    expect(answer.ms).toBeLessThan(2_000);
    expect(Buffer.byteLength(answer.message)).toBeLessThanOrEqual(1024);
    expect(answer.message).toContain(field);
    expect(`${answer.message}${answer.trailers}`).not.toMatch(/x{64}/);
  }

  it('answers a 100 KB definition_id promptly with INVALID_ARGUMENT naming the field, without quoting it', async () => {
    const huge = 'x'.repeat(HUGE);
    expectBoundedRefusal(await call('getConnectorDefinition', { definitionId: huge }), 'definition_id');
    expectBoundedRefusal(await call('createActor', { workspaceId, definitionId: huge, name: 'a', configJson: '{}' }), 'definition_id');
    expectBoundedRefusal(await call('checkConfig', { definitionId: huge, configJson: '{}' }), 'definition_id');
    expectBoundedRefusal(await call('getActor', { actorId: huge }), 'actor_id');
    expectBoundedRefusal(await call('getWorkspace', { workspaceId: huge }), 'workspace_id');
    expectBoundedRefusal(await call('createWorkspace', { name: huge, organizationId: '' }), 'name');
    // A short id that is no UUID is refused the same way, before any lookup.
    expectBoundedRefusal(await call('getActor', { actorId: 'not-a-uuid' }), 'actor_id');
    // The channel still answers.
    expect((await call('getWorkspace', { workspaceId })).status).toBe(grpc.status.OK);
  });

  it('answers a 100 KB JSON key promptly with INVALID_ARGUMENT, without quoting it', async () => {
    const key = 'x'.repeat(HUGE);
    for (const configJson of [
      JSON.stringify({ api_token: 't', [key]: 1 }),
      JSON.stringify({ api_token: 't', extra: { [key]: 'v' } }),
      JSON.stringify({ api_token: 't', extra: { nested: { [key]: { _secret: 'coffer_workspace_x_secret_y_v1' } } } }),
    ]) {
      expectBoundedRefusal(await call('createActor', { workspaceId, definitionId, name: 'k', configJson }), 'config_json');
      expectBoundedRefusal(await call('checkConfig', { workspaceId, definitionId, configJson }), 'config_json');
    }
  });

  it('a stale update is ABORTED without naming a stream, an id or a coordinate', async () => {
    const actor = (await config.createActor({ workspaceId, definitionId, name: 'stale', configJson: JSON.stringify({ api_token: 'tok-1' }) })).actor!;
    const answer = await call('updateActor', { actorId: actor.actorId, expectedVersion: 7, name: 'stale', configJson: JSON.stringify({ api_token: 'tok-2' }) });
    expect(answer.status).toBe(grpc.status.ABORTED);
    expect(answer.message).toMatch(/changed concurrently/);
    expect(`${answer.message}${answer.trailers}`).not.toContain(actor.actorId);
    expect(`${answer.message}${answer.trailers}`).not.toMatch(/_secret|actor-|stream/);
  });

  it('published Source events say which fields changed, never where their secrets live', async () => {
    const actor = (await config.createActor({ workspaceId, definitionId, name: 'events', configJson: JSON.stringify({ api_token: 'tok-1', base_url: 'https://a' }) })).actor!;
    await config.updateActor({ actorId: actor.actorId, expectedVersion: 1, name: 'events', configJson: JSON.stringify({ api_token: 'tok-2', base_url: 'https://a' }) });
    const consumer = await jetstream(nc).consumers.get(streamName(ns, 'config'));
    const ofActor: Array<{ type: string; body: string }> = [];
    const batch = await consumer.fetch({ max_messages: 500, expires: 2_000 });
    for await (const m of batch) {
      const body = new TextDecoder().decode(m.data);
      const type = m.headers?.get('ce-type') ?? '';
      if (/Source|Destination|WebhookConfig/.test(type)) expect(body, type).not.toMatch(/_secret|partialConfig/);
      if (body.includes(actor.actorId)) ofActor.push({ type, body });
    }
    const created = ofActor.find((e) => e.type.endsWith('SourceCreated'));
    const updated = ofActor.find((e) => e.type.endsWith('SourceConfigUpdated'));
    expect(JSON.parse(created!.body)).toMatchObject({ definitionId, changedFields: expect.arrayContaining(['$.api_token', '$.base_url']) });
    expect(JSON.parse(updated!.body)).toMatchObject({ definitionId, changedFields: ['$.api_token'] });
  });

  it("the shredder's warning names no coordinate", async () => {
    const actor = (await config.createActor({ workspaceId, definitionId, name: 'shred', configJson: JSON.stringify({ api_token: 'tok-1' }) })).actor!;
    await stack.stopOne('secrets');
    try {
      await config.deleteActor({ actorId: actor.actorId, expectedVersion: 1 });
      const end = Date.now() + 20_000;
      const warned = () => stack.services.config.output.filter((l) => l.includes('could not shred'));
      while (warned().length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
      expect(warned().length).toBeGreaterThan(0);
      for (const line of warned()) expect(line).not.toMatch(/_secret|coffer_workspace/);
      const warnings = stack.services.config.output.filter((l) => /"level":(40|50)/.test(l));
      for (const line of warnings) expect(line).not.toMatch(/_secret_/);
    } finally {
      await stack.restart('secrets');
    }
  }, 90_000);
});
