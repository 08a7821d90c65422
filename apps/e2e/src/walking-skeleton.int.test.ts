import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { configV1, secretsV1, streamName, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type PromiseClient } from '@coffer/rpc';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { healthStatus, reflectedServices } from './grpc-probes';

const canaries = {
  apiTokenV1: `canary-api-v1-${Math.random().toString(36).slice(2)}`,
  apiTokenV2: `canary-api-v2-${Math.random().toString(36).slice(2)}`,
  dbPassword: `canary-dbpw-${Math.random().toString(36).slice(2)}`,
};
const allCanaries = Object.values(canaries);
const cliMain = join(dirname(fileURLToPath(import.meta.url)), '../../cli/src/main.ts');
const records = [
  { id: 1, name: 'alpha' },
  { id: 2, name: 'beta' },
  { id: 3, name: 'gamma' },
];

const sourceSpec = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  type: 'object',
  required: ['url', 'api_token'],
  additionalProperties: false,
  properties: {
    url: { type: 'string', format: 'uri', order: 0 },
    api_token: { type: 'string', airbyte_secret: true, order: 1 },
  },
};

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

function rawCall<Req, Res>(
  client: grpc.Client,
  method: string,
  req: Req,
  metadata: grpc.Metadata,
): Promise<{ status: grpc.status; message: string; res?: Res }> {
  return new Promise((resolve) => {
    (client as unknown as Record<string, (r: Req, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Res) => void) => void>)[method]!(
      req,
      metadata,
      { deadline: Date.now() + 10_000 },
      (err, res) => resolve(err ? { status: err.code, message: err.details } : { status: grpc.status.OK, message: '', res }),
    );
  });
}

async function allStreamMessages(nc: NatsConnection, ns: MessagingNamespace): Promise<{ stream: string; subject: string; headers: Record<string, string>; data: string }[]> {
  const jsm = await jetstreamManager(nc);
  const out = [];
  for await (const si of jsm.streams.list()) {
    if (!si.config.name.startsWith(`${ns.streamPrefix}_`)) continue;
    for (let seq = si.state.first_seq; seq <= si.state.last_seq && si.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(si.config.name, { seq }).catch(() => null);
      if (!m) continue;
      const headers: Record<string, string> = {};
      for (const [k, v] of m.header ?? []) headers[k] = v.join(',');
      out.push({ stream: si.config.name, subject: m.subject, headers, data: new TextDecoder().decode(m.data) });
    }
  }
  return out;
}

async function dumpDatabase(url: string): Promise<{ schema: string; table: string; rows: string[] }[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ table_schema: string; table_name: string }>(
      `select table_schema, table_name from information_schema.tables
       where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE'`,
    );
    const dump = [];
    for (const t of tables) {
      const { rows } = await client.query<{ row: string }>(`select t::text as row from "${t.table_schema}"."${t.table_name}" t`);
      dump.push({ schema: t.table_schema, table: t.table_name, rows: rows.map((r) => r.row) });
    }
    return dump;
  } finally {
    await client.end();
  }
}

function expectNoCanary(text: string, where: string): void {
  for (const c of allCanaries) {
    if (text.includes(c)) throw new Error(`canary ${c.slice(0, 14)}… found in ${where}`);
  }
}

describe('walking skeleton: four services, one sync, no secret escapes', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let nc: NatsConnection;
  let http: Server;
  let httpUrl: string;
  let config: PromiseClient<configV1.ConfigServiceClient> & { close(): void };
  const authHeadersSeen: string[] = [];
  let rogue: Server;
  let rogueUrl = '';
  let rogueRequests = 0;

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e');
    ns = uniqueNamespace();
    nc = await connect({ servers: testNatsUrl() });
    http = createServer((req, res) => {
      authHeadersSeen.push(req.headers.authorization === `Bearer ${canaries.apiTokenV2}` ? 'v2' : 'other');
      if (req.headers.authorization !== `Bearer ${canaries.apiTokenV2}`) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(records));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    httpUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/records`;
    // A loopback server the allow-list does not name, standing for an internal service or a metadata endpoint.
    rogue = createServer((_req, res) => {
      rogueRequests++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ internal: 'secret-of-the-host' }]));
    });
    await new Promise<void>((r) => rogue.listen(0, '127.0.0.1', r));
    rogueUrl = `http://127.0.0.1:${(rogue.address() as AddressInfo).port}/latest/meta-data/`;
    const dbUrl = new URL(db.url);
    stack = await startStack({
      databaseUrl: db.url,
      natsUrl: testNatsUrl(),
      namespace: ns,
      // The source server and the test Postgres only: every other loopback port stays refused.
      egressAllow: [`127.0.0.1:${(http.address() as AddressInfo).port}`, `${dbUrl.hostname}:${dbUrl.port || 5432}`],
    });
    const operator = stack.credentials.clients.operator;
    config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, {
      tokenProvider: createServiceTokenProvider({ authAddress: stack.services.auth.address, ...operator, audience: 'config' }),
    });
  }, 180_000);

  afterAll(async () => {
    config?.close();
    await stack?.stop();
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
    await new Promise<void>((r) => (rogue ? rogue.close(() => r()) : r()));
    await nc?.close();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  let workspaceId = '';
  let sourceId = '';
  let destinationId = '';
  let sourceDefinitionId = '';

  it('every service answers Health/Check with SERVING and lists its services through reflection', async () => {
    const expected = {
      auth: 'coffer.auth.v1.AuthService',
      secrets: 'coffer.secrets.v1.SecretsService',
      config: 'coffer.config.v1.ConfigService',
      'sync-worker': 'coffer.sync.v1.SyncService',
    } as const;
    for (const [name, service] of Object.entries(expected)) {
      const address = stack.services[name as keyof typeof expected].address;
      expect(await healthStatus(address)).toBe('SERVING');
      expect(await healthStatus(address, service)).toBe('SERVING');
      const listed = await reflectedServices(address);
      expect(listed).toContain(service);
      expect(listed).toContain('grpc.health.v1.Health');
    }
  });

  it('creates a workspace, registers specs, creates a source with a canary and reads it back masked', async () => {
    workspaceId = (await config.createWorkspace({ name: 'e2e', organizationId: '' })).workspace!.workspaceId;
    sourceDefinitionId = (
      await config.registerConnectorDefinition({
        name: 'HTTP JSON API',
        actorType: configV1.ActorType.ACTOR_TYPE_SOURCE,
        connector: 'builtin:http-json',
        specJson: JSON.stringify(sourceSpec),
      })
    ).definition!.definitionId;
    const destinationDefinitionId = (
      await config.registerConnectorDefinition({
        name: 'Postgres',
        actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION,
        connector: 'builtin:postgres',
        specJson: JSON.stringify(destinationSpec),
      })
    ).definition!.definitionId;

    const source = (
      await config.createActor({
        workspaceId,
        definitionId: sourceDefinitionId,
        name: 'api',
        configJson: JSON.stringify({ url: httpUrl, api_token: canaries.apiTokenV1 }),
      })
    ).actor!;
    sourceId = source.actorId;
    expect(JSON.parse(source.configJson)).toEqual({ url: httpUrl, api_token: '**********' });
    const read = (await config.getActor({ actorId: sourceId })).actor!;
    expect(JSON.parse(read.configJson)).toEqual({ url: httpUrl, api_token: '**********' });

    const dbUrl = new URL(db.url);
    destinationId = (
      await config.createActor({
        workspaceId,
        definitionId: destinationDefinitionId,
        name: 'warehouse',
        configJson: JSON.stringify({
          host: dbUrl.hostname,
          port: Number(dbUrl.port || 5432),
          database: db.name,
          username: decodeURIComponent(dbUrl.username || 'postgres'),
          password: canaries.dbPassword,
          schema: 'e2e_dest',
          table: 'records',
        }),
      })
    ).actor!.actorId;
  });

  it('updates the source with a second canary: same base, _v2; a masked update keeps it', async () => {
    const before = await storedPartial(sourceId);
    const v1 = before.api_token._secret;
    expect(v1).toMatch(new RegExp(`^coffer_workspace_${workspaceId}_secret_[0-9a-f-]{36}_v1$`));
    const updated = (
      await config.updateActor({ actorId: sourceId, expectedVersion: 0, name: 'api', configJson: JSON.stringify({ url: httpUrl, api_token: canaries.apiTokenV2 }) })
    ).actor!;
    expect(JSON.parse(updated.configJson).api_token).toBe('**********');
    const v2 = (await storedPartial(sourceId)).api_token._secret;
    expect(v2).toBe(v1.replace(/_v1$/, '_v2'));
    await config.updateActor({ actorId: sourceId, expectedVersion: 0, name: 'api', configJson: JSON.stringify({ url: httpUrl, api_token: '**********' }) });
    expect((await storedPartial(sourceId)).api_token._secret).toBe(v2);
  });

  it('requests a sync: SyncSucceeded is published and the rows land in the destination table', async () => {
    const connectionId = (await config.createConnection({ workspaceId, sourceId, destinationId, name: 'api → warehouse' })).connection!.connectionId;
    const { jobId } = await config.requestSync({ connectionId });
    const js = jetstream(nc);
    const consumer = await js.consumers.get(streamName(ns, 'sync'));
    const seen: string[] = [];
    const deadline = Date.now() + 60_000;
    let outcome: { type: string; data: Record<string, unknown> } | undefined;
    while (!outcome && Date.now() < deadline) {
      const batch = await consumer.fetch({ max_messages: 20, expires: 1000 });
      for await (const m of batch) {
        const type = m.headers?.get('ce-type') ?? '';
        seen.push(type);
        const data = m.json<Record<string, unknown>>();
        if (data.jobId === jobId && /SyncSucceeded|SyncFailed/.test(type)) outcome = { type, data };
      }
    }
    expect(outcome, `saw ${seen.join(', ')}`).toBeDefined();
    expect(outcome!.type, JSON.stringify(outcome!.data)).toBe('coffer.sync.v1.SyncSucceeded');
    expect(Number(outcome!.data.recordsSynced)).toBe(records.length);
    expect(authHeadersSeen).toContain('v2');

    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query<{ data: { id: number; name: string } }>('select data from e2e_dest.records order by id');
    await client.end();
    expect(rows.map((r) => r.data)).toEqual(records);
  });

  it('refuses egress to a loopback address the allow-list does not name: the sync fails naming the rule, a check says why, the server receives nothing', async () => {
    const rogueSource = (
      await config.createActor({ workspaceId, definitionId: sourceDefinitionId, name: 'rogue', configJson: JSON.stringify({ url: rogueUrl, api_token: canaries.apiTokenV2 }) })
    ).actor!.actorId;
    const connectionId = (await config.createConnection({ workspaceId, sourceId: rogueSource, destinationId, name: 'rogue → warehouse' })).connection!.connectionId;
    const { jobId } = await config.requestSync({ connectionId });
    const consumer = await jetstream(nc).consumers.get(streamName(ns, 'sync'));
    const deadline = Date.now() + 60_000;
    let outcome: { type: string; data: Record<string, unknown> } | undefined;
    while (!outcome && Date.now() < deadline) {
      const batch = await consumer.fetch({ max_messages: 50, expires: 1000 });
      for await (const m of batch) {
        const type = m.headers?.get('ce-type') ?? '';
        const data = m.json<Record<string, unknown>>();
        if (data.jobId === jobId && /SyncSucceeded|SyncFailed/.test(type)) outcome = { type, data };
      }
    }
    expect(outcome, 'no outcome for the rogue sync').toBeDefined();
    expect(outcome!.type, JSON.stringify(outcome!.data)).toBe('coffer.sync.v1.SyncFailed');
    expect(outcome!.data.reason).toMatch(/^builtin:http-json: egress to 127\.0\.0\.1:\d+ refused: loopback address \(127\.0\.0\.0\/8\)/);

    const checked = await config.checkConfig({ workspaceId, definitionId: sourceDefinitionId, configJson: JSON.stringify({ url: rogueUrl.replace('127.0.0.1', '2130706433'), api_token: canaries.apiTokenV2 }) });
    expect(checked.succeeded).toBe(false);
    expect(checked.message).toMatch(/refused: loopback address/);
    expect(rogueRequests).toBe(0);

    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query<{ n: number }>("select count(*)::int as n from e2e_dest.records where data ? 'internal'");
    await client.end();
    expect(rows[0]!.n).toBe(0);
  });

  it('a plain JetStream consumer receives SecretVersionWritten v1 and v2 of the base with CloudEvents headers', async () => {
    const js = jetstream(nc);
    const consumer = await js.consumers.get(streamName(ns, 'secrets'));
    const written: { headers: Record<string, string>; data: Record<string, unknown> }[] = [];
    const batch = await consumer.fetch({ max_messages: 200, expires: 2000 });
    for await (const m of batch) {
      expectNoCanary(new TextDecoder().decode(m.data), `message ${m.subject}`);
      const headers: Record<string, string> = {};
      for (const [k, v] of m.headers ?? []) headers[k] = v.join(',');
      expectNoCanary(JSON.stringify(headers), `headers of ${m.subject}`);
      if (headers['ce-type'] === 'coffer.secrets.v1.SecretVersionWritten') written.push({ headers, data: m.json() });
    }
    const base = (await storedPartial(sourceId)).api_token._secret.replace(/_v2$/, '');
    const ofBase = written.filter((w) => w.data.baseCoordinate === base);
    expect(ofBase.map((w) => Number(w.data.version)).sort()).toEqual([1, 2]);
    for (const w of ofBase) {
      expect(w.headers['ce-specversion']).toBe('1.0');
      expect(w.headers['ce-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(w.headers['ce-source']).toBeTruthy();
      expect(w.headers['ce-subject']).toBe(w.data.coordinate);
      expect(Number.isNaN(Date.parse(w.headers['ce-time']!))).toBe(false);
      expect(w.data).not.toHaveProperty('ciphertext');
      expect(w.data).not.toHaveProperty('value');
    }
  });

  it('HydrateConfig refuses config’s token (PERMISSION_DENIED) and no token (UNAUTHENTICATED)', async () => {
    const partial = JSON.stringify(await storedPartial(sourceId));
    const raw = new secretsV1.SecretsServiceClient(stack.services.secrets.address, grpc.credentials.createInsecure());
    try {
      const none = await rawCall(raw, 'hydrateConfig', { workspaceId, partialConfigJson: partial, reason: 'e2e' }, new grpc.Metadata());
      expect(none.status).toBe(grpc.status.UNAUTHENTICATED);
      const configToken = await createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.config, audience: 'secrets' })();
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${configToken}`);
      const denied = await rawCall<unknown, { configJson: string }>(raw, 'hydrateConfig', { workspaceId, partialConfigJson: partial, reason: 'e2e' }, md);
      expect(denied.status).toBe(grpc.status.PERMISSION_DENIED);
      expect(denied.res).toBeUndefined();
    } finally {
      raw.close();
    }
  });

  it('a config that breaks the spec fails with INVALID_ARGUMENT naming the path and leaves nothing behind', async () => {
    const before = await countEvents();
    const raw = new configV1.ConfigServiceClient(stack.services.config.address, grpc.credentials.createInsecure());
    const token = await createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'config' })();
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    try {
      const bad = await rawCall(raw, 'createActor', { workspaceId, definitionId: sourceDefinitionId, name: 'bad', configJson: JSON.stringify({ url: httpUrl, api_token: 12345 }) }, md);
      expect(bad.status).toBe(grpc.status.INVALID_ARGUMENT);
      expect(bad.message).toContain('$.api_token');
      const missing = await rawCall(raw, 'createActor', { workspaceId, definitionId: sourceDefinitionId, name: 'bad', configJson: JSON.stringify({ api_token: canaries.apiTokenV1 }) }, md);
      expect(missing.status).toBe(grpc.status.INVALID_ARGUMENT);
      expect(missing.message).toContain('url');
      expectNoCanary(missing.message, 'error message');
    } finally {
      raw.close();
    }
    expect(await countEvents()).toEqual(before);
  });

  it('deletes a source: its secrets are crypto-shredded, reads say NOT_FOUND, a stale update is ABORTED', async () => {
    const temp = (
      await config.createActor({ workspaceId, definitionId: sourceDefinitionId, name: 'temp', configJson: JSON.stringify({ url: httpUrl, api_token: canaries.apiTokenV1 }) })
    ).actor!;
    const stale = await config
      .updateActor({ actorId: temp.actorId, expectedVersion: temp.version + 1, name: 'temp', configJson: JSON.stringify({ url: httpUrl, api_token: '**********' }) })
      .catch((e: unknown) => e as { code: string });
    expect((stale as { code: string }).code).toBe('version_conflict');
    const coordinate = (await storedPartial(temp.actorId)).api_token._secret;
    await config.deleteActor({ actorId: temp.actorId, expectedVersion: temp.version });
    const gone = await config.getActor({ actorId: temp.actorId }).catch((e: unknown) => e as { code: string });
    expect((gone as { code: string }).code).toBe('not_found');
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const versions = await client.query<{ state: string }>('select state from secrets.secret_versions where coordinate = $1', [coordinate]);
      expect(versions.rows.map((r) => r.state)).toEqual(['destroyed']);
      const keys = await client.query('select 1 from secrets.data_keys where coordinate = $1', [coordinate]);
      expect(keys.rowCount).toBe(0);
    } finally {
      await client.end();
    }
  });

  it('no canary in any Coffer schema, any COFFER_* stream message, or any process output', async () => {
    await new Promise((r) => setTimeout(r, 500));
    const dump = await dumpDatabase(db.url);
    const schemas = new Set(dump.map((t) => t.schema));
    for (const s of ['auth', 'secrets', 'config', 'sync']) expect(schemas).toContain(s);
    for (const t of dump) expectNoCanary(t.rows.join('\n'), `table ${t.schema}.${t.table}`);
    const secretRows = dump.find((t) => t.schema === 'secrets' && t.table === 'events')!.rows;
    expect(secretRows.length).toBeGreaterThanOrEqual(3);

    const messages = await allStreamMessages(nc, ns);
    const streams = new Set(messages.map((m) => m.stream));
    for (const s of ['secrets', 'config', 'sync'] as const) expect(streams).toContain(streamName(ns, s));
    for (const m of messages) expectNoCanary(`${m.subject}\n${JSON.stringify(m.headers)}\n${m.data}`, `stream ${m.stream} ${m.subject}`);

    const output = stack.output();
    expect(output.length).toBeGreaterThan(0);
    expectNoCanary(output, 'process output');
  });

  it('coffer verify-audit finds every chain intact, then reports the one secrets event a superuser changed', async () => {
    const cli = (...args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', cliMain, 'verify-audit', ...args], { env: { ...process.env, DATABASE_URL: db.url } });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.on('close', (code) => resolve({ code, out }));
      });
    const intact = await cli();
    expect(intact.out).toMatch(/secrets: \d+ events, chain intact/);
    expect(intact.code, intact.out).toBe(0);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    let target = '';
    try {
      target = (await client.query<{ id: string }>(`select event_id::text as id from secrets.events where type = 'SecretVersionWritten' order by global_position limit 1 offset 1`)).rows[0]!.id;
      await client.query('alter table secrets.events disable trigger events_immutable');
      await client.query(`update secrets.events set metadata = jsonb_set(metadata, '{actor}', '"someone-else"') where event_id = $1`, [target]);
      await client.query('alter table secrets.events enable trigger events_immutable');
    } finally {
      await client.end();
    }
    const broken = await cli('secrets');
    expect(broken.code).toBe(1);
    expect(broken.out).toContain(`BROKEN at global position`);
    expect(broken.out).toContain(target);
  });

  async function storedPartial(actorId: string): Promise<{ api_token: { _secret: string } }> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ partial: string }>(
        `select data::text as partial from config.events where stream_id like '%' || $1 and type in ('ActorCreated', 'ActorConfigUpdated') order by global_position desc limit 1`,
        [actorId],
      );
      const data = JSON.parse(rows[0]!.partial) as { partialConfig?: unknown; config?: unknown };
      return (data.partialConfig ?? data.config) as { api_token: { _secret: string } };
    } finally {
      await client.end();
    }
  }

  async function countEvents(): Promise<Record<string, number>> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const out: Record<string, number> = {};
      for (const s of ['config', 'secrets']) {
        out[`${s}.events`] = Number((await client.query(`select count(*) from ${s}.events`)).rows[0].count);
        out[`${s}.outbox`] = Number((await client.query(`select count(*) from ${s}.outbox`)).rows[0].count);
      }
      out['secrets.data_keys'] = Number((await client.query('select count(*) from secrets.data_keys')).rows[0].count);
      return out;
    } finally {
      await client.end();
    }
  }
});
