import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, EPHEMERAL_WORKSPACE_ID, isCofferError, secretsV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { createTestDatabase, deleteStreams, latencyFigures, p99, testNatsUrl, timedSeries, uniqueNamespace, type TestDatabase } from '@coffer/testing';

const LIMIT = 100;
// Hydrates timed per round, idle and loaded, and the rounds of each.
const PER_ROUND = 100;
const ROUNDS = 3;
const spec = {
  type: 'object',
  required: ['url'],
  properties: {
    url: { type: 'string' },
    keys: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, key: { type: 'string', airbyte_secret: true } } } },
  },
};
const configWith = (n: number, label = 'k') => JSON.stringify({ url: 'https://example.test', keys: Array.from({ length: n }, (_, i) => ({ name: `n${i}`, key: `${label}-${i}-${Math.random().toString(36).slice(2)}` })) });

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string; fields: string[] }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isCofferError(err)) throw new Error(`expected a refusal, got ${err === undefined ? 'success' : String(err)}`);
  return { code: err.code, message: err.message, fields: err.details.map((d) => d.field ?? '') };
}

describe('one tenant cannot stall every tenant: secrets per config, per-workspace turns at config', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let config: PromiseClient<configV1.ConfigServiceClient> & { close(): void };
  let secrets: PromiseClient<secretsV1.SecretsServiceClient> & { close(): void };
  let flooder = '';
  let other = '';
  let definitionId = '';

  beforeAll(async () => {
    db = await createTestDatabase('coffer_flood');
    ns = uniqueNamespace();
    // Config lets one workspace write secrets in one call at a time, with one waiting: the rest of a burst is refused there.
    stack = await startStack({
      databaseUrl: db.url,
      natsUrl: testNatsUrl(),
      namespace: ns,
      serviceEnv: { config: { CONFIG_CONCURRENT_SECRET_WRITES_PER_WORKSPACE: '1', CONFIG_QUEUED_SECRET_WRITES_PER_WORKSPACE: '1' } },
    });
    config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, {
      tokenProvider: createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'config' }),
      deadlineMs: 60_000,
    });
    // Only the sync worker may hydrate: the measurement below calls secrets as the sync worker does.
    secrets = createPromiseClient(secretsV1.SecretsServiceClient, stack.services.secrets.address, {
      tokenProvider: createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients['sync-worker'], audience: 'secrets' }),
      deadlineMs: 60_000,
    });
    flooder = (await config.createWorkspace({ name: 'flooder', organizationId: '' })).workspace!.workspaceId;
    other = (await config.createWorkspace({ name: 'other', organizationId: '' })).workspace!.workspaceId;
    definitionId = (
      await config.registerConnectorDefinition({ name: 'many keys', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) })
    ).definition!.definitionId;
  }, 180_000);

  afterAll(async () => {
    config?.close();
    secrets?.close();
    await stack?.stop();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  async function versionsOf(workspaceId: string): Promise<number> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (await client.query<{ n: number }>('select count(*)::int as n from secrets.secret_versions where workspace_id = $1', [workspaceId])).rows[0]!.n;
    } finally {
      await client.end();
    }
  }

  it(`refuses a config of more than ${LIMIT} secrets on create, update, check, discover and webhooks before writing any`, async () => {
    const ephemeralBefore = await versionsOf(EPHEMERAL_WORKSPACE_ID);
    const tooMany = configWith(LIMIT + 1);
    const refusedCreate = await refusal(config.createActor({ workspaceId: flooder, definitionId, name: 'too many', configJson: tooMany }));
    expect(refusedCreate).toMatchObject({ code: 'invalid_argument', fields: ['config_json'] });
    expect(refusedCreate.message).toBe(`config_json holds ${LIMIT + 1} secret values; the limit is ${LIMIT}`);
    expect(await versionsOf(flooder)).toBe(0);

    const actor = (await config.createActor({ workspaceId: flooder, definitionId, name: 'at the limit', configJson: configWith(LIMIT) })).actor!;
    expect(await versionsOf(flooder)).toBe(LIMIT);
    // Kept (masked) secrets count too: one more new one is over the limit.
    const masked = JSON.parse(actor.configJson) as { url: string; keys: { name: string; key: string }[] };
    masked.keys.push({ name: 'one more', key: 'one-more-value' });
    const refusedUpdate = await refusal(config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: 'at the limit', configJson: JSON.stringify(masked) }));
    expect(refusedUpdate).toMatchObject({ code: 'invalid_argument', fields: ['config_json'] });
    expect(await versionsOf(flooder)).toBe(LIMIT);

    for (const run of [() => config.checkConfig({ workspaceId: flooder, definitionId, configJson: tooMany }), () => config.discoverSchema({ workspaceId: flooder, definitionId, configJson: tooMany })]) {
      expect(await refusal(run())).toMatchObject({ code: 'invalid_argument', fields: ['config_json'] });
    }
    expect(await versionsOf(EPHEMERAL_WORKSPACE_ID)).toBe(ephemeralBefore);

    const headers = Array.from({ length: LIMIT + 1 }, (_, i) => ({ name: `X-H${i}`, value: `header-${i}` }));
    const refusedWebhook = await refusal(config.createWebhookConfig({ workspaceId: other, name: 'hook', configJson: JSON.stringify({ url: 'https://example.test/hook', headers }) }));
    expect(refusedWebhook).toMatchObject({ code: 'invalid_argument', fields: ['config_json'] });
    expect(await versionsOf(other)).toBe(0);
  }, 120_000);

  it("bounds one workspace's concurrent secret writes: the overflow gets UNAVAILABLE and writes nothing, another workspace is served", async () => {
    const before = await versionsOf(flooder);
    const flood = Array.from({ length: 20 }, (_, i) =>
      config.createActor({ workspaceId: flooder, definitionId, name: `flood ${i}`, configJson: configWith(LIMIT, 'flood') }).then(
        () => 'ok' as const,
        (e: unknown) => e,
      ),
    );
    const served = await config.createActor({ workspaceId: other, definitionId, name: 'other', configJson: configWith(3, 'other') });
    expect(served.actor!.actorId).toBeTruthy();
    const results = await Promise.all(flood);
    const ok = results.filter((r) => r === 'ok').length;
    const refused = results.filter((r) => r !== 'ok');
    console.log(`config: ${ok} of ${results.length} concurrent ${LIMIT}-secret creates served, ${refused.length} refused`);
    // 1 running + 1 waiting at config (secrets alone would take 2 + 8); a slow burst may let a few more through.
    expect(ok).toBeGreaterThanOrEqual(2);
    expect(ok).toBeLessThanOrEqual(5);
    for (const r of refused) {
      expect(isCofferError(r) && r.code).toBe('unavailable');
      expect(isCofferError(r) && r.message).toBe('too many concurrent calls for this workspace; retry later');
    }
    expect((await versionsOf(flooder)) - before).toBe(ok * LIMIT);
  }, 180_000);

  it("another workspace's HydrateConfig p99 while one workspace writes its maximum through config stays near idle (four real processes)", async () => {
    const reader = await config.createActor({ workspaceId: other, definitionId, name: 'reader', configJson: configWith(3, 'reader') });
    const actorId = reader.actor!.actorId;
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const partial = await client
      .query<{ partial_config: unknown }>('select partial_config from config.actors where actor_id = $1', [actorId])
      .then((r) => JSON.stringify(r.rows[0]!.partial_config))
      .finally(() => client.end());
    const hydrateOnce = async () => {
      const { configJson } = await secrets.hydrateConfig({ workspaceId: other, ownerId: actorId, partialConfigJson: partial, reason: 'p99' });
      expect(configJson).toContain('reader-2-');
    };
    const series = (n: number) => timedSeries(n, hydrateOnce);
    await series(20);

    let floodWrites = 0;
    let floodRefused = 0;
    // As many writers as the workspace may run at once plus the one queued, and one more that keeps knocking.
    const flood = () => {
      let stop = false;
      const writers = Array.from({ length: 3 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const r = await config.createActor({ workspaceId: flooder, definitionId, name: `flood ${w}-${i}`, configJson: configWith(LIMIT, 'flood') }).then(
            () => 'ok' as const,
            (e: unknown) => e,
          );
          if (r === 'ok') floodWrites++;
          else {
            expect(isCofferError(r) && r.code).toBe('unavailable');
            floodRefused++;
            await sleep(20);
          }
        }
      });
      return async () => {
        stop = true;
        await Promise.all(writers);
      };
    };
    // Idle and loaded rounds take turns, so a neighbour's load on this shared machine falls on both.
    const idle: number[] = [];
    const loaded: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      idle.push(...(await series(PER_ROUND)));
      const stopFlood = flood();
      await sleep(300);
      loaded.push(...(await series(PER_ROUND)));
      await stopFlood();
    }

    const figures = { ...latencyFigures(idle, loaded), floodWrites, floodRefused };
    console.log(`hydrate latency (ms, real processes) while another workspace creates ${LIMIT}-secret actors:`, JSON.stringify(figures));
    expect(floodWrites).toBeGreaterThan(0);
    // The target (2x idle) is reported, not asserted, on this shared machine; this catches the unbounded stall.
    expect(loaded.length).toBeGreaterThanOrEqual(ROUNDS * 25);
    expect(p99(loaded)).toBeLessThan(Math.max(10 * p99(idle), 2_000));
  }, 300_000);
});
