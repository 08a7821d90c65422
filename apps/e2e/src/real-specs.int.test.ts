import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { mask, secretCoordinates } from '@coffer/secret-json';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { defaultBranch, generateConfig, otherBranch, secretSwitchPoints } from './spec-configs';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const specsDir = join(process.env.COFFER_CONFORMANCE_DIR ?? resolve(repoRoot, '../shared/conformance'), 'connector-specs');
const present = existsSync(specsDir);
if (!present) console.warn(`connector specs not found at ${specsDir} (set COFFER_CONFORMANCE_DIR): skipping the real-spec suite`);
const specFiles = present ? readdirSync(specsDir).filter((f) => f.endsWith('.spec.json')).sort() : [];

const baseOf = (c: string) => c.slice(0, c.lastIndexOf('_v'));

describe.skipIf(!present)('every real connector spec through create, masked read, updates, a oneOf switch and delete', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let config: PromiseClient<configV1.ConfigServiceClient> & { close(): void };
  let client: pg.Client;
  let workspaceId = '';
  const canaries: string[] = [];
  let n = 0;
  const secret = () => {
    const c = `canary-${++n}-${Math.random().toString(36).slice(2, 10)}`;
    canaries.push(c);
    return c;
  };

  beforeAll(async () => {
    db = await createTestDatabase('coffer_real_specs');
    ns = uniqueNamespace();
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns });
    config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, {
      tokenProvider: createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'config' }),
    });
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    workspaceId = (await config.createWorkspace({ name: 'real specs', organizationId: '' })).workspace!.workspaceId;
  }, 180_000);

  afterAll(async () => {
    await client?.end();
    config?.close();
    await stack?.stop();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  const partialOf = async (actorId: string) =>
    (await client.query<{ p: unknown }>('select partial_config as p from config.actors where actor_id = $1', [actorId])).rows[0]!.p;
  const activeAmong = async (coordinates: string[]) =>
    (
      await client.query<{ coordinate: string }>(
        `select coordinate from secrets.secret_versions where state = 'active' and (coordinate = any($1) or base_coordinate = any($1))`,
        [coordinates],
      )
    ).rows.map((r) => r.coordinate);
  const expectNoCanaryStored = async (actorId: string, step: string) => {
    const { rows } = await client.query<{ t: string }>(`select data::text as t from config.events where stream_id = $1 union all select a::text from config.actors a where actor_id = $2`, [
      `actor-${actorId}`,
      actorId,
    ]);
    const text = rows.map((r) => r.t).join('\n');
    for (const c of canaries) if (text.includes(c)) throw new Error(`${step}: canary ${c} stored in config`);
  };

  it('covers the 40 connector specs', () => {
    expect(specFiles).toHaveLength(40);
  });

  for (const file of specFiles) {
    it(file.replace('.spec.json', ''), async () => {
      const spec = (JSON.parse(readFileSync(join(specsDir, file), 'utf8')) as { connectionSpecification: unknown }).connectionSpecification;
      const actorType = file.startsWith('source-') ? configV1.ActorType.ACTOR_TYPE_SOURCE : configV1.ActorType.ACTOR_TYPE_DESTINATION;
      const definitionId = (
        await config.registerConnectorDefinition({ name: file, actorType, connector: `airbyte:${file.replace('.spec.json', '')}`, specJson: JSON.stringify(spec) })
      ).definition!.definitionId;

      // Create: the read is masked, nothing secret is stored, one coordinate per secret.
      const first = generateConfig(spec, { secret });
      const created = (await config.createActor({ workspaceId, definitionId, name: file, configJson: JSON.stringify(first) })).actor!;
      // The read is the mask of the stored partial config (array items' masks carry their item reference) ...
      expect(JSON.parse(created.configJson)).toEqual(mask(spec, await partialOf(created.actorId)));
      expect(JSON.parse((await config.getActor({ actorId: created.actorId })).actor!.configJson)).toEqual(JSON.parse(created.configJson));
      // ... and, references aside, the mask of what was sent.
      expect(JSON.parse(created.configJson.replace(/"\*{10}#[0-9a-f]{16}"/g, '"**********"'))).toEqual(mask(spec, first));
      await expectNoCanaryStored(created.actorId, 'create');
      const v1 = secretCoordinates(await partialOf(created.actorId));
      expect(v1.length).toBeGreaterThan(0);
      expect(await activeAmong(v1)).toHaveLength(v1.length);

      // Update every secret: same bases, next versions.
      const second = generateConfig(spec, { secret });
      const updated = (await config.updateActor({ actorId: created.actorId, expectedVersion: created.version, name: file, configJson: JSON.stringify(second) })).actor!;
      const v2 = secretCoordinates(await partialOf(created.actorId));
      expect(v2.map(baseOf).sort()).toEqual(v1.map(baseOf).sort());
      expect(v2.every((c) => c.endsWith('_v2'))).toBe(true);
      await expectNoCanaryStored(created.actorId, 'update');

      // The read sent back keeps every coordinate.
      const remasked = (await config.updateActor({ actorId: created.actorId, expectedVersion: updated.version, name: file, configJson: updated.configJson })).actor!;
      expect(secretCoordinates(await partialOf(created.actorId)).sort()).toEqual([...v2].sort());

      // A oneOf branch switch shreds the coordinates only the old branch used.
      let latest = remasked;
      const switchPoint = secretSwitchPoints(spec)[0];
      if (switchPoint) {
        const before = secretCoordinates(await partialOf(created.actorId));
        const third = generateConfig(spec, { secret, branch: (path, branches) => (path === switchPoint ? otherBranch(branches) : defaultBranch(branches)) });
        latest = (await config.updateActor({ actorId: created.actorId, expectedVersion: remasked.version, name: file, configJson: JSON.stringify(third) })).actor!;
        const afterBases = new Set(secretCoordinates(await partialOf(created.actorId)).map(baseOf));
        const dropped = before.filter((c) => !afterBases.has(baseOf(c)));
        expect(await activeAmong(dropped.map(baseOf))).toEqual([]);
        await expectNoCanaryStored(created.actorId, 'oneOf switch');
      }

      // Delete: no secret of the actor is left active.
      const everUsed = (await client.query<{ p: string }>(`select data->>'partialConfig' as p from config.events where stream_id = $1 and data ? 'partialConfig'`, [`actor-${created.actorId}`])).rows.flatMap(
        (r) => secretCoordinates(JSON.parse(r.p)),
      );
      await config.deleteActor({ actorId: created.actorId, expectedVersion: latest.version });
      expect(await activeAmong([...new Set(everUsed.map(baseOf))])).toEqual([]);
    }, 60_000);
  }

  it('no canary in any config table, the config event log or the config stream', async () => {
    const tables = await client.query<{ table_name: string }>(`select table_name from information_schema.tables where table_schema = 'config'`);
    for (const t of tables.rows) {
      const { rows } = await client.query<{ r: string }>(`select t::text as r from config."${t.table_name}" t`);
      const text = rows.map((r) => r.r).join('\n');
      for (const c of canaries) if (text.includes(c)) throw new Error(`canary in config.${t.table_name}`);
    }
    expect(canaries.length).toBeGreaterThan(200);
  });
});
