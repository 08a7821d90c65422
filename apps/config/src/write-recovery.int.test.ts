import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CofferError } from '@coffer/contracts';
import { createEventStore, migrateEventStore } from '@coffer/event-store';
import { createDatabase } from '@coffer/runtime';
import { secretCoordinates } from '@coffer/secret-json';
import { createLogger, createRedactor } from '@coffer/telemetry';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { inProcessSecretsPort, startInProcessSecretsService } from '../../secrets/src/in-process';
import type { SecretsService } from '../../secrets/src/secrets.service';
import { migrateConfigReadModel, queueShredding } from './config.postgres';
import { createConfigService, type ConfigService, type SecretsPort } from './config.service';
import type { FaultPoint } from './fault-points';

// The real config and secrets services on one Postgres (their own schemas), without the gRPC hop. A
// change "dies" at a fault point by never going on: what a killed process leaves behind, minus the
// process (apps/e2e/src/crash-recovery.int.test.ts kills real ones).

const operator = { subject: 'operator' };
interface Hold {
  point: FaultPoint;
  reached: Promise<void>;
  arrive(): void;
  gate: Promise<void>;
  release(): void;
}
const GRACE_MS = 60_000;
const spec = {
  type: 'object',
  required: ['url'],
  properties: {
    url: { type: 'string' },
    api_token: { type: 'string', airbyte_secret: true },
    password: { type: 'string', airbyte_secret: true },
  },
};

describe('config: interrupted cross-service writes are recovered, and shredding runs once per entry', () => {
  let tdb: TestDatabase;
  let db: Kysely<any>;
  let secretsService: SecretsService;
  let workspaceId = '';
  let definitionId = '';
  const logLines: string[] = [];
  // The services' clock; moved forward to age intents past the grace period.
  let offsetMs = 0;
  // The next change that reaches `held.point` waits there until the test lets it go (or forever: a crash).
  let held: Hold | undefined;

  // The next write answers UNAVAILABLE without reaching secrets: a call whose outcome the caller cannot know.
  let failNextWrite = false;
  const port = (): SecretsPort => {
    const real = inProcessSecretsPort(secretsService);
    return {
      ...real,
      write: async (ws, writes, owner) => {
        if (failNextWrite) {
          failNextWrite = false;
          throw new CofferError('unavailable', 'a backing service is unavailable; retry the call');
        }
        await real.write(ws, writes, owner);
      },
    };
  };

  const newService = (): ConfigService =>
    createConfigService({
      db,
      store: createEventStore(db, { schema: 'config' }),
      schema: 'config',
      namespace: uniqueNamespace(),
      secrets: port(),
      coordinatePrefix: 'coffer',
      maxConfigBytes: 256 * 1024,
      writeIntentGraceMs: GRACE_MS,
      secretWritesPerWorkspace: { concurrent: 4, queued: 64 },
      fault: async (point) => {
        const h = held;
        if (!h || point !== h.point) return;
        held = undefined;
        h.arrive();
        await h.gate;
      },
      logger: createLogger({ service: 'config', level: 'debug', redactor: createRedactor(), destination: { write: (line: string) => void logLines.push(line) } }),
      clock: () => new Date(Date.now() + offsetMs),
      newId: randomUUID,
    });
  let config: ConfigService;

  /** Makes the next change that reaches `point` stop there; `reached` resolves when it does. */
  function holdAt(point: FaultPoint): Hold {
    let arrive!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((resolve) => (arrive = resolve));
    const gate = new Promise<void>((resolve) => (release = resolve));
    held = { point, reached, arrive, gate, release };
    return held;
  }

  async function query<T extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: tdb.url });
    await client.connect();
    try {
      return (await client.query<T>(text, params)).rows;
    } finally {
      await client.end();
    }
  }

  /**
   * Orphans: active secret versions of the workspace whose base no live actor references, or that
   * are newer than the version its actor references (older ones of a live base are kept history).
   */
  async function unreferencedActive(): Promise<string[]> {
    const actors = await query<{ p: unknown }>('select partial_config as p from config.actors where not deleted and workspace_id = $1', [workspaceId]);
    const referenced = new Map(actors.flatMap((a) => secretCoordinates(a.p)).map((c) => [c.slice(0, c.lastIndexOf('_v')), Number(c.slice(c.lastIndexOf('_v') + 2))]));
    const active = await query<{ coordinate: string; base_coordinate: string; version: number }>(
      `select coordinate, base_coordinate, version from secrets.secret_versions where state = 'active' and workspace_id = $1`,
      [workspaceId],
    );
    return active.filter((a) => !(a.version <= (referenced.get(a.base_coordinate) ?? 0))).map((a) => a.coordinate);
  }

  const partialOf = async (actorId: string) => (await query<{ p: Record<string, { _secret: string }> }>('select partial_config as p from config.actors where actor_id = $1', [actorId]))[0]!.p;
  const intents = () => query<{ operation: string; coordinates: string[] }>('select operation, coordinates from config.secret_write_intents');
  const createActor = (name: string, configJson: object) => config.createActor({ workspaceId, definitionId, name, configJson: JSON.stringify(configJson) }, operator);

  beforeAll(async () => {
    tdb = await createTestDatabase('coffer_recovery');
    db = createDatabase(tdb.url, { max: 8 });
    await migrateEventStore(db, 'config');
    await migrateConfigReadModel(db, 'config');
    secretsService = await startInProcessSecretsService({ db, namespace: uniqueNamespace() });
    config = newService();
    workspaceId = (await config.createWorkspace({ name: 'recovery' }, operator)).workspaceId;
    definitionId = (await config.registerDefinition({ name: 'api', actorType: 'source', connector: 'builtin:http-json', specJson: JSON.stringify(spec) }, operator)).definitionId;
  });

  afterAll(async () => {
    await db?.destroy();
    await tdb?.drop();
  });

  it('a create and an update that die after the secrets write are shredded by recovery, and the actor takes its next secret', async () => {
    const actor = await createActor('stuck', { url: 'u', api_token: 'token-1' });
    const token = (await partialOf(actor.actorId)).api_token!._secret;

    // An update dies between its secrets write (v2) and its event.
    let h = holdAt('after-secrets-write');
    void config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: 'stuck', configJson: JSON.stringify({ url: 'u', api_token: 'token-2' }) }, operator);
    await h.reached;
    // So does a create (v1 of a new base, for an actor that never appears).
    h = holdAt('after-secrets-write');
    void createActor('never', { url: 'u', api_token: 'token-never' });
    await h.reached;

    const orphans = await unreferencedActive();
    expect(orphans).toHaveLength(2);
    expect(orphans).toContain(token.replace(/_v1$/, '_v2'));
    expect((await intents()).map((i) => i.operation).sort()).toEqual(['create', 'update']);

    // Within the grace period recovery leaves them alone: the changes may still be under way.
    expect(await config.recoverInterruptedWrites()).toBe(0);
    offsetMs += GRACE_MS + 1000;
    expect(await config.recoverInterruptedWrites()).toBe(2);
    expect(await intents()).toEqual([]);
    expect(await unreferencedActive()).toEqual([]);
    expect(await query('select 1 from config.secret_shredding')).toEqual([]);
    expect(logLines.some((l) => l.includes('secret writes of interrupted changes found'))).toBe(true);

    // v2 was taken (and destroyed): the next secret becomes v3, not a refusal.
    const updated = await config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: 'stuck', configJson: JSON.stringify({ url: 'u', api_token: 'token-3' }) }, operator);
    expect(updated.version).toBe(2);
    expect((await partialOf(actor.actorId)).api_token!._secret).toBe(token.replace(/_v1$/, '_v3'));
    expect(JSON.parse(await secretsService.hydrateConfig(workspaceId, JSON.stringify(await partialOf(actor.actorId)), 'test', operator, actor.actorId))).toEqual({ url: 'u', api_token: 'token-3' });
    expect(await unreferencedActive()).toEqual([]);
  });

  it("recovering a write whose outcome was unknown destroys only what that write made, never a retry's same version", async () => {
    const actor = await createActor('unknown', { url: 'u', api_token: 'unknown-1' });
    // The first try is answered UNAVAILABLE and wrote nothing; its intent (v2) stays, as it must.
    failNextWrite = true;
    await expect(
      config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: 'unknown', configJson: JSON.stringify({ url: 'u', api_token: 'unknown-2' }) }, operator),
    ).rejects.toMatchObject({ code: 'unavailable' });
    expect((await intents()).map((i) => i.coordinates.map((c) => c.slice(-3)))).toEqual([['_v2']]);
    // The retry writes the same version number, v2, and is recorded.
    await config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: 'unknown', configJson: JSON.stringify({ url: 'u', api_token: 'unknown-2' }) }, operator);
    const live = (await partialOf(actor.actorId)).api_token!._secret;
    expect(live).toMatch(/_v2$/);

    offsetMs += GRACE_MS + 1000;
    expect(await config.recoverInterruptedWrites()).toBe(1);
    await config.shredPending();
    expect(await intents()).toEqual([]);
    expect(await query('select 1 from config.secret_shredding')).toEqual([]);
    // The first try's intent named v2 too, but that write made nothing: the retry's v2 is live.
    expect((await query<{ state: string }>('select state from secrets.secret_versions where coordinate = $1', [live]))[0]!.state).toBe('active');
    expect(JSON.parse(await secretsService.hydrateConfig(workspaceId, JSON.stringify(await partialOf(actor.actorId)), 'test', operator, actor.actorId))).toEqual({
      url: 'u',
      api_token: 'unknown-2',
    });
    expect(await unreferencedActive()).toEqual([]);
  });

  it('an update with a new secret that loses the race to a masked rename succeeds on retry', async () => {
    const actor = await createActor('race', { url: 'u', api_token: 'race-1' });
    const h = holdAt('after-secrets-write');
    const update = config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: 'race', configJson: JSON.stringify({ url: 'u', api_token: 'race-2' }) }, operator);
    await h.reached;
    await config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: 'renamed', configJson: JSON.stringify({ url: 'u', api_token: '**********' }) }, operator);
    h.release();
    await expect(update).rejects.toMatchObject({ code: 'version_conflict' });
    expect(await intents()).toEqual([]);
    expect(await unreferencedActive()).toEqual([]);

    const retried = await config.updateActor({ actorId: actor.actorId, expectedVersion: 2, name: 'renamed', configJson: JSON.stringify({ url: 'u', api_token: 'race-3' }) }, operator);
    expect(retried.version).toBe(3);
    expect((await partialOf(actor.actorId)).api_token!._secret).toMatch(/_v3$/);
    expect(await unreferencedActive()).toEqual([]);
  });

  it('a change slower than the grace period is rolled back rather than recorded with shredded secrets', async () => {
    const actor = await createActor('slow', { url: 'u', api_token: 'slow-1' });
    const h = holdAt('after-secrets-write');
    const update = config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: 'slow', configJson: JSON.stringify({ url: 'u', api_token: 'slow-2' }) }, operator);
    await h.reached;
    offsetMs += GRACE_MS + 1000;
    expect(await config.recoverInterruptedWrites()).toBe(1);
    h.release();
    await expect(update).rejects.toMatchObject({ code: 'unavailable' });
    expect((await config.getActor(actor.actorId)).version).toBe(1);
    expect(await unreferencedActive()).toEqual([]);
    await config.updateActor({ actorId: actor.actorId, expectedVersion: 1, name: 'slow', configJson: JSON.stringify({ url: 'u', api_token: 'slow-3' }) }, operator);
    expect((await partialOf(actor.actorId)).api_token!._secret).toMatch(/_v3$/);
  });

  it('a rollback of a secret field makes the earlier value current; one that dies after secrets is shredded by recovery', async () => {
    const actor = await createActor('rollback', { url: 'u', api_token: 'rb-1', password: 'pw-1' });
    await config.updateActor({ actorId: actor.actorId, expectedVersion: 1, name: 'rollback', configJson: JSON.stringify({ url: 'u', api_token: 'rb-2', password: '**********' }) }, operator);
    const hydrated = async () => JSON.parse(await secretsService.hydrateConfig(workspaceId, JSON.stringify(await partialOf(actor.actorId)), 'test', operator, actor.actorId)) as Record<string, string>;
    expect((await hydrated()).api_token).toBe('rb-2');

    const listed = await config.listActorSecretVersions({ actorId: actor.actorId, field: '' });
    expect(listed.map((s) => [s.field, s.currentVersion, s.versions.map((v) => `${v.version}:${v.state}:${v.current}`)])).toEqual([
      ['$.api_token', 2, ['1:active:false', '2:active:true']],
      ['$.password', 1, ['1:active:true']],
    ]);
    expect(JSON.stringify(listed)).not.toMatch(/rb-1|rb-2|pw-1/);

    // Bad input names its field and changes nothing.
    await expect(config.rollbackActorSecret({ actorId: actor.actorId, field: 'url', toVersion: 1, expectedVersion: 0 }, operator)).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field: 'field' }] });
    await expect(config.rollbackActorSecret({ actorId: actor.actorId, field: 'api_token', toVersion: 9, expectedVersion: 0 }, operator)).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field: 'to_version' }] });
    await expect(config.rollbackActorSecret({ actorId: actor.actorId, field: 'api_token', toVersion: 2, expectedVersion: 0 }, operator)).rejects.toMatchObject({ code: 'failed_precondition' });
    await expect(config.rollbackActorSecret({ actorId: actor.actorId, field: 'api_token', toVersion: 1, expectedVersion: 1 }, operator)).rejects.toMatchObject({ code: 'version_conflict' });

    const done = await config.rollbackActorSecret({ actorId: actor.actorId, field: '$.api_token', toVersion: 1, expectedVersion: 2 }, operator);
    expect(done.actor.version).toBe(3);
    expect(JSON.parse(done.actor.configJson)).toEqual({ url: 'u', api_token: '**********', password: '**********' });
    expect(done.secret.currentVersion).toBe(3);
    expect(done.secret.versions.map((v) => `${v.version}:${v.current}`)).toEqual(['1:false', '2:false', '3:true']);
    expect(await hydrated()).toEqual({ url: 'u', api_token: 'rb-1', password: 'pw-1' });
    expect(await unreferencedActive()).toEqual([]);

    // A rollback that dies between secrets and its event: its version is shredded, the actor stays as it was.
    const h = holdAt('after-secrets-write');
    void config.rollbackActorSecret({ actorId: actor.actorId, field: 'api_token', toVersion: 2, expectedVersion: 3 }, operator);
    await h.reached;
    expect(await unreferencedActive()).toHaveLength(1);
    expect((await intents()).map((i) => i.operation)).toEqual(['rollback']);
    offsetMs += GRACE_MS + 1000;
    expect(await config.recoverInterruptedWrites()).toBe(1);
    expect(await unreferencedActive()).toEqual([]);
    expect((await hydrated()).api_token).toBe('rb-1');
    // The lost v4 is skipped: the next rollback writes v5.
    const again = await config.rollbackActorSecret({ actorId: actor.actorId, field: 'api_token', toVersion: 2, expectedVersion: 3 }, operator);
    expect(again.secret.currentVersion).toBe(5);
    expect((await hydrated()).api_token).toBe('rb-2');
  });

  it('two replicas shredding the same queue at once shred each entry once, with no retry warning', async () => {
    const replicas = [config, newService()];
    const actors = await Promise.all(Array.from({ length: 6 }, (_, i) => createActor(`shred-${i}`, { url: 'u', api_token: `shred-token-${i}`, password: `shred-pw-${i}` })));
    const bases = (await Promise.all(actors.map((a) => partialOf(a.actorId)))).flatMap((p) => [p.api_token!._secret, p.password!._secret].map((c) => c.replace(/_v1$/, '')));
    // Deleting each actor queues its bases in its event's transaction; the shredders then race.
    logLines.length = 0;
    await db.transaction().execute(async (trx) => {
      for (const a of actors) {
        const p = await partialOf(a.actorId);
        await queueShredding(trx, 'config', workspaceId, a.actorId, [p.api_token!._secret, p.password!._secret].map((c) => c.replace(/_v1$/, '')), 'test', new Date(Date.now() + offsetMs));
      }
    });
    const counts = await Promise.all([...replicas, ...replicas, ...replicas].map((r) => r.shredPending()));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(bases.length);
    const events = await query<{ c: string; n: number }>(
      `select data->>'coordinate' as c, count(*)::int as n from config.events where type = 'OrphanedSecretShredded' and data->>'coordinate' = any($1) group by 1`,
      [bases],
    );
    expect(events.map((e) => e.n)).toEqual(Array(bases.length).fill(1));
    const destroyed = await query<{ n: number }>(`select count(*)::int as n from secrets.events where type = 'SecretVersionDestroyed' and data->>'baseCoordinate' = any($1)`, [bases]);
    expect(destroyed[0]!.n).toBe(bases.length);
    expect(await query('select 1 from config.secret_shredding')).toEqual([]);
    expect(logLines.filter((l) => l.includes('could not shred'))).toEqual([]);
  });

  it('32 concurrent updates of one actor leave no orphan, no queued entry and no retry warning', async () => {
    const actor = await createActor('busy', { url: 'u', api_token: 'busy-0' });
    logLines.length = 0;
    // Each update replaces one optional secret by the other: the losers' writes and the winners' dropped bases are all queued.
    const results = await Promise.allSettled(
      Array.from({ length: 32 }, (_, i) =>
        config.updateActor({ actorId: actor.actorId, expectedVersion: 0, name: 'busy', configJson: JSON.stringify(i % 2 ? { url: 'u', api_token: `busy-${i}` } : { url: 'u', password: `busy-pw-${i}` }) }, operator),
      ),
    );
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as { code: string }).code);
    expect(new Set(rejected)).toEqual(new Set(rejected.length ? ['version_conflict'] : []));
    const succeeded = results.length - rejected.length;
    expect(succeeded).toBeGreaterThan(0);
    await config.shredNow();
    const queued = await query<{ n: number }>('select count(*)::int as n from config.secret_shredding');
    const shredded = await query<{ c: string; n: number }>(
      `select data->>'coordinate' as c, count(*)::int as n from config.events where type = 'OrphanedSecretShredded' and data->>'actorId' = $1 group by 1`,
      [actor.actorId],
    );
    console.log(`32 concurrent updates of one actor: ${succeeded} succeeded, ${rejected.length} ABORTED, ${shredded.length} queued entries shredded, ${queued[0]!.n} left queued`);
    expect(queued[0]!.n).toBe(0);
    expect(shredded.length).toBeGreaterThan(0);
    expect(shredded.every((s) => s.n === 1)).toBe(true);
    expect(logLines.filter((l) => l.includes('could not shred'))).toEqual([]);
    expect(await unreferencedActive()).toEqual([]);
    expect(await intents()).toEqual([]);
  });
});
