import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { secretCoordinates } from '@coffer/secret-json';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { generateConfig } from './spec-configs';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const specsDir = join(process.env.COFFER_CONFORMANCE_DIR ?? resolve(repoRoot, '../shared/conformance'), 'connector-specs');
const githubSpecFile = join(specsDir, 'source-github.spec.json');
const present = existsSync(githubSpecFile);
if (!present) console.warn(`connector specs not found at ${specsDir} (set COFFER_CONFORMANCE_DIR): skipping the no-orphans tests`);

const canary = (label: string) => `canary-${label}-${Math.random().toString(36).slice(2)}`;

describe.skipIf(!present)('config in depth: no orphans, models, webhooks, check and discover', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let config: PromiseClient<configV1.ConfigServiceClient> & { close(): void };
  let workspaceId = '';

  beforeAll(async () => {
    db = await createTestDatabase('coffer_orphans');
    ns = uniqueNamespace();
    // Check and discover reach HTTP servers this file starts on loopback ports chosen later.
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns, egressAllow: ['127.0.0.1'] });
    config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, {
      tokenProvider: createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'config' }),
    });
    workspaceId = (await config.createWorkspace({ name: 'orphans', organizationId: '' })).workspace!.workspaceId;
  }, 180_000);

  afterAll(async () => {
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

  const storedPartial = async (actorId: string) =>
    (await query<{ p: unknown }>('select partial_config as p from config.actors where actor_id = $1', [actorId]))[0]!.p as Record<string, any>;

  const states = async (coordinates: string[]) =>
    new Map((await query<{ coordinate: string; state: string }>('select coordinate, state from secrets.secret_versions where coordinate = any($1)', [coordinates])).map((r) => [r.coordinate, r.state]));

  async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 45_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it("switching source-github from OAuth to a personal access token shreds the OAuth branch's coordinates", async () => {
    const spec = (JSON.parse(readFileSync(githubSpecFile, 'utf8')) as { connectionSpecification: unknown }).connectionSpecification;
    const definitionId = (
      await config.registerConnectorDefinition({ name: 'GitHub', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'airbyte:source-github', specJson: JSON.stringify(spec) })
    ).definition!.definitionId;
    const oauth = { option_title: 'OAuth Credentials', access_token: canary('gh-access'), client_id: canary('gh-client'), client_secret: canary('gh-secret') };
    const actor = (
      await config.createActor({ workspaceId, definitionId, name: 'github', configJson: JSON.stringify({ credentials: oauth, repositories: ['airbytehq/airbyte'] }) })
    ).actor!;
    expect(JSON.parse(actor.configJson).credentials).toEqual({ option_title: 'OAuth Credentials', access_token: '**********', client_id: '**********', client_secret: '**********' });
    const before = await storedPartial(actor.actorId);
    const oauthCoordinates = ['access_token', 'client_id', 'client_secret'].map((k) => before.credentials[k]._secret as string);
    expect([...(await states(oauthCoordinates)).values()]).toEqual(['active', 'active', 'active']);

    const pat = canary('gh-pat');
    await config.updateActor({
      actorId: actor.actorId,
      expectedVersion: actor.version,
      name: 'github',
      configJson: JSON.stringify({ credentials: { option_title: 'PAT Credentials', personal_access_token: pat }, repositories: ['airbytehq/airbyte'] }),
    });
    const after = await storedPartial(actor.actorId);
    expect(Object.keys(after.credentials).sort()).toEqual(['option_title', 'personal_access_token']);
    await eventually(async () => [...(await states(oauthCoordinates)).values()].every((s) => s === 'destroyed'), 'the OAuth coordinates to be shredded');
    expect((await states([after.credentials.personal_access_token._secret]))!.get(after.credentials.personal_access_token._secret)).toBe('active');
    const stored = JSON.stringify(await query('select data from config.events'));
    for (const c of [pat, ...Object.values(oauth)].filter((v) => v.startsWith('canary-'))) expect(stored).not.toContain(c);
  });

  it('an update while secrets is down still shreds the orphaned coordinate once secrets is back', async () => {
    const spec = { type: 'object', required: ['url'], properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } } };
    const definitionId = (
      await config.registerConnectorDefinition({ name: 'optional token', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) })
    ).definition!.definitionId;
    const actor = (await config.createActor({ workspaceId, definitionId, name: 'api', configJson: JSON.stringify({ url: 'https://example.test', api_token: canary('outage') }) })).actor!;
    const coordinate = (await storedPartial(actor.actorId)).api_token._secret as string;

    await stack.stopOne('secrets');
    await config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: 'api', configJson: JSON.stringify({ url: 'https://example.test' }) });
    const queued = await query<{ coordinate: string; attempts: number; last_error: string | null }>('select coordinate, attempts, last_error from config.secret_shredding');
    expect(queued.map((q) => q.coordinate)).toEqual([coordinate.replace(/_v1$/, '')]);
    expect(queued[0]!.attempts).toBeGreaterThanOrEqual(1);
    expect((await states([coordinate])).get(coordinate)).toBe('active');

    await stack.restart('secrets');
    await eventually(async () => (await states([coordinate])).get(coordinate) === 'destroyed', 'the orphan to be shredded after secrets came back');
    await eventually(async () => (await query('select 1 from config.secret_shredding')).length === 0, 'the shredding queue to empty');
    const shreddedEvents = await query<{ c: string }>(`select data->>'coordinate' as c from config.events where type = 'OrphanedSecretShredded'`);
    expect(shreddedEvents.map((e) => e.c)).toContain(coordinate.replace(/_v1$/, ''));
  }, 120_000);

  it('lists pages, refuses stale versions, and deleting a workspace deletes its actors and connections and shreds every secret', async () => {
    const ws = (await config.createWorkspace({ name: 'to delete', organizationId: '' })).workspace!;
    const spec = { type: 'object', required: ['url'], properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } } };
    const source = (
      await config.registerConnectorDefinition({ name: 'src', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) })
    ).definition!;
    const dest = (
      await config.registerConnectorDefinition({ name: 'dst', actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION, connector: 'builtin:postgres', specJson: JSON.stringify(spec) })
    ).definition!;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await config.createActor({ workspaceId: ws.workspaceId, definitionId: source.definitionId, name: `s${i}`, configJson: JSON.stringify({ url: 'u', api_token: canary(`ws-${i}`) }) })).actor!.actorId);
    }
    const destination = (await config.createActor({ workspaceId: ws.workspaceId, definitionId: dest.definitionId, name: 'd', configJson: JSON.stringify({ url: 'u', api_token: canary('ws-d') }) })).actor!;

    const huge = await config
      .createActor({ workspaceId: ws.workspaceId, definitionId: source.definitionId, name: 'huge', configJson: JSON.stringify({ url: 'x'.repeat(300 * 1024), api_token: 't' }) })
      .catch((e: unknown) => e as { code: string; message: string });
    expect(huge).toMatchObject({ code: 'invalid_argument', message: expect.stringMatching(/config_json is \d+ bytes; the limit is 262144/) });
    await expect(config.deleteConnectorDefinition({ definitionId: source.definitionId, expectedVersion: 0 })).rejects.toMatchObject({ code: 'failed_precondition' });

    const first = await config.listActors({ workspaceId: ws.workspaceId, actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, page: { pageSize: 2, pageToken: '' } });
    expect(first.actors).toHaveLength(2);
    expect(first.nextPageToken).not.toBe('');
    const second = await config.listActors({ workspaceId: ws.workspaceId, actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, page: { pageSize: 2, pageToken: first.nextPageToken } });
    expect(second.actors).toHaveLength(1);
    expect(second.nextPageToken).toBe('');
    expect([...first.actors, ...second.actors].map((a) => a.actorId).sort()).toEqual([...ids].sort());
    for (const a of [...first.actors, ...second.actors]) expect(JSON.parse(a.configJson).api_token).toBe('**********');
    await expect(config.listActors({ workspaceId: ws.workspaceId, actorType: 0, page: { pageSize: 2, pageToken: 'bm90LWEtdXVpZA' } })).rejects.toMatchObject({ code: 'invalid_argument' });

    await expect(config.updateWorkspace({ workspaceId: ws.workspaceId, expectedVersion: ws.version + 5, name: 'x' })).rejects.toMatchObject({ code: 'version_conflict' });
    const renamed = (await config.updateWorkspace({ workspaceId: ws.workspaceId, expectedVersion: ws.version, name: 'renamed' })).workspace!;
    expect(renamed).toMatchObject({ name: 'renamed', version: ws.version + 1 });

    const connection = (await config.createConnection({ workspaceId: ws.workspaceId, sourceId: ids[0]!, destinationId: destination.actorId, name: 'c' })).connection!;
    const renamedConnection = (await config.updateConnection({ connectionId: connection.connectionId, expectedVersion: connection.version, name: 'c2' })).connection!;
    expect((await config.listConnections({ workspaceId: ws.workspaceId, page: undefined })).connections.map((c) => c.name)).toEqual(['c2']);
    await config.deleteConnection({ connectionId: connection.connectionId, expectedVersion: renamedConnection.version });
    await expect(config.requestSync({ connectionId: connection.connectionId })).rejects.toMatchObject({ code: 'not_found' });

    const deleted = await config.deleteWorkspace({ workspaceId: ws.workspaceId, expectedVersion: renamed.version });
    expect(Number(deleted.actorsDeleted)).toBe(4);
    await expect(config.getWorkspace({ workspaceId: ws.workspaceId })).rejects.toMatchObject({ code: 'not_found' });
    await expect(config.getActor({ actorId: ids[0]! })).rejects.toMatchObject({ code: 'not_found' });
    await eventually(
      async () => (await query(`select 1 from secrets.secret_versions where workspace_id = $1 and state = 'active'`, [ws.workspaceId])).length === 0,
      'every secret of the deleted workspace to be shredded',
    );
    expect((await query(`select 1 from secrets.secret_versions where workspace_id = $1`, [ws.workspaceId])).length).toBe(4);
    await config.deleteConnectorDefinition({ definitionId: source.definitionId, expectedVersion: source.version });
    await expect(config.getConnectorDefinition({ definitionId: source.definitionId })).rejects.toMatchObject({ code: 'not_found' });
    expect((await config.listConnectorDefinitions({ page: undefined, actorType: 0 })).definitions.map((d) => d.definitionId)).not.toContain(source.definitionId);
    expect((await query(`select 1 from config.secret_shredding`)).length).toBe(0);
  });

  it('webhook configurations keep their secrets like connectors do: masked, versioned, shredded on an auth switch and on delete', async () => {
    const signing = canary('wh-signing-0123456789');
    const header = canary('wh-header');
    const bearer = canary('wh-bearer');
    const webhook = (
      await config.createWebhookConfig({
        workspaceId,
        name: 'events',
        configJson: JSON.stringify({ url: 'https://hooks.example.test/coffer', signing_secret: signing, headers: [{ name: 'X-Key', value: header }], auth: { type: 'bearer', token: bearer } }),
      })
    ).webhook!;
    expect(JSON.parse(webhook.configJson)).toEqual({
      url: 'https://hooks.example.test/coffer',
      signing_secret: '**********',
      headers: [{ name: 'X-Key', value: expect.stringMatching(/^\*{10}#[0-9a-f]{16}$/) }],
      auth: { type: 'bearer', token: '**********' },
    });
    await expect(config.getActor({ actorId: webhook.webhookId })).rejects.toMatchObject({ code: 'not_found' });
    expect((await config.listWebhookConfigs({ workspaceId, page: undefined })).webhooks.map((w) => w.webhookId)).toEqual([webhook.webhookId]);
    const bad = (await config.createWebhookConfig({ workspaceId, name: 'bad', configJson: JSON.stringify({ url: 'ftp://x', signing_secret: 'short' }) }).catch((e: unknown) => e)) as Error;
    expect(bad.message).toMatch(/\$\.url/);
    expect(bad.message).toMatch(/\$\.signing_secret/);

    const partial = await storedPartial(webhook.webhookId);
    const bearerCoordinate = partial.auth.token._secret as string;
    const masked = JSON.parse(webhook.configJson);
    const switched = (
      await config.updateWebhookConfig({
        webhookId: webhook.webhookId,
        expectedVersion: webhook.version,
        name: 'events',
        configJson: JSON.stringify({ ...masked, auth: { type: 'basic', username: 'coffer', password: canary('wh-basic') } }),
      })
    ).webhook!;
    const after = await storedPartial(webhook.webhookId);
    expect(after.signing_secret._secret).toBe(partial.signing_secret._secret);
    expect(after.headers[0].value._secret).toBe(partial.headers[0].value._secret);
    await eventually(async () => (await states([bearerCoordinate])).get(bearerCoordinate) === 'destroyed', 'the bearer token to be shredded');

    await config.deleteWebhookConfig({ webhookId: switched.webhookId, expectedVersion: switched.version });
    const all = [after.signing_secret._secret, after.headers[0].value._secret, after.auth.password._secret] as string[];
    await eventually(async () => [...(await states(all)).values()].every((s) => s === 'destroyed'), 'every webhook secret to be shredded');
    await expect(config.getWebhookConfig({ webhookId: webhook.webhookId })).rejects.toMatchObject({ code: 'not_found' });
    const stored = JSON.stringify(await query('select data from config.events'));
    for (const c of [signing, header, bearer]) expect(stored).not.toContain(c);
    const published = await query<{ type: string }>(`select headers->>'ce-type' as type from config.outbox where headers->>'ce-subject' = $1 order by position`, [webhook.webhookId]);
    expect(published.map((p) => p.type)).toEqual(['coffer.config.v1.WebhookConfigCreated', 'coffer.config.v1.WebhookConfigUpdated', 'coffer.config.v1.WebhookConfigDeleted']);
  });

  it('checks and discovers with an unsaved config: its secrets become ephemeral coordinates, the sync worker answers', async () => {
    const good = canary('check-token');
    const http = createServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${good}`) return void res.writeHead(401).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ id: 1, name: 'alpha', score: 1.5 }]));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/records`;
    try {
      const spec = { type: 'object', required: ['url', 'api_token'], properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } } };
      const definitionId = (
        await config.registerConnectorDefinition({ name: 'checked', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) })
      ).definition!.definitionId;
      const ok = await config.checkConfig({ workspaceId, definitionId, configJson: JSON.stringify({ url, api_token: good }) });
      expect(ok).toMatchObject({ succeeded: true, message: '' });
      const wrong = canary('check-wrong');
      const denied = await config.checkConfig({ workspaceId, definitionId, configJson: JSON.stringify({ url, api_token: wrong }) });
      expect(denied.succeeded).toBe(false);
      expect(denied.message).toContain('HTTP 401');
      expect(denied.message).not.toContain(wrong);
      const discovered = await config.discoverSchema({ workspaceId, definitionId, configJson: JSON.stringify({ url, api_token: good }) });
      expect(discovered.succeeded).toBe(true);
      expect(JSON.parse(discovered.catalogJson)).toEqual({
        streams: [{ name: 'records', json_schema: { type: 'object', properties: { id: { type: ['integer'] }, name: { type: ['string'] }, score: { type: ['number'] } } } }],
      });
      const invalid = await config.checkConfig({ workspaceId, definitionId, configJson: JSON.stringify({ url }) }).catch((e: unknown) => e as { code: string; message: string });
      expect(invalid).toMatchObject({ code: 'invalid_argument' });

      const ephemeral = await query<{ hours: number }>(
        `select extract(epoch from (expires_at - created_at)) / 3600 as hours from secrets.secret_versions where workspace_id = '00000000-0000-0000-0000-000000000000'`,
      );
      expect(ephemeral.length).toBe(3);
      for (const e of ephemeral) expect(Number(e.hours)).toBeCloseTo(2, 1);
      // Destroyed as soon as each check answered; the expiry is only the backstop.
      const states = await query<{ state: string }>(`select state from secrets.secret_versions where workspace_id = '00000000-0000-0000-0000-000000000000'`);
      expect(states.map((r) => r.state)).toEqual(['destroyed', 'destroyed', 'destroyed']);
      const stored = JSON.stringify(await query(`select data from config.events where stream_id like 'check-%'`));
      expect(stored).not.toContain(good);
      expect(stored).not.toContain(wrong);
      expect(stored).toContain('_secret');
    } finally {
      await new Promise<void>((r) => http.close(() => r()));
    }
  });
  it("array items keep their own secrets: of two items (a source's applications, a destination's extra headers), the second sent back alone with its masks keeps its secrets", async () => {
    const specOf = (file: string) => (JSON.parse(readFileSync(join(specsDir, file), 'utf8')) as { connectionSpecification: unknown }).connectionSpecification;
    const cases = [
      {
        file: 'source-onesignal.spec.json',
        actorType: configV1.ActorType.ACTOR_TYPE_SOURCE,
        list: ['applications'],
        secretField: 'app_api_key',
        item: (label: string) => ({ app_name: label, app_id: canary(`${label}-id`), app_api_key: canary(`${label}-key`) }),
        rest: () => ({ user_auth_key: canary('os-user'), start_date: '2024-01-01T00:00:00Z', outcome_names: 'os__click.count' }) as Record<string, any>,
      },
      {
        file: 'destination-weaviate.spec.json',
        actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION,
        list: ['indexing', 'additional_headers'],
        secretField: 'value',
        item: (label: string) => ({ header_key: `X-${label}`, value: canary(`${label}-header`) }),
        rest: () => generateConfig(specOf('destination-weaviate.spec.json'), { secret: () => canary('wv') }) as Record<string, any>,
      },
    ];
    const at = (root: Record<string, any>, path: string[]) => path.reduce((node, k) => node[k], root) as Record<string, any>[];
    const withList = (root: Record<string, any>, path: string[], items: unknown[]) => {
      const copy = structuredClone(root);
      path.slice(0, -1).reduce((node, k) => (node[k] ??= {}), copy)[path.at(-1)!] = items;
      return JSON.stringify(copy);
    };
    for (const c of cases) {
      const definitionId = (
        await config.registerConnectorDefinition({ name: c.file, actorType: c.actorType, connector: `airbyte:${c.file.replace('.spec.json', '')}`, specJson: JSON.stringify(specOf(c.file)) })
      ).definition!.definitionId;
      const rest = c.rest();
      const actor = (await config.createActor({ workspaceId, definitionId, name: c.file, configJson: withList(rest, c.list, [c.item('first'), c.item('second')]) })).actor!;
      const stored = at(await storedPartial(actor.actorId), c.list);
      const [firstCoordinates, secondCoordinates] = [secretCoordinates(stored[0]).sort(), secretCoordinates(stored[1]).sort()];
      const read = JSON.parse((await config.getActor({ actorId: actor.actorId })).actor!.configJson) as Record<string, any>;
      const readItems = at(read, c.list);
      expect(readItems[1]![c.secretField]).toMatch(/^\*{10}#[0-9a-f]{16}$/);

      // What cannot be decided is refused, naming the field, and changes nothing.
      const field = `config_json:$.${c.list.join('.')}[0].${c.secretField}`;
      const plain = withList(read, c.list, [{ ...readItems[1], [c.secretField]: '**********' }]);
      await expect(config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: c.file, configJson: plain })).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field }] });
      const other = (await config.createActor({ workspaceId, definitionId, name: `${c.file} other`, configJson: withList(rest, c.list, [c.item('other')]) })).actor!;
      const foreignMask = at(JSON.parse(other.configJson), c.list)[0]![c.secretField];
      const foreign = withList(read, c.list, [{ ...readItems[1], [c.secretField]: foreignMask }]);
      await expect(config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: c.file, configJson: foreign })).rejects.toMatchObject({ code: 'invalid_argument', details: [{ field }] });
      const twice = withList(read, c.list, [readItems[1], readItems[1]]);
      await expect(config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: c.file, configJson: twice })).rejects.toMatchObject({
        code: 'invalid_argument',
        details: [{ field: field.replace('[0]', '[1]') }],
      });

      // The second item alone, as read: it keeps its own secrets; the first item's are shredded.
      const updated = (await config.updateActor({ actorId: actor.actorId, expectedVersion: actor.version, name: c.file, configJson: withList(read, c.list, [readItems[1]]) })).actor!;
      expect(updated.version).toBe(actor.version + 1);
      expect(at(JSON.parse(updated.configJson), c.list)).toEqual([readItems[1]]);
      expect(secretCoordinates(at(await storedPartial(actor.actorId), c.list)[0]).sort()).toEqual(secondCoordinates);
      await eventually(async () => [...(await states(firstCoordinates)).values()].every((s) => s === 'destroyed'), "the first item's secrets to be shredded");
      expect([...(await states([...secondCoordinates, ...secretCoordinates(await storedPartial(other.actorId))])).values()].every((s) => s === 'active')).toBe(true);
    }
  }, 120_000);
});
