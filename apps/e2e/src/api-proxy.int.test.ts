import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { authV1, configV1, streamName, syncV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack, type StackService } from '@coffer/cli';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { startOtlpReceiver, type OtlpReceiver } from './otlp-receiver';
import { call, ok, rawClient as client } from './raw-grpc';

const services: StackService[] = ['auth', 'secrets', 'config', 'sync-worker'];
const canary = {
  token: `canary-proxy-token-${randomUUID()}`,
  apiKey: `canary-proxy-key-${randomUUID()}`,
  password: `canary-proxy-pw-${randomUUID()}`,
};
const USERNAME = 'proxy-user';
const MAX_RESPONSE = 64 * 1024;
const held: ServerResponse[] = [];
const CLIENT_ID = 'coffer-proxy';
const CLIENT_SECRET = `canary-proxy-client-secret-${randomUUID()}`;
// Every OAuth token the provider issues or the test plants: none may reach an answer, log, event or span.
const oauthTokens: string[] = [];

/** What the local API saw: each request's method, path and whether its credential was right. */
interface Seen {
  method: string;
  url: string;
  authorized: boolean;
  callerHeader?: string;
}

function credentialOf(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization ?? '';
  if (auth === `Bearer ${canary.token}`) return canary.token;
  if (auth.startsWith('Basic ')) {
    const pair = Buffer.from(auth.slice(6), 'base64').toString('utf8');
    if (pair === `${USERNAME}:${canary.password}`) return pair;
  }
  if (req.headers['x-api-key'] === canary.apiKey) return canary.apiKey;
  return undefined;
}

describe('API proxy over real processes: the credential is injected, echoed back and redacted everywhere', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let nc: NatsConnection;
  let receiver: OtlpReceiver;
  let api: Server;
  let auth: authV1.AuthServiceClient;
  let config: configV1.ConfigServiceClient;
  let base = '';
  const seen: Seen[] = [];
  const answers: string[] = [];
  const tenants = { a: { workspaceId: '', scoped: '', app: '' }, b: { workspaceId: '', scoped: '', app: '' } };
  const actors = { bearer: '', apiKey: '', basic: '', undeclared: '', metadata: '' };
  let opConfig = '';
  let oauthServer: Server;
  let provider: Provider;
  let issuer = '';
  const refreshes: string[] = [];
  const oauthSeen: { authorized: boolean }[] = [];
  let oauthDefinition = '';

  async function tenant(name: string) {
    const { clientId, clientSecret } = stack.credentials.clients.operator;
    const opAuth = (await ok(call<authV1.IssueServiceTokenResponse>(auth, 'issueServiceToken', { clientId, clientSecret, audience: 'auth' }))).accessToken;
    const organizationId = (await ok(call<authV1.CreateOrganizationResponse>(auth, 'createOrganization', { name }, opAuth))).organization!.organizationId;
    const app = await ok(call<authV1.CreateApplicationResponse>(auth, 'createApplication', { organizationId, name: `${name} platform`, allowedOrigins: [] }, opAuth));
    const appToken = (await ok(call<authV1.IssueApplicationTokenResponse>(auth, 'issueApplicationToken', { clientId: app.application!.clientId, clientSecret: app.clientSecret }))).accessToken;
    const scoped = await ok(call<authV1.IssueScopedTokenResponse>(auth, 'issueScopedToken', { externalUserId: `${name}-user`, createWorkspace: true }, appToken));
    return { workspaceId: scoped.workspaceId, scoped: scoped.accessToken, app: appToken };
  }

  const proxy = (request: Partial<configV1.ProxyRequestRequest>, token = tenants.a.scoped) =>
    call<configV1.ProxyRequestResponse>(config, 'proxyRequest', { method: 'GET', path: '/echo', ...request }, token).then((a) => {
      if (a.res) answers.push(JSON.stringify({ ...a.res, body: Buffer.from(a.res.body).toString('utf8') }));
      answers.push(a.message);
      return a;
    });

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e_proxy');
    ns = uniqueNamespace();
    nc = await connect({ servers: testNatsUrl() });
    receiver = await startOtlpReceiver();
    // The API checks the credential, then echoes it back in every form a careless API might.
    api = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const credential = credentialOf(req);
        const callerHeader = req.headers['x-caller'];
        seen.push({ method: req.method ?? '', url: req.url ?? '', authorized: credential !== undefined, callerHeader: typeof callerHeader === 'string' ? callerHeader : undefined });
        if (!credential) return void res.writeHead(401, { 'www-authenticate': 'Bearer realm="api"' }).end('{"error":"unauthorized"}');
        if (req.url === '/api/gzip') {
          return void res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync(JSON.stringify({ credential })));
        }
        if (req.url === '/api/redirect') return void res.writeHead(302, { location: `http://127.0.0.1:1/elsewhere?token=${encodeURIComponent(credential)}` }).end();
        if (req.url === '/api/large') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('x'.repeat(MAX_RESPONSE + 1));
        // Never answered: the proxy's own timeout ends the call.
        if (req.url === '/api/silent') return void held.push(res);
        if (req.url === '/api/missing') return void res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'no such thing', echoed: credential }));
        res.writeHead(200, {
          'content-type': 'application/json',
          'set-cookie': `session=${credential}; HttpOnly`,
          'x-echo-credential': credential,
          'x-echo-base64': Buffer.from(credential).toString('base64'),
          'x-echo-url': encodeURIComponent(credential),
          'x-request-id': 'req-1',
        });
        res.end(
          JSON.stringify({
            method: req.method,
            url: req.url,
            authorization: req.headers.authorization ?? null,
            apiKey: req.headers['x-api-key'] ?? null,
            credential,
            base64: Buffer.from(credential).toString('base64'),
            urlEncoded: encodeURIComponent(credential),
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      });
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(api.address() as AddressInfo).port}/api`;
    // A real OAuth 2.0 server (refresh-token rotation) and, beside it, an API that takes only the
    // access tokens it issued and echoes the one it got.
    oauthServer = createServer();
    await new Promise<void>((r) => oauthServer.listen(0, '127.0.0.1', r));
    issuer = `http://127.0.0.1:${(oauthServer.address() as AddressInfo).port}`;
    provider = new Provider(issuer, {
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], redirect_uris: ['https://app.example.com/callback'] }],
      features: { devInteractions: { enabled: false } },
      rotateRefreshToken: true,
      issueRefreshToken: async () => true,
      scopes: ['openid', 'offline_access'],
      ttl: { AccessToken: 3600, RefreshToken: 86_400, Grant: 86_400, IdToken: 3600 },
    });
    provider.on('grant.success', (ctx) => {
      if (ctx.oidc.params?.grant_type === 'refresh_token') refreshes.push(String(ctx.oidc.entities.RefreshToken?.grantId ?? ''));
    });
    provider.on('access_token.saved', (t) => oauthTokens.push(t.jti));
    provider.on('refresh_token.saved', (t) => oauthTokens.push(t.jti));
    const oidc = provider.callback();
    oauthServer.on('request', (req, res) => {
      if (!req.url?.startsWith('/resource/')) return void oidc(req, res);
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      void (async () => {
        const found = token ? await provider.AccessToken.find(token) : undefined;
        oauthSeen.push({ authorized: Boolean(found) });
        if (!found) return void res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end();
        res.writeHead(200, { 'content-type': 'application/json', 'x-echo-credential': token! }).end(JSON.stringify({ token, url: req.url }));
      })();
    });
    stack = await startStack({
      databaseUrl: db.url,
      natsUrl: testNatsUrl(),
      namespace: ns,
      edge: true,
      logLevel: 'debug',
      egressAllow: ['127.0.0.1'],
      serviceEnv: {
        ...Object.fromEntries(services.map((s) => [s, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint }])),
        'sync-worker': { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, SYNC_WORKER_PROXY_MAX_RESPONSE_BYTES: String(MAX_RESPONSE), SYNC_WORKER_PROXY_TIMEOUT_MS: '8000' },
      },
    });
    auth = client(authV1.AuthServiceClient, stack.services.auth.address, authV1);
    config = client(configV1.ConfigServiceClient, stack.services.config.address, configV1);
    const { clientId, clientSecret } = stack.credentials.clients.operator;
    opConfig = (await ok(call<authV1.IssueServiceTokenResponse>(auth, 'issueServiceToken', { clientId, clientSecret, audience: 'config' }))).accessToken;
    tenants.a = await tenant('proxy-a');
    tenants.b = await tenant('proxy-b');
    const properties = {
      api_token: { type: 'string', airbyte_secret: true },
      api_key: { type: 'string', airbyte_secret: true },
      username: { type: 'string' },
      password: { type: 'string', airbyte_secret: true },
    };
    const define = async (name: string, proxyAuth: unknown, baseUrl = base) =>
      (
        await ok(
          call<configV1.RegisterConnectorDefinitionResponse>(
            config,
            'registerConnectorDefinition',
            {
              name,
              actorType: configV1.ActorType.ACTOR_TYPE_SOURCE,
              connector: 'builtin:http-json',
              specJson: JSON.stringify({ type: 'object', properties, ...(proxyAuth !== undefined && { 'x-coffer-proxy': { base_url: baseUrl, auth: proxyAuth } }) }),
            },
            opConfig,
          ),
        )
      ).definition!.definitionId;
    const create = async (definitionId: string, configJson: unknown) =>
      (await ok(call<configV1.CreateActorResponse>(config, 'createActor', { workspaceId: tenants.a.workspaceId, definitionId, name: 'api', configJson: JSON.stringify(configJson) }, tenants.a.scoped))).actor!.actorId;
    actors.bearer = await create(await define('bearer api', { type: 'bearer', token_field: 'api_token' }), { api_token: canary.token });
    actors.apiKey = await create(await define('key api', { type: 'api_key_header', header: 'X-Api-Key', key_field: 'api_key' }), { api_key: canary.apiKey });
    actors.basic = await create(await define('basic api', { type: 'basic', username_field: 'username', password_field: 'password' }), { username: USERNAME, password: canary.password });
    actors.undeclared = await create(await define('no proxy', undefined), { api_token: canary.token });
    actors.metadata = await create(await define('metadata api', { type: 'bearer', token_field: 'api_token' }, 'http://169.254.169.254/latest'), { api_token: canary.token });
    const secret = { type: 'string', airbyte_secret: true };
    oauthDefinition = (
      await ok(
        call<configV1.RegisterConnectorDefinitionResponse>(
          config,
          'registerConnectorDefinition',
          {
            name: 'oauth api',
            actorType: configV1.ActorType.ACTOR_TYPE_SOURCE,
            connector: 'builtin:http-json',
            specJson: JSON.stringify({
              type: 'object',
              properties: { client_id: secret, client_secret: secret, refresh_token: secret, access_token: secret, token_expiry_date: secret },
              'x-coffer-oauth': { token_endpoint: `${issuer}/token`, scopes: ['openid', 'offline_access'] },
              'x-coffer-proxy': { base_url: `${issuer}/resource`, auth: { type: 'oauth2' } },
            }),
          },
          opConfig,
        ),
      )
    ).definition!.definitionId;
  }, 240_000);

  afterAll(async () => {
    auth?.close();
    config?.close();
    await stack?.stop();
    await receiver?.close();
    for (const res of held) res.destroy();
    await new Promise<void>((r) => (api ? api.close(() => r()) : r()));
    await new Promise<void>((r) => (oauthServer ? oauthServer.close(() => r()) : r()));
    await nc?.close();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  it('injects a bearer token, passes the request on, and answers the echoed token redacted in body and headers', async () => {
    const a = await ok(proxy({ actorId: actors.bearer, method: 'POST', path: '/echo?page=2', headers: [{ name: 'X-Caller', value: 'hello' }, { name: 'content-type', value: 'application/json' }], body: Buffer.from('{"q":1}') }));
    expect(a.status).toBe(200);
    const last = seen.at(-1)!;
    expect(last).toMatchObject({ method: 'POST', url: '/api/echo?page=2', authorized: true, callerHeader: 'hello' });
    const body = JSON.parse(Buffer.from(a.body).toString('utf8')) as Record<string, string>;
    expect(body).toMatchObject({ method: 'POST', url: '/api/echo?page=2', body: '{"q":1}', credential: '[REDACTED]', base64: '[REDACTED]', urlEncoded: '[REDACTED]' });
    // The whole header value is a registered derived form: nothing of it is left, not even the scheme.
    expect(body.authorization).toBe('[REDACTED]');
    const headers = new Map(a.headers.map((h) => [h.name, h.value]));
    expect(headers.get('x-echo-credential')).toBe('[REDACTED]');
    expect(headers.get('x-echo-base64')).toBe('[REDACTED]');
    expect(headers.get('x-echo-url')).toBe('[REDACTED]');
    expect(headers.get('x-request-id')).toBe('req-1');
    // A session cookie bound to the credential never reaches the caller.
    expect(headers.has('set-cookie')).toBe(false);
    expect(JSON.stringify(a) + Buffer.from(a.body).toString('utf8')).not.toContain(canary.token);
  });

  it('injects an API-key header and a Basic header, and redacts their echoes (the Basic pair and its base64 too)', async () => {
    const key = await ok(proxy({ actorId: actors.apiKey }));
    expect(key.status).toBe(200);
    expect(JSON.parse(Buffer.from(key.body).toString('utf8'))).toMatchObject({ apiKey: '[REDACTED]', credential: '[REDACTED]' });
    const basic = await ok(proxy({ actorId: actors.basic }));
    expect(basic.status).toBe(200);
    const body = JSON.parse(Buffer.from(basic.body).toString('utf8')) as Record<string, string>;
    expect(body).toMatchObject({ credential: '[REDACTED]', base64: '[REDACTED]', urlEncoded: '[REDACTED]' });
    expect(body.authorization).toBe('[REDACTED]');
    const text = JSON.stringify(basic) + Buffer.from(basic.body).toString('utf8');
    expect(text).not.toContain(canary.password);
    expect(text).not.toContain(Buffer.from(`${USERNAME}:${canary.password}`).toString('base64'));
    expect(seen.slice(-2).every((s) => s.authorized)).toBe(true);
  });

  it('passes the API’s own statuses through, and answers HEAD without a body', async () => {
    const missing = await ok(proxy({ actorId: actors.bearer, path: '/missing' }));
    expect(missing.status).toBe(404);
    expect(JSON.parse(Buffer.from(missing.body).toString('utf8'))).toEqual({ error: 'no such thing', echoed: '[REDACTED]' });
    const head = await ok(proxy({ actorId: actors.bearer, method: 'HEAD', path: '/echo' }));
    expect(head.status).toBe(200);
    expect(Buffer.from(head.body).byteLength).toBe(0);
  });

  it('decompresses a compressed answer to redact it, and answers redirects without following them', async () => {
    const gz = await ok(proxy({ actorId: actors.bearer, path: '/gzip' }));
    expect(JSON.parse(Buffer.from(gz.body).toString('utf8'))).toEqual({ credential: '[REDACTED]' });
    expect(gz.headers.map((h) => h.name)).not.toContain('content-encoding');
    const before = seen.length;
    const moved = await ok(proxy({ actorId: actors.bearer, path: '/redirect' }));
    expect(moved.status).toBe(302);
    expect(moved.headers.find((h) => h.name === 'location')?.value).toBe('http://127.0.0.1:1/elsewhere?token=[REDACTED]');
    expect(seen.length - before).toBe(1);
  });

  it('bounds the answer, times out a silent API, and keeps to the egress policy', async () => {
    const large = await proxy({ actorId: actors.bearer, path: '/large' });
    expect(grpc.status[large.status]).toBe('FAILED_PRECONDITION');
    const silent = await proxy({ actorId: actors.bearer, path: '/silent' });
    expect(grpc.status[silent.status]).toBe('UNAVAILABLE');
    expect(held.length).toBe(1);
    const metadata = await proxy({ actorId: actors.metadata, path: '/meta-data' });
    expect(grpc.status[metadata.status]).toBe('FAILED_PRECONDITION');
    expect(metadata.message).toMatch(/egress to 169\.254\.169\.254:80 refused/);
  });

  it.each([
    ['a parent segment', '../secret'],
    ['a parent segment deeper down', 'echo/../../secret'],
    ['encoded dots', '%2e%2e/secret'],
    ['an encoded slash', 'echo%2f..%2fsecret'],
    ['an absolute URL', 'http://127.0.0.1:1/steal'],
    ['a protocol-relative URL', '//evil.example/steal'],
    ['a backslash', '\\evil.example'],
  ])('refuses a path with %s (INVALID_ARGUMENT naming path) and sends nothing', async (_kind, path) => {
    const before = seen.length;
    const a = await proxy({ actorId: actors.bearer, path });
    expect(grpc.status[a.status]).toBe('INVALID_ARGUMENT');
    expect(a.fields).toEqual(['path']);
    expect(seen.length).toBe(before);
  });

  it('refuses a caller-set Authorization or API-key header, and oversized bodies, naming the field', async () => {
    const authz = await proxy({ actorId: actors.bearer, headers: [{ name: 'Authorization', value: 'Bearer mine' }] });
    expect([grpc.status[authz.status], authz.fields]).toEqual(['INVALID_ARGUMENT', ['headers[0].name']]);
    const key = await proxy({ actorId: actors.apiKey, headers: [{ name: 'x-ok', value: '1' }, { name: 'x-api-key', value: 'mine' }] });
    expect([grpc.status[key.status], key.fields]).toEqual(['INVALID_ARGUMENT', ['headers[1].name']]);
    const big = await proxy({ actorId: actors.bearer, method: 'POST', body: Buffer.alloc(1024 * 1024 + 1, 0x61) });
    expect([grpc.status[big.status], big.fields]).toEqual(['INVALID_ARGUMENT', ['body']]);
    const method = await proxy({ actorId: actors.bearer, method: 'CONNECT' });
    expect([grpc.status[method.status], method.fields]).toEqual(['INVALID_ARGUMENT', ['method']]);
  });

  it('answers another workspace’s actor as one that does not exist, and refuses an actor whose definition declares no proxy', async () => {
    const random = await proxy({ actorId: randomUUID() }, tenants.b.scoped);
    const foreign = await proxy({ actorId: actors.bearer }, tenants.b.scoped);
    expect(grpc.status[foreign.status]).toBe('NOT_FOUND');
    expect([foreign.status, foreign.message, foreign.fields]).toEqual([random.status, random.message, random.fields]);
    // B's application token (another organization) gets the same answer.
    const foreignApp = await proxy({ actorId: actors.bearer }, tenants.b.app);
    expect([foreignApp.status, foreignApp.message]).toEqual([random.status, random.message]);
    // A's own token naming B's workspace: the actor is not in that workspace.
    const wrongWorkspace = await proxy({ actorId: actors.bearer, workspaceId: tenants.b.workspaceId }, tenants.a.app);
    expect(grpc.status[wrongWorkspace.status]).toBe('NOT_FOUND');
    const undeclared = await proxy({ actorId: actors.undeclared });
    expect(grpc.status[undeclared.status]).toBe('FAILED_PRECONDITION');
    expect(seen.filter((s) => s.url.includes('secret')).length).toBe(0);
  });

  it('lets nobody but config ask the sync worker directly, not even the operator', async () => {
    const sync = client(syncV1.SyncServiceClient, stack.services['sync-worker'].address, syncV1);
    const { clientId, clientSecret } = stack.credentials.clients.operator;
    const opSync = (await ok(call<authV1.IssueServiceTokenResponse>(auth, 'issueServiceToken', { clientId, clientSecret, audience: 'sync-worker' }))).accessToken;
    const before = seen.length;
    const direct = await call<syncV1.ProxyRequestResponse>(sync, 'proxyRequest', { workspaceId: tenants.a.workspaceId, actorId: actors.bearer, partialConfigJson: '{}', proxyJson: JSON.stringify({ base_url: base, auth: { type: 'bearer', token_field: 'api_token' } }), method: 'GET', path: '/echo' }, opSync);
    expect(grpc.status[direct.status]).toBe('PERMISSION_DENIED');
    const scoped = await call<syncV1.ProxyRequestResponse>(sync, 'proxyRequest', { workspaceId: tenants.a.workspaceId, actorId: actors.bearer, method: 'GET', path: '/echo' }, tenants.a.scoped);
    expect(grpc.status[scoped.status]).toBe('UNAUTHENTICATED');
    expect(seen.length).toBe(before);
    sync.close();
  });

  it('works through the edge (Connect JSON), with the answer redacted', async () => {
    const res = await fetch(`http://${stack.edge!.address}/coffer.config.v1.ConfigService/ProxyRequest`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tenants.a.scoped}` },
      body: JSON.stringify({ actorId: actors.bearer, method: 'GET', path: '/echo?via=edge' }),
    });
    const text = await res.text();
    answers.push(text);
    expect(res.status, text).toBe(200);
    const answer = JSON.parse(text) as { status: number; body: string };
    expect(answer.status).toBe(200);
    expect(JSON.parse(Buffer.from(answer.body, 'base64').toString('utf8'))).toMatchObject({ url: '/api/echo?via=edge', credential: '[REDACTED]' });
    expect(seen.at(-1)).toMatchObject({ url: '/api/echo?via=edge', authorized: true });
  });

  it('with OAuth declared, a 401 from the API makes one refresh at the provider and one retry; the new token is redacted too', async () => {
    // A grant and refresh token issued by the provider itself; the stored access token is one the API does not know (revoked early).
    const accountId = `user-${randomUUID()}`;
    const client = await provider.Client.find(CLIENT_ID);
    const grant = new provider.Grant({ accountId, clientId: CLIENT_ID });
    grant.addOIDCScope('openid offline_access');
    const grantId = await grant.save();
    const refreshToken = await new provider.RefreshToken({ accountId, client, grantId, scope: 'openid offline_access', gty: 'authorization_code' }).save();
    const stale = `canary-proxy-stale-access-${randomUUID()}`;
    oauthTokens.push(refreshToken, stale);
    const actorId = (
      await ok(
        call<configV1.CreateActorResponse>(
          config,
          'createActor',
          {
            workspaceId: tenants.a.workspaceId,
            definitionId: oauthDefinition,
            name: 'oauth api',
            configJson: JSON.stringify({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, refresh_token: refreshToken, access_token: stale, token_expiry_date: '2999-01-01T00:00:00Z' }),
          },
          tenants.a.scoped,
        ),
      )
    ).actor!.actorId;
    const before = { refreshes: refreshes.length, seen: oauthSeen.length };
    const a = await ok(proxy({ actorId, path: '/me?x=1' }));
    expect(a.status).toBe(200);
    expect(refreshes.length - before.refreshes).toBe(1);
    expect(oauthSeen.slice(before.seen).map((s) => s.authorized)).toEqual([false, true]);
    expect(JSON.parse(Buffer.from(a.body).toString('utf8'))).toEqual({ token: '[REDACTED]', url: '/resource/me?x=1' });
    expect(a.headers.find((h) => h.name === 'x-echo-credential')?.value).toBe('[REDACTED]');
    // The refreshed token is stored and used from now on: a second call needs no refresh.
    const again = await ok(proxy({ actorId, path: '/me' }));
    expect(again.status).toBe(200);
    expect(refreshes.length - before.refreshes).toBe(1);
  });

  it('the canaries appear in no answer, log line, NATS event or span', async () => {
    // Spans are exported in batches: wait until the proxied calls' sync-worker spans have arrived.
    const deadline = Date.now() + 30_000;
    while (!receiver.spans.some((s) => s.service === 'coffer-sync-worker' && s.name.endsWith('SyncService/ProxyRequest')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(receiver.spans.some((s) => s.service === 'coffer-sync-worker' && s.name.endsWith('SyncService/ProxyRequest'))).toBe(true);
    const events: string[] = [];
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    for (const service of ['auth', 'config', 'secrets', 'sync'] as const) {
      const stream = streamName(ns, service);
      // Every message the stream holds now, however long the fetches take on a busy machine.
      const total = (await jsm.streams.info(stream)).state.messages;
      const consumer = await js.consumers.get(stream);
      let got = 0;
      const until = Date.now() + 60_000;
      while (got < total && Date.now() < until) {
        const batch = await consumer.fetch({ max_messages: 500, expires: 2000 });
        for await (const m of batch) {
          got++;
          events.push(m.subject, m.string(), JSON.stringify(m.headers ? [...m.headers.keys()].map((k) => [k, m.headers!.get(k)]) : []));
        }
      }
      expect(got, `messages read from ${stream}`).toBeGreaterThanOrEqual(total);
    }
    expect(events.length).toBeGreaterThan(0);
    const logs = stack.output();
    expect(logs).toContain('proxied an API request');
    const spans = JSON.stringify(receiver.spans);
    expect(oauthTokens.length).toBeGreaterThan(3);
    const forms = [...Object.values(canary), CLIENT_SECRET, ...oauthTokens].flatMap((c) => [c, Buffer.from(c).toString('base64'), encodeURIComponent(c)]);
    forms.push(Buffer.from(`${USERNAME}:${canary.password}`).toString('base64'));
    for (const [where, text] of [['answers', answers.join('\n')], ['logs', logs], ['events', events.join('\n')], ['spans', spans]] as const) {
      for (const f of forms) expect(text.includes(f), `${where} hold a canary form`).toBe(false);
    }
  });
});
