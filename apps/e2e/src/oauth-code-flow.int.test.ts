import * as grpc from '@grpc/grpc-js';
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import Provider from 'oidc-provider';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1, configV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { call, ok, rawClient, type Answer } from './raw-grpc';

// The server-side OAuth 2.0 authorization code flow against a real OAuth server (oidc-provider on
// 127.0.0.1, PKCE required for every authorization request, refresh-token rotation on), with the
// four Coffer processes, real Postgres and NATS. The provider's login and consent are answered by
// an interaction handler of the test, as a user who signs in and approves would.

const CLIENT_ID = `coffer-code-flow-${randomUUID()}`;
const CLIENT_SECRET = `canary-code-flow-secret-${randomUUID()}`;
const REDIRECT_URI = 'https://app.example.com/oauth/callback';
const records = Array.from({ length: 7 }, (_, i) => ({ id: i + 1, name: `row-${i + 1}` }));
const secret = { type: 'string', airbyte_secret: true };
const sha256hex = (v: string) => createHash('sha256').update(v).digest('hex');

describe('the OAuth authorization code flow: config starts it, the sync worker exchanges the code, the tokens go straight to secrets', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let server: Server;
  let provider: Provider;
  let issuer = '';
  let nc: NatsConnection;
  let auth: authV1.AuthServiceClient;
  let config: configV1.ConfigServiceClient;
  let operator = '';
  let sourceDefinitionId = '';
  let destinationDefinitionId = '';
  const tenantA = { workspaceId: '', token: '' };
  const tenantB = { workspaceId: '', token: '' };
  // Every token value the provider issued (access and refresh tokens, authorization codes).
  const issued: string[] = [];
  const codeGrants: string[] = [];
  const grantErrors: string[] = [];
  // Everything Coffer answered, and every NATS message of the test's namespace.
  const answers: unknown[] = [];
  // The source the first flow creates, and its connection.
  const created = { actorId: '', connectionId: '' };
  const published: string[] = [];

  async function query<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as T[];
    } finally {
      await client.end();
    }
  }

  async function rpc<Res>(method: string, req: unknown, token: string): Promise<Answer<Res>> {
    const answer = await call<Res>(config, method, req, token);
    answers.push(answer);
    return answer;
  }

  async function tenant(name: string): Promise<{ workspaceId: string; token: string }> {
    const opAuth = (await ok(call<authV1.IssueServiceTokenResponse>(auth, 'issueServiceToken', { ...stack.credentials.clients.operator, audience: 'auth' }))).accessToken;
    const organizationId = (await ok(call<authV1.CreateOrganizationResponse>(auth, 'createOrganization', { name }, opAuth))).organization!.organizationId;
    const app = await ok(call<authV1.CreateApplicationResponse>(auth, 'createApplication', { organizationId, name: `${name} platform`, allowedOrigins: [] }, opAuth));
    const appToken = (await ok(call<authV1.IssueApplicationTokenResponse>(auth, 'issueApplicationToken', { clientId: app.application!.clientId, clientSecret: app.clientSecret }))).accessToken;
    const scoped = await ok(call<authV1.IssueScopedTokenResponse>(auth, 'issueScopedToken', { externalUserId: `${name}-user`, createWorkspace: true }, appToken));
    return { workspaceId: scoped.workspaceId, token: scoped.accessToken };
  }

  async function start(who: { workspaceId: string; token: string }, name: string): Promise<string> {
    const answer = await ok(
      rpc<configV1.StartOAuthFlowResponse>(
        'startOAuthFlow',
        { workspaceId: who.workspaceId, definitionId: sourceDefinitionId, name, configJson: JSON.stringify({ url: `${issuer}/api/records` }), redirectUri: REDIRECT_URI, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
        who.token,
      ),
    );
    return answer.authorizationUrl;
  }

  /**
   * What a user's browser does: follows the provider's redirects (keeping its cookies) through
   * sign-in and consent until the provider sends it to the redirect URI; returns that URL's query.
   */
  async function authorize(url: string): Promise<URLSearchParams> {
    const cookies = new Map<string, string>();
    let next = url;
    for (let hop = 0; hop < 12; hop++) {
      if (next.startsWith(REDIRECT_URI)) return new URL(next).searchParams;
      const res = await fetch(next, { redirect: 'manual', headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') } });
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(';');
        const at = pair!.indexOf('=');
        cookies.set(pair!.slice(0, at), pair!.slice(at + 1));
      }
      const location = res.headers.get('location');
      if (!location) throw new Error(`the provider answered HTTP ${res.status} without a redirect`);
      next = new URL(location, next).toString();
    }
    throw new Error('too many redirects');
  }

  const actorsCount = async () => (await query<{ n: number }>('select count(*)::int as n from config.actors'))[0]!.n;
  const flowOf = async (state: string) =>
    (await query<{ actor_id: string; partial_config: Record<string, { _secret: string }>; verifier_coordinate: string; outcome: string | null }>('select actor_id, partial_config, verifier_coordinate, outcome from config.oauth_flows where state_hash = $1', [sha256hex(state)]))[0]!;
  const activeVersionsOf = async (ownerId: string) =>
    (await query<{ n: number }>("select count(*)::int as n from secrets.secret_versions where owner_id = $1 and state = 'active'", [ownerId]))[0]!.n;
  const baseOf = (c: string) => c.slice(0, c.lastIndexOf('_v'));

  async function syncStatus(connectionId: string): Promise<string> {
    const { jobId } = await ok(rpc<configV1.RequestSyncResponse>('requestSync', { connectionId }, tenantA.token));
    let job: { status: string } | undefined;
    await eventually('the sync ended', async () => {
      [job] = await query<{ status: string }>('select status from sync.sync_jobs where job_id = $1', [jobId]);
      return Boolean(job && ['succeeded', 'failed', 'cancelled'].includes(job.status));
    }, 90_000);
    return job!.status;
  }

  async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await sleep(200);
    }
  }

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e_code_flow');
    ns = uniqueNamespace();
    nc = await connect({ servers: testNatsUrl() });
    const sub = nc.subscribe(`${ns.subjectRoot}.>`);
    void (async () => {
      for await (const m of sub) published.push(`${m.subject} ${JSON.stringify(m.headers ? [...m.headers.keys()].map((k) => m.headers!.get(k)) : [])} ${m.string()}`);
    })();
    server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    issuer = `http://127.0.0.1:${port}`;
    provider = new Provider(issuer, {
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], redirect_uris: [REDIRECT_URI] }],
      features: { devInteractions: { enabled: false }, revocation: { enabled: true } },
      // Every authorization request must carry an S256 code challenge, confidential client or not.
      pkce: { required: () => true },
      rotateRefreshToken: true,
      issueRefreshToken: async () => true,
      scopes: ['openid', 'offline_access'],
      findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub }) }),
      ttl: { AccessToken: 3600, AuthorizationCode: 60, RefreshToken: 86_400, Grant: 86_400, IdToken: 3600, Interaction: 600, Session: 600 },
    });
    provider.on('grant.success', (ctx) => {
      if (ctx.oidc.params?.grant_type === 'authorization_code') codeGrants.push(String(ctx.oidc.params.code ?? ''));
    });
    provider.on('grant.error', (_ctx, err) => grantErrors.push(err.error ?? 'error'));
    provider.on('access_token.saved', (t) => issued.push(t.jti));
    provider.on('refresh_token.saved', (t) => issued.push(t.jti));
    provider.on('authorization_code.saved', (t) => issued.push(t.jti));
    const oidc = provider.callback();
    server.on('request', (req, res) => {
      void (async () => {
        if (req.url?.startsWith('/interaction/')) {
          // The user signs in as one account and approves what the client asks.
          const details = await provider.interactionDetails(req, res);
          const accountId = `user-${details.uid}`;
          const grant = new provider.Grant({ accountId, clientId: CLIENT_ID });
          grant.addOIDCScope('openid offline_access');
          const grantId = await grant.save();
          return provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
        }
        if (req.url?.startsWith('/api/records')) {
          const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
          const found = token ? await provider.AccessToken.find(token) : undefined;
          if (!found) return void res.writeHead(401).end();
          return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(records));
        }
        oidc(req, res);
      })().catch(() => res.writeHead(500).end());
    });
    const dbUrl = new URL(db.url);
    stack = await startStack({
      databaseUrl: db.url,
      natsUrl: testNatsUrl(),
      namespace: ns,
      egressAllow: [`127.0.0.1:${port}`, `${dbUrl.hostname}:${dbUrl.port || 5432}`],
      serviceEnv: { config: { CONFIG_OAUTH_REDIRECT_URIS: `${REDIRECT_URI},https://other.example.com/cb`, CONFIG_SHRED_RETRY_SECONDS: '1' } },
    });
    auth = rawClient(authV1.AuthServiceClient, stack.services.auth.address, authV1);
    config = rawClient(configV1.ConfigServiceClient, stack.services.config.address, configV1);
    operator = (await ok(call<authV1.IssueServiceTokenResponse>(auth, 'issueServiceToken', { ...stack.credentials.clients.operator, audience: 'config' }))).accessToken;
    Object.assign(tenantA, await tenant('alpha'));
    Object.assign(tenantB, await tenant('beta'));
    const sourceSpec = {
      type: 'object',
      required: ['url'],
      properties: { url: { type: 'string' }, client_id: secret, client_secret: secret, refresh_token: secret, access_token: secret, token_expiry_date: secret },
      'x-coffer-oauth': { authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token`, scopes: ['openid', 'offline_access'] },
    };
    sourceDefinitionId = (await ok(call<configV1.RegisterConnectorDefinitionResponse>(config, 'registerConnectorDefinition', { name: 'OAuth API', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(sourceSpec) }, operator))).definition!.definitionId;
    const destinationSpec = {
      type: 'object',
      properties: { host: { type: 'string' }, port: { type: 'integer' }, database: { type: 'string' }, username: { type: 'string' }, password: secret, schema: { type: 'string' }, table: { type: 'string' } },
    };
    destinationDefinitionId = (await ok(call<configV1.RegisterConnectorDefinitionResponse>(config, 'registerConnectorDefinition', { name: 'Postgres', actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION, connector: 'builtin:postgres', specJson: JSON.stringify(destinationSpec) }, operator))).definition!.definitionId;
  }, 240_000);

  afterAll(async () => {
    auth?.close();
    config?.close();
    await stack?.stop();
    await nc?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  it('the full flow stores the tokens at secrets as the new actor\'s coordinates, and a sync uses them', async () => {
    const url = new URL(await start(tenantA, 'code flow source'));
    expect(url.origin + url.pathname).toBe(`${issuer}/auth`);
    expect(url.searchParams.get('response_type')).toBe('code');
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('redirect_uri')).toBe(REDIRECT_URI);
    expect(url.searchParams.get('scope')).toBe('openid offline_access');
    expect(url.toString()).not.toContain(CLIENT_SECRET);

    const back = await authorize(url.toString());
    expect(back.get('state')).toBe(url.searchParams.get('state'));
    const code = back.get('code')!;
    expect(code).toBeTruthy();
    const before = codeGrants.length;
    const done = await ok(rpc<configV1.CompleteOAuthFlowResponse>('completeOAuthFlow', { state: back.get('state'), code }, tenantA.token));
    expect(codeGrants.length - before).toBe(1);
    const actor = done.actor!;
    expect(actor.workspaceId).toBe(tenantA.workspaceId);
    expect(actor.actorType).toBe(configV1.ActorType.ACTOR_TYPE_SOURCE);
    expect(JSON.parse(actor.configJson)).toEqual({ url: `${issuer}/api/records`, client_id: '**********', client_secret: '**********', refresh_token: '**********', access_token: '**********', token_expiry_date: '**********' });

    // Stored as coordinates of the actor's own workspace, version 1 each, owned by the actor.
    const [row] = await query<{ partial_config: Record<string, { _secret: string }> }>('select partial_config from config.actors where actor_id = $1', [actor.actorId]);
    for (const f of ['client_id', 'client_secret', 'refresh_token', 'access_token', 'token_expiry_date']) {
      expect(row!.partial_config[f]!._secret).toMatch(new RegExp(`^coffer_workspace_${tenantA.workspaceId}_secret_[0-9a-f-]+_v1$`));
    }
    // The verifier was used once and is shredded; nothing of the flow stays queued.
    const flow = await flowOf(back.get('state')!);
    expect(flow.actor_id).toBe(actor.actorId);
    expect(flow.outcome).toBe('completed');
    await eventually('the verifier shredded', async () => (await query<{ state: string }>('select state from secrets.secret_versions where coordinate = $1', [flow.verifier_coordinate]))[0]?.state === 'destroyed');
    expect(await activeVersionsOf(actor.actorId)).toBe(5);
    expect((await query('select * from config.secret_shredding where actor_id = $1', [actor.actorId])).length).toBe(0);

    const got = await ok(rpc<configV1.GetActorResponse>('getActor', { actorId: actor.actorId }, tenantA.token));
    expect(JSON.parse(got.actor!.configJson).access_token).toBe('**********');

    // A sync with the stored credential: the resource API accepts only tokens the provider issued.
    const u = new URL(db.url);
    const destinationId = (await ok(rpc<configV1.CreateActorResponse>('createActor', {
      workspaceId: tenantA.workspaceId,
      definitionId: destinationDefinitionId,
      name: 'dest',
      configJson: JSON.stringify({ host: u.hostname, port: Number(u.port || 5432), database: db.name, username: decodeURIComponent(u.username || 'postgres'), password: u.password ? decodeURIComponent(u.password) : 'unused', schema: 'code_flow_dest', table: 'rows' }),
    }, tenantA.token))).actor!.actorId;
    const connectionId = (await ok(rpc<configV1.CreateConnectionResponse>('createConnection', { workspaceId: tenantA.workspaceId, sourceId: actor.actorId, destinationId, name: 'code flow' }, tenantA.token))).connection!.connectionId;
    expect(await syncStatus(connectionId)).toBe('succeeded');
    expect((await query<{ n: number }>('select count(*)::int as n from code_flow_dest.rows'))[0]!.n).toBe(records.length);
    Object.assign(created, { actorId: actor.actorId, connectionId });
  }, 180_000);

  it('authorizes an existing source again: the tokens become the next versions of its fields, the replaced client is shredded', async () => {
    expect(created.actorId).toBeTruthy();
    const [before] = await query<{ partial_config: Record<string, { _secret: string }> }>('select partial_config from config.actors where actor_id = $1', [created.actorId]);
    const oldClient = baseOf(before!.partial_config.client_secret!._secret);
    const refused = await rpc('startOAuthFlow', { workspaceId: tenantA.workspaceId, actorId: created.actorId, name: 'renamed', redirectUri: REDIRECT_URI, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }, tenantA.token);
    expect(refused.status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(refused.fields).toEqual(['name']);
    // Another tenant cannot reach the actor.
    expect((await rpc('startOAuthFlow', { workspaceId: tenantB.workspaceId, actorId: created.actorId, redirectUri: REDIRECT_URI, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }, tenantB.token)).status).toBe(grpc.status.NOT_FOUND);
    const url = (await ok(rpc<configV1.StartOAuthFlowResponse>('startOAuthFlow', { workspaceId: tenantA.workspaceId, actorId: created.actorId, redirectUri: REDIRECT_URI, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }, tenantA.token))).authorizationUrl;
    const back = await authorize(url);
    const grants = codeGrants.length;
    const done = await ok(rpc<configV1.CompleteOAuthFlowResponse>('completeOAuthFlow', { state: back.get('state'), code: back.get('code') }, tenantA.token));
    expect(codeGrants.length - grants).toBe(1);
    expect(done.actor).toMatchObject({ actorId: created.actorId, name: 'code flow source', version: 2 });
    expect(JSON.parse(done.actor!.configJson).refresh_token).toBe('**********');
    const [after] = await query<{ partial_config: Record<string, { _secret: string }>; version: number }>('select partial_config, version from config.actors where actor_id = $1', [created.actorId]);
    for (const f of ['refresh_token', 'access_token', 'token_expiry_date']) {
      expect(after!.partial_config[f]!._secret).toBe(`${baseOf(before!.partial_config[f]!._secret)}_v2`);
    }
    expect(baseOf(after!.partial_config.client_secret!._secret)).not.toBe(oldClient);
    await eventually('the replaced client secret shredded', async () => (await query('select 1 from secrets.secret_versions where base_coordinate = $1 and state = \'active\'', [oldClient])).length === 0);
    expect((await query('select * from config.secret_shredding where actor_id = $1', [created.actorId])).length).toBe(0);
    const events = await query<{ type: string }>('select type from config.events where stream_id = $1 order by stream_version', [`actor-${created.actorId}`]);
    expect(events.map((e) => e.type)).toEqual(['ActorCreated', 'ActorConfigUpdated']);
    expect(await syncStatus(created.connectionId)).toBe('succeeded');
  }, 180_000);

  it('PKCE is in force: the provider refuses an authorization request without a code challenge', async () => {
    const url = new URL(`${issuer}/auth`);
    for (const [k, v] of Object.entries({ response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope: 'openid', state: 'x' })) url.searchParams.set(k, v);
    const back = await authorize(url.toString());
    expect(back.get('error')).toBe('invalid_request');
    expect(back.get('code')).toBeNull();
  });

  it('a replayed state is refused and writes nothing', async () => {
    const back = await authorize(await start(tenantA, 'replayed'));
    const first = await ok(rpc<configV1.CompleteOAuthFlowResponse>('completeOAuthFlow', { state: back.get('state'), code: back.get('code') }, tenantA.token));
    expect(first.actor!.actorId).toBeTruthy();
    const actors = await actorsCount();
    const grants = codeGrants.length;
    const again = await rpc('completeOAuthFlow', { state: back.get('state'), code: back.get('code') }, tenantA.token);
    expect(again.status).toBe(grpc.status.FAILED_PRECONDITION);
    expect(again.fields).toEqual(['state']);
    expect(again.message).toMatch(/already used/);
    expect(await actorsCount()).toBe(actors);
    expect(codeGrants.length).toBe(grants);
  });

  it("another workspace's caller cannot complete the flow, and does not use it up", async () => {
    const back = await authorize(await start(tenantA, 'bound to alpha'));
    const actors = await actorsCount();
    const stolen = await rpc('completeOAuthFlow', { state: back.get('state'), code: back.get('code') }, tenantB.token);
    expect(stolen.status).toBe(grpc.status.NOT_FOUND);
    expect(stolen.fields).toEqual(['state']);
    // The operator is a caller too, and not this flow's.
    expect((await rpc('completeOAuthFlow', { state: back.get('state'), code: back.get('code') }, operator)).status).toBe(grpc.status.NOT_FOUND);
    expect(await actorsCount()).toBe(actors);
    expect((await flowOf(back.get('state')!)).outcome).toBeNull();
    const mine = await ok(rpc<configV1.CompleteOAuthFlowResponse>('completeOAuthFlow', { state: back.get('state'), code: back.get('code') }, tenantA.token));
    expect(mine.actor!.workspaceId).toBe(tenantA.workspaceId);
  });

  it('an unknown state is refused', async () => {
    const answer = await rpc('completeOAuthFlow', { state: 'no-such-state', code: 'x' }, tenantA.token);
    expect(answer.status).toBe(grpc.status.NOT_FOUND);
    expect(answer.fields).toEqual(['state']);
  });

  it('an expired state is refused, writes nothing, and its secrets are shredded once its hold ends', async () => {
    const back = await authorize(await start(tenantA, 'expired'));
    const state = back.get('state')!;
    // The state's lifetime is at least a minute: the test moves its expiry instead of waiting.
    await query('update config.oauth_flows set expires_at = now() - interval \'1 second\' where state_hash = $1', [sha256hex(state)]);
    const actors = await actorsCount();
    const grants = codeGrants.length;
    const answer = await rpc('completeOAuthFlow', { state, code: back.get('code') }, tenantA.token);
    expect(answer.status).toBe(grpc.status.FAILED_PRECONDITION);
    expect(answer.fields).toEqual(['state']);
    expect(answer.message).toMatch(/expired/);
    expect(await actorsCount()).toBe(actors);
    expect(codeGrants.length).toBe(grants);
    const flow = await flowOf(state);
    expect((await query('select 1 from config.actors where actor_id = $1', [flow.actor_id])).length).toBe(0);
    // Its secrets are held for shredding; moving the hold shows the shredder takes them all.
    await query('update config.secret_shredding set next_attempt_at = now() where actor_id = $1', [flow.actor_id]);
    await eventually('the flow\'s secrets shredded', async () => (await activeVersionsOf(flow.actor_id)) === 0);
  });

  it('a wrong code fails at the provider with invalid_grant: no actor, no token written, the flow\'s secrets shredded', async () => {
    const back = await authorize(await start(tenantA, 'wrong code'));
    const state = back.get('state')!;
    const actors = await actorsCount();
    const errors = grantErrors.length;
    const answer = await rpc('completeOAuthFlow', { state, code: `wrong-${randomUUID()}` }, tenantA.token);
    expect(answer.status).toBe(grpc.status.FAILED_PRECONDITION);
    expect(answer.message).toMatch(/invalid_grant/);
    expect(grantErrors.slice(errors)).toEqual(['invalid_grant']);
    expect(await actorsCount()).toBe(actors);
    const flow = await flowOf(state);
    expect(flow.outcome).toMatch(/^exchange failed/);
    for (const f of ['refresh_token', 'access_token', 'token_expiry_date']) {
      expect((await query('select 1 from secrets.secret_versions where base_coordinate = $1', [baseOf(flow.partial_config[f]!._secret)])).length).toBe(0);
    }
    await eventually('the flow\'s secrets shredded', async () => (await activeVersionsOf(flow.actor_id)) === 0);
    // The state is used up: the right code cannot follow.
    const late = await rpc('completeOAuthFlow', { state, code: back.get('code') }, tenantA.token);
    expect(late.status).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('an error from the provider ends the flow without asking the token endpoint', async () => {
    const url = await start(tenantA, 'denied');
    const state = new URL(url).searchParams.get('state')!;
    const grants = codeGrants.length;
    const answer = await rpc('completeOAuthFlow', { state, error: 'access_denied' }, tenantA.token);
    expect(answer.status).toBe(grpc.status.FAILED_PRECONDITION);
    expect(answer.fields).toEqual(['error']);
    expect(codeGrants.length).toBe(grants);
    expect((await flowOf(state)).outcome).toBe('refused by the provider');
  });

  it('bad requests name the field', async () => {
    const base = { workspaceId: tenantA.workspaceId, definitionId: sourceDefinitionId, name: 'x', configJson: JSON.stringify({ url: `${issuer}/api/records` }), redirectUri: REDIRECT_URI, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET };
    const cases: [Record<string, unknown>, string][] = [
      [{ redirectUri: 'https://evil.example.com/cb' }, 'redirect_uri'],
      [{ clientSecret: '' }, 'client_secret'],
      [{ configJson: JSON.stringify({ url: 'x', refresh_token: 'mine' }) }, 'config_json:$.refresh_token'],
    ];
    for (const [change, field] of cases) {
      const answer = await rpc('startOAuthFlow', { ...base, ...change }, tenantA.token);
      expect(answer.status, field).toBe(grpc.status.INVALID_ARGUMENT);
      expect(answer.fields).toEqual([field]);
    }
    // Another tenant's workspace is not found, as for any other call.
    expect((await rpc('startOAuthFlow', base, tenantB.token)).status).toBe(grpc.status.NOT_FOUND);
  });

  it('no client secret, token or code in any answer, log line, stored event or NATS message', async () => {
    await sleep(1000);
    const values = [CLIENT_SECRET, ...issued].filter((v) => v.length >= 16);
    expect(values.length).toBeGreaterThan(10);
    const output = stack.output();
    const said = JSON.stringify(answers);
    const events = JSON.stringify(await query("select data, metadata from config.events union all select data, metadata from sync.events union all select data, metadata from secrets.events"));
    const tables = JSON.stringify(await query('select * from config.oauth_flows')) + JSON.stringify(await query('select partial_config from config.actors'));
    const nats = published.join('\n');
    expect(nats).toContain('SourceCreated');
    for (const v of values) {
      expect(said).not.toContain(v);
      expect(output).not.toContain(v);
      expect(events).not.toContain(v);
      expect(tables).not.toContain(v);
      expect(nats).not.toContain(v);
    }
    expect(output).toContain('OAuth authorization code exchanged; tokens stored');
  });
});
