import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { secretCoordinates } from '@coffer/secret-json';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';

// The config process is killed (SIGKILL, by itself at a COFFER_FAULT_POINT) in the middle of the
// cross-service write of creates, updates and deletes, then restarted. After recovery no active
// secret version may be unreferenced and every actor must take a new secret value.

const spec = {
  type: 'object',
  required: ['url'],
  properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true }, password: { type: 'string', airbyte_secret: true } },
};
const value = (label: string) => `value-${label}-${Math.random().toString(36).slice(2)}`;
const GRACE_SECONDS = 5;

describe('crash recovery of the config ↔ secrets write (real processes, config killed mid-write)', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let config: PromiseClient<configV1.ConfigServiceClient> & { close(): void };
  // startStack reads it again at each (re)start: the fault point is set and cleared between restarts.
  const configEnv: Record<string, string> = { CONFIG_WRITE_INTENT_GRACE_SECONDS: String(GRACE_SECONDS), CONFIG_SHRED_RETRY_SECONDS: '1' };
  let workspaceId = '';
  let definitionId = '';
  const figures: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('coffer_crash');
    ns = uniqueNamespace();
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns, serviceEnv: { config: configEnv } });
    config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, {
      tokenProvider: createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'config' }),
    });
    workspaceId = (await config.createWorkspace({ name: 'crash', organizationId: '' })).workspace!.workspaceId;
    definitionId = (
      await config.registerConnectorDefinition({ name: 'api', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) })
    ).definition!.definitionId;
  }, 180_000);

  afterAll(async () => {
    console.log(figures.join('\n'));
    config?.close();
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

  /**
   * Orphans, read from both services' schemas: active versions of the workspace whose base no live
   * actor references, or newer than the version its actor references (older ones are kept history).
   */
  async function orphans(): Promise<string[]> {
    const actors = await query<{ p: unknown }>('select partial_config as p from config.actors where not deleted and workspace_id = $1', [workspaceId]);
    const referenced = new Map(actors.flatMap((a) => secretCoordinates(a.p)).map((c) => [c.slice(0, c.lastIndexOf('_v')), Number(c.slice(c.lastIndexOf('_v') + 2))]));
    const active = await query<{ coordinate: string; base_coordinate: string; version: number }>(
      `select coordinate, base_coordinate, version from secrets.secret_versions where state = 'active' and workspace_id = $1`,
      [workspaceId],
    );
    return active.filter((a) => !(a.version <= (referenced.get(a.base_coordinate) ?? 0))).map((a) => a.coordinate);
  }

  const pending = async () => ({
    intents: (await query<{ n: number }>('select count(*)::int as n from config.secret_write_intents'))[0]!.n,
    queued: (await query<{ n: number }>('select count(*)::int as n from config.secret_shredding'))[0]!.n,
  });

  async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  /** Restarts config killing itself at `point`, runs `work` (which the kill interrupts), restarts it clean and waits for recovery. */
  async function crashAt(point: string, work: () => Promise<unknown>[]): Promise<{ settled: PromiseSettledResult<unknown>[]; recoveryMs: number }> {
    configEnv.COFFER_FAULT_POINT = point;
    await stack.restart('config');
    const settled = await Promise.allSettled(work());
    await eventually(async () => stack.services.config.process.exitCode !== null || stack.services.config.process.signalCode !== null, 'config to kill itself', 30_000);
    expect(stack.services.config.process.signalCode).toBe('SIGKILL');
    expect(stack.output()).toContain(`"faultPoint":"${point}"`);
    delete configEnv.COFFER_FAULT_POINT;
    await stack.restart('config');
    // From the moment the new process listens; intents wait out the grace period first.
    const restarted = Date.now();
    await eventually(async () => {
      const p = await pending();
      return p.intents === 0 && p.queued === 0;
    }, 'intents and the shredding queue to empty after the restart');
    return { settled, recoveryMs: Date.now() - restarted };
  }

  const create = (name: string, configJson: object) => config.createActor({ workspaceId, definitionId, name, configJson: JSON.stringify(configJson) });
  const liveActors = async () => query<{ actor_id: string; version: number; name: string }>('select actor_id, version, name from config.actors where not deleted and workspace_id = $1 order by actor_id', [workspaceId]);

  /** Every live actor takes a new secret value (none answers ABORTED forever). */
  async function everyActorTakesANewSecret(): Promise<number> {
    const actors = await liveActors();
    for (const a of actors) {
      const updated = await config.updateActor({ actorId: a.actor_id, expectedVersion: a.version, name: a.name, configJson: JSON.stringify({ url: 'u', api_token: value('fresh') }) });
      expect(updated.actor!.version).toBe(a.version + 1);
    }
    return actors.length;
  }

  it('updates, then creates, killed after the secrets write: no orphan after recovery, and every actor takes a new secret', async () => {
    const actors: configV1.Actor[] = [];
    for (let i = 0; i < 8; i++) actors.push((await create(`a${i}`, { url: 'u', api_token: value(`a${i}`) })).actor!);
    const tokenBase = async (actorId: string) => {
      const c = (await query<{ c: string }>(`select partial_config->'api_token'->>'_secret' as c from config.actors where actor_id = $1`, [actorId]))[0]!.c;
      return { base: c.slice(0, c.lastIndexOf('_v')), version: Number(c.slice(c.lastIndexOf('_v') + 2)) };
    };
    const shreddedSoFar = async () => (await query<{ n: number }>(`select count(*)::int as n from config.events where type = 'OrphanedSecretShredded'`))[0]!.n;

    // Updates: the first to pass its secrets write kills config, so at least that actor's v2 was written and never recorded.
    const updates = await crashAt('after-secrets-write', () =>
      actors.map((a) => config.updateActor({ actorId: a.actorId, expectedVersion: a.version, name: a.name, configJson: JSON.stringify({ url: 'u', api_token: value('crash'), password: value('crash-pw') }) })),
    );
    const afterUpdates = await shreddedSoFar();
    expect(afterUpdates).toBeGreaterThan(0);
    expect(await orphans()).toEqual([]);
    // Creates: the killer's v1 belongs to an actor that never came to exist.
    const creates = await crashAt('after-secrets-write', () => Array.from({ length: 4 }, (_, i) => create(`crash-create-${i}`, { url: 'u', api_token: value(`c${i}`) })));
    const ownerless = await query<{ n: number }>(
      `select count(*)::int as n from config.events e where type = 'OrphanedSecretShredded' and not exists (select 1 from config.actors a where a.actor_id::text = e.data->>'actorId')`,
    );
    expect(ownerless[0]!.n).toBeGreaterThan(0);
    expect(await orphans()).toEqual([]);

    const failed = [...updates.settled, ...creates.settled].filter((s) => s.status === 'rejected').map((s) => (s.reason as { code: string }).code);
    expect(new Set(failed)).toEqual(new Set(['unavailable']));
    const before = new Map(await Promise.all(actors.map(async (a) => [a.actorId, await tokenBase(a.actorId)] as const)));
    const updated = await everyActorTakesANewSecret();
    // An actor whose cut-off update had taken v2 at secrets now gets v3: the version a lost write took is skipped, not refused.
    let skipped = 0;
    for (const a of actors) {
      const now = await tokenBase(a.actorId);
      expect(now.base).toBe(before.get(a.actorId)!.base);
      if (now.version > before.get(a.actorId)!.version + 1) skipped++;
    }
    expect(skipped).toBeGreaterThan(0);
    expect(await orphans()).toEqual([]);
    figures.push(
      `updates killed after the secrets write: ${updates.settled.filter((x) => x.status === 'rejected').length} of ${updates.settled.length} calls cut off, ${afterUpdates} lost versions shredded, recovery after the restart ${updates.recoveryMs} ms (intents wait out a ${GRACE_SECONDS} s grace period from their write); ${skipped} actors then skipped a version a lost write had taken`,
      `creates killed after the secrets write: ${creates.settled.filter((x) => x.status === 'rejected').length} of ${creates.settled.length} calls cut off, recovery after the restart ${creates.recoveryMs} ms; ${updated} actors then took a new secret`,
    );
  }, 300_000);

  it('deletes killed before and after the secrets delete: every secret of the deleted actors is destroyed, once', async () => {
    for (const point of ['before-secrets-delete', 'after-secrets-delete']) {
      const victims: configV1.Actor[] = [];
      for (let i = 0; i < 3; i++) victims.push((await create(`${point}-${i}`, { url: 'u', api_token: value('d'), password: value('dp') })).actor!);
      const basesOf = async (actorIds: string[]) =>
        (await query<{ p: Record<string, unknown> }>('select partial_config as p from config.actors where actor_id = any($1)', [actorIds])).flatMap((r) =>
          secretCoordinates(r.p).map((c) => c.slice(0, c.lastIndexOf('_v'))),
        );
      const { settled, recoveryMs } = await crashAt(point, () => victims.map((v) => config.deleteActor({ actorId: v.actorId, expectedVersion: v.version })));
      // A delete cut off before its event left its actor alive (and its secrets referenced); every other one is done.
      const deleted = (await query<{ actor_id: string }>('select actor_id from config.actors where actor_id = any($1) and deleted', [victims.map((v) => v.actorId)])).map((r) => r.actor_id);
      expect(deleted.length).toBeGreaterThan(0);
      const bases = await basesOf(deleted);
      const states = await query<{ state: string }>('select state from secrets.secret_versions where base_coordinate = any($1)', [bases]);
      expect(states.map((s) => s.state)).toEqual(Array(bases.length).fill('destroyed'));
      const destroyed = await query<{ n: number }>(
        `select count(*)::int as n from secrets.events where type = 'SecretVersionDestroyed' and data->>'baseCoordinate' = any($1)`,
        [bases],
      );
      expect(destroyed[0]!.n).toBe(bases.length);
      expect(await orphans()).toEqual([]);
      figures.push(
        `delete killed ${point}: ${settled.filter((s) => s.status === 'rejected').length} of ${settled.length} calls cut off, ${deleted.length} actors deleted; recovery after the restart ${recoveryMs} ms`,
      );
    }
    expect(stack.output()).not.toContain('could not shred an orphaned secret yet');
    await everyActorTakesANewSecret();
  }, 240_000);

  it('an update with a new secret that loses the race to a masked rename succeeds on retry, every time', async () => {
    let renameWon = 0;
    const tries = 10;
    for (let i = 0; i < tries; i++) {
      const actor = (await create(`race-${i}`, { url: 'u', api_token: value('race') })).actor!;
      const [update, rename] = await Promise.allSettled([
        config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: actor.name, configJson: JSON.stringify({ url: 'u', api_token: value('race-new') }) }),
        config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: `renamed-${i}`, configJson: JSON.stringify({ url: 'u', api_token: '**********' }) }),
      ]);
      if (update.status === 'rejected') {
        expect(update.reason).toMatchObject({ code: 'version_conflict' });
        expect(rename.status).toBe('fulfilled');
        renameWon++;
        const current = (await config.getActor({ actorId: actor.actorId })).actor!;
        const retried = await config.updateActor({ actorId: actor.actorId, expectedVersion: current.version, name: current.name, configJson: JSON.stringify({ url: 'u', api_token: value('race-retry') }) });
        expect(retried.actor!.version).toBe(current.version + 1);
      } else if (rename.status === 'rejected') {
        expect(rename.reason).toMatchObject({ code: 'version_conflict' });
      }
    }
    await eventually(async () => (await pending()).queued === 0, 'the losers\u2019 versions to be shredded');
    expect(await orphans()).toEqual([]);
    figures.push(`update with a new secret racing a masked rename: the rename won ${renameWon} of ${tries} times; every losing update succeeded on retry`);
  }, 240_000);
});
