import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1, configV1, syncV1 } from '@coffer/contracts';
import { generateDevCertificates, startStack, type Stack } from '@coffer/cli';
import { createPromiseClient, mtlsChannelCredentials, type MtlsMaterial } from '@coffer/rpc';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';

const canary = `canary-mtls-${Math.random().toString(36).slice(2)}`;

function material(tls: { caFile: string }, pair: { certFile: string; keyFile: string }): MtlsMaterial {
  return { ca: readFileSync(tls.caFile), cert: readFileSync(pair.certFile), key: readFileSync(pair.keyFile) };
}

describe('mutual TLS on every port: identities from certificates, service to service over TLS', () => {
  let db: TestDatabase;
  let stack: Stack;
  let http: Server;
  let httpUrl = '';
  let rogueDir = '';
  const ns = uniqueNamespace();

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e_mtls');
    http = createServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${canary}`) return void res.writeHead(401).end('{}');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ id: 1, name: 'over tls' }]));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    httpUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/records`;
    const dbUrl = new URL(db.url);
    stack = await startStack({
      databaseUrl: db.url,
      natsUrl: testNatsUrl(),
      namespace: ns,
      tls: true,
      // The HTTP edge too, a client of auth and config with a certificate of its own.
      edge: true,
      // The test's HTTP source and Postgres are on loopback, which the sync worker refuses unless allowed.
      egressAllow: [`127.0.0.1:${(http.address() as AddressInfo).port}`, `${dbUrl.hostname}:${dbUrl.port || 5432}`],
    });
    rogueDir = await mkdtemp(join(tmpdir(), 'coffer-rogue-ca-'));
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
    if (rogueDir) await rm(rogueDir, { recursive: true, force: true });
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  const operatorTls = () => material(stack.tls!, stack.tls!.certificates.operator!);
  const configClient = (credentials: grpc.ChannelCredentials, tokenProvider?: () => Promise<string>) =>
    createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, { credentials, tokenProvider, deadlineMs: 10_000 });

  it('refuses plaintext clients and clients without a certificate from the CA, on every port', async () => {
    const ca = readFileSync(stack.tls!.caFile);
    const rogue = await generateDevCertificates(rogueDir, ['operator']);
    const attempts: Record<string, grpc.ChannelCredentials> = {
      plaintext: grpc.credentials.createInsecure(),
      'TLS without a client certificate': grpc.credentials.createSsl(ca),
      'a certificate from another CA': grpc.credentials.createSsl(ca, readFileSync(rogue.certificates.operator!.keyFile), readFileSync(rogue.certificates.operator!.certFile)),
    };
    for (const [name, credentials] of Object.entries(attempts)) {
      for (const service of ['auth', 'config', 'secrets', 'sync-worker'] as const) {
        const client = createPromiseClient(authV1.AuthServiceClient, stack.services[service].address, { credentials, deadlineMs: 3_000 });
        const err = await client.getJwks({}).then(() => undefined, (e: { code: string }) => e);
        client.close();
        expect(err?.code, `${name} at ${service}`).toBe('unavailable');
      }
    }
  });

  it('takes the operator identity from its certificate, and refuses a service token of another service', async () => {
    const credentials = mtlsChannelCredentials(operatorTls());
    const byCertificate = configClient(credentials);
    const ws = await byCertificate.createWorkspace({ name: 'over mTLS', organizationId: '' });
    expect(ws.workspace!.workspaceId).toMatch(/^[0-9a-f-]{36}$/);

    // A token of config's identity presented over the operator's certificate is refused.
    const auth = createPromiseClient(authV1.AuthServiceClient, stack.services.auth.address, { credentials });
    const { clientId, clientSecret } = stack.credentials.clients.config;
    const configToken = (await auth.issueServiceToken({ clientId, clientSecret, audience: 'config' })).accessToken;
    const mismatched = configClient(credentials, async () => configToken);
    await expect(mismatched.listWorkspaces({ page: undefined })).rejects.toMatchObject({ code: 'permission_denied', message: 'the service token does not match the client certificate' });
    for (const c of [byCertificate, mismatched, auth]) c.close();
  });

  it('the edge forwards Connect JSON calls to auth and config over mutual TLS', async () => {
    const operatorAuth = createPromiseClient(authV1.AuthServiceClient, stack.services.auth.address, { credentials: mtlsChannelCredentials(operatorTls()) });
    const org = await operatorAuth.createOrganization({ name: 'edge over mTLS' });
    const app = await operatorAuth.createApplication({ organizationId: org.organization!.organizationId, name: 'platform', allowedOrigins: [] });
    operatorAuth.close();
    expect(stack.edge!.env).toMatchObject({ COFFER_TLS_CERT_FILE: stack.tls!.certificates.edge!.certFile });
    const post = async (path: string, body: unknown, token?: string) => {
      const res = await fetch(`http://${stack.edge!.address}/${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    // To auth: the application's credentials for a token.
    const issued = await post('coffer.auth.v1.AuthService/IssueApplicationToken', { clientId: app.application!.clientId, clientSecret: app.clientSecret });
    expect(issued.status, JSON.stringify(issued.body)).toBe(200);
    // To config, with that token: a workspace made and listed.
    const token = issued.body.accessToken as string;
    const made = await post('coffer.config.v1.ConfigService/CreateWorkspace', { name: 'through the edge' }, token);
    expect(made.status, JSON.stringify(made.body)).toBe(200);
    const listed = await post('coffer.config.v1.ConfigService/ListWorkspaces', {}, token);
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    expect((listed.body.workspaces as Array<{ workspaceId: string }>).map((w) => w.workspaceId)).toContain(made.body.workspace.workspaceId);
  });

  it('runs a sync with every hop on mutual TLS: config→secrets, sync-worker→config and secrets', async () => {
    const credentials = mtlsChannelCredentials(operatorTls());
    const config = configClient(credentials);
    const workspaceId = (await config.createWorkspace({ name: 'sync over mTLS', organizationId: '' })).workspace!.workspaceId;
    const spec = (properties: object, required: string[]) => JSON.stringify({ type: 'object', required, properties });
    const sourceDef = (
      await config.registerConnectorDefinition({
        name: 'api', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json',
        specJson: spec({ url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } }, ['url', 'api_token']),
      })
    ).definition!.definitionId;
    const destDef = (
      await config.registerConnectorDefinition({
        name: 'pg', actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION, connector: 'builtin:postgres',
        specJson: spec(
          { host: { type: 'string' }, port: { type: 'integer' }, database: { type: 'string' }, username: { type: 'string' }, password: { type: 'string', airbyte_secret: true }, schema: { type: 'string' }, table: { type: 'string' } },
          ['host', 'port', 'database', 'username', 'password', 'schema', 'table'],
        ),
      })
    ).definition!.definitionId;
    const sourceId = (await config.createActor({ workspaceId, definitionId: sourceDef, name: 'api', configJson: JSON.stringify({ url: httpUrl, api_token: canary }) })).actor!.actorId;
    const dbUrl = new URL(db.url);
    const destinationId = (
      await config.createActor({
        workspaceId, definitionId: destDef, name: 'warehouse',
        configJson: JSON.stringify({ host: dbUrl.hostname, port: Number(dbUrl.port || 5432), database: db.name, username: decodeURIComponent(dbUrl.username || 'postgres'), password: 'unused-with-trust-auth', schema: 'mtls_dest', table: 'records' }),
      })
    ).actor!.actorId;
    const connectionId = (await config.createConnection({ workspaceId, sourceId, destinationId, name: 'over mTLS' })).connection!.connectionId;
    const jobId = (await config.requestSync({ connectionId })).jobId;

    const sync = createPromiseClient(syncV1.SyncServiceClient, stack.services['sync-worker'].address, { credentials });
    let status = syncV1.SyncJobStatus.SYNC_JOB_STATUS_UNSPECIFIED;
    let reason = '';
    for (let i = 0; i < 300 && status !== syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED && status !== syncV1.SyncJobStatus.SYNC_JOB_STATUS_FAILED; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const job = await sync.getSyncJob({ jobId }).catch((err: { code: string }) => (err.code === 'not_found' ? undefined : Promise.reject(err)));
      status = job?.job?.status ?? status;
      reason = job?.job?.failureReason ?? '';
    }
    expect(reason).toBe('');
    expect(status).toBe(syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const rows = await client.query('select count(*)::int as n from mtls_dest.records');
    await client.end();
    expect(rows.rows[0].n).toBe(1);
    expect(stack.output()).not.toContain(canary);
    for (const c of [config, sync]) c.close();
  });

  it('refuses a certificate identity once the service identity is revoked', async () => {
    const credentials = mtlsChannelCredentials(operatorTls());
    const auth = createPromiseClient(authV1.AuthServiceClient, stack.services.auth.address, { credentials });
    const config = configClient(credentials);
    await config.listWorkspaces({ page: undefined });
    const start = Date.now();
    await auth.revokeServiceIdentity({ clientId: 'operator' });
    let code = '';
    while (Date.now() - start < 5_000) {
      code = await config.listWorkspaces({ page: undefined }).then(() => 'ok', (err: { code: string }) => err.code);
      if (code !== 'ok') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(code).toBe('unauthenticated');
    expect(Date.now() - start).toBeLessThan(1_000);
    for (const c of [auth, config]) c.close();
  });
});
