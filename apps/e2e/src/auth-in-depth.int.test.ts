import * as grpc from '@grpc/grpc-js';
import { createHmac, randomUUID } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { authV1, configV1, secretsV1, streamName, syncV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { call, ok, rawClient as client } from './raw-grpc';

const ISSUER = 'coffer-auth';
const ORIGIN = 'https://app.example.com';


const b64url = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

describe('auth in depth: organizations, the token hierarchy, scoping, revocation and refused attacks', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let nc: NatsConnection;
  let auth: authV1.AuthServiceClient;
  let config: configV1.ConfigServiceClient;
  let secrets: secretsV1.SecretsServiceClient;
  let sync: syncV1.SyncServiceClient;
  const op: Record<'auth' | 'config' | 'secrets' | 'sync-worker', string> = { auth: '', config: '', secrets: '', 'sync-worker': '' };
  const issuedSecrets: string[] = [];
  const issuedTokens: string[] = [];

  async function operatorToken(audience: keyof typeof op): Promise<string> {
    const { clientId, clientSecret } = stack.credentials.clients.operator;
    const res = await ok(call<authV1.IssueServiceTokenResponse>(auth, 'issueServiceToken', { clientId, clientSecret, audience }));
    issuedTokens.push(res.accessToken);
    return res.accessToken;
  }

  beforeAll(async () => {
    db = await createTestDatabase('coffer_e2e_auth');
    ns = uniqueNamespace();
    nc = await connect({ servers: testNatsUrl() });
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns });
    auth = client(authV1.AuthServiceClient, stack.services.auth.address, authV1);
    config = client(configV1.ConfigServiceClient, stack.services.config.address, configV1);
    secrets = client(secretsV1.SecretsServiceClient, stack.services.secrets.address, secretsV1);
    sync = client(syncV1.SyncServiceClient, stack.services['sync-worker'].address, syncV1);
    for (const audience of Object.keys(op) as (keyof typeof op)[]) op[audience] = await operatorToken(audience);
  }, 180_000);

  afterAll(async () => {
    for (const c of [auth, config, secrets, sync]) c?.close();
    await stack?.stop();
    await nc?.close();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  // Filled by the first tests, used by the later ones.
  let orgA = '';
  let orgB = '';
  let appA = { clientId: '', clientSecret: '' };
  let appB = { clientId: '', clientSecret: '' };
  let appToken = '';
  let appBToken = '';
  let scopedA = '';
  let workspaceA = '';
  let workspaceB = '';
  let actorA = '';

  async function createApplication(organizationId: string, name: string) {
    const res = await ok(call<authV1.CreateApplicationResponse>(auth, 'createApplication', { organizationId, name, allowedOrigins: [ORIGIN] }, op.auth));
    issuedSecrets.push(res.clientSecret);
    return { clientId: res.application!.clientId, clientSecret: res.clientSecret };
  }

  async function applicationToken(app: { clientId: string; clientSecret: string }): Promise<string> {
    const res = await ok(call<authV1.IssueApplicationTokenResponse>(auth, 'issueApplicationToken', app));
    issuedTokens.push(res.accessToken);
    return res.accessToken;
  }

  it('creates organizations and applications, and issues application (15 min) and scoped (20 min) tokens', async () => {
    orgA = (await ok(call<authV1.CreateOrganizationResponse>(auth, 'createOrganization', { name: 'Org A' }, op.auth))).organization!.organizationId;
    orgB = (await ok(call<authV1.CreateOrganizationResponse>(auth, 'createOrganization', { name: 'Org B' }, op.auth))).organization!.organizationId;
    appA = await createApplication(orgA, 'platform A');
    appB = await createApplication(orgB, 'platform B');
    expect(appA.clientSecret).toMatch(/^coffer_app_secret_/);

    appToken = await applicationToken(appA);
    const appClaims = decodeJwt(appToken);
    expect(decodeProtectedHeader(appToken)).toMatchObject({ alg: 'EdDSA', typ: 'coffer-app+jwt' });
    expect(appClaims.exp! - appClaims.iat!).toBe(15 * 60);
    expect(appClaims).toMatchObject({ iss: ISSUER, sub: appA.clientId, azp: appA.clientId, org: orgA, role: 'org_admin' });

    // A new end user's workspace is made on first use, and found again on the second.
    const scoped = await ok(call<authV1.IssueScopedTokenResponse>(auth, 'issueScopedToken', { externalUserId: 'user-1', createWorkspace: true }, appToken));
    scopedA = scoped.accessToken;
    issuedTokens.push(scopedA);
    workspaceA = scoped.workspaceId;
    expect(scoped.expiresIn).toBe(20 * 60);
    const scopedClaims = decodeJwt(scopedA);
    expect(decodeProtectedHeader(scopedA).typ).toBe('coffer-scoped+jwt');
    expect(scopedClaims.exp! - scopedClaims.iat!).toBe(20 * 60);
    expect(scopedClaims).toMatchObject({ org: orgA, azp: appA.clientId, ws: workspaceA, ext: 'user-1', role: 'workspace_editor' });
    const again = await ok(call<authV1.IssueScopedTokenResponse>(auth, 'issueScopedToken', { externalUserId: 'user-1', createWorkspace: true }, appToken));
    expect(again.workspaceId).toBe(workspaceA);
    const ws = await ok(call<configV1.GetWorkspaceResponse>(config, 'getWorkspace', { workspaceId: workspaceA }, scopedA));
    expect(ws.workspace).toMatchObject({ organizationId: orgA, externalUserId: 'user-1' });
    // Without create_workspace, an unknown end user is NOT_FOUND.
    expect((await call(auth, 'issueScopedToken', { externalUserId: 'user-2' }, appToken)).status).toBe(grpc.status.NOT_FOUND);
  });

  it('keeps a scoped token inside its workspace and an application inside its organization', async () => {
    workspaceB = (await ok(call<configV1.CreateWorkspaceResponse>(config, 'createWorkspace', { name: 'B of org A' }, appToken))).workspace!.workspaceId;
    const definitionId = (
      await ok(
        call<configV1.RegisterConnectorDefinitionResponse>(
          config,
          'registerConnectorDefinition',
          { name: 'notes', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify({ type: 'object', properties: { url: { type: 'string' } } }) },
          op.config,
        ),
      )
    ).definition!.definitionId;
    // The catalog is the operator's: an application cannot register definitions.
    expect((await call(config, 'registerConnectorDefinition', { name: 'x', actorType: 1, connector: 'builtin:http-json', specJson: '{}' }, appToken)).status).toBe(grpc.status.PERMISSION_DENIED);

    actorA = (await ok(call<configV1.CreateActorResponse>(config, 'createActor', { workspaceId: workspaceA, definitionId, name: 'a', configJson: '{"url":"https://a"}' }, scopedA))).actor!.actorId;
    const actorB = (await ok(call<configV1.CreateActorResponse>(config, 'createActor', { workspaceId: workspaceB, definitionId, name: 'b', configJson: '{"url":"https://b"}' }, appToken))).actor!.actorId;

    // Outside its scope, a token gets the answer of an id that does not exist.
    const denied = grpc.status.PERMISSION_DENIED;
    const hidden = grpc.status.NOT_FOUND;
    expect((await call(config, 'getWorkspace', { workspaceId: workspaceB }, scopedA)).status).toBe(hidden);
    expect((await call(config, 'createActor', { workspaceId: workspaceB, definitionId, name: 'x', configJson: '{}' }, scopedA)).status).toBe(hidden);
    expect((await call(config, 'getActor', { actorId: actorB }, scopedA)).status).toBe(hidden);
    expect((await call(config, 'updateActor', { actorId: actorB, name: 'x', configJson: '{}' }, scopedA)).status).toBe(hidden);
    expect((await call(config, 'deleteActor', { actorId: actorB }, scopedA)).status).toBe(hidden);
    expect((await call(config, 'listActors', { workspaceId: workspaceB }, scopedA)).status).toBe(hidden);
    expect((await call(config, 'deleteWorkspace', { workspaceId: workspaceA }, scopedA)).status).toBe(denied);
    expect((await call(config, 'createWorkspace', { name: 'mine' }, scopedA)).status).toBe(denied);
    const listed = await ok(call<configV1.ListWorkspacesResponse>(config, 'listWorkspaces', {}, scopedA));
    expect(listed.workspaces.map((w) => w.workspaceId)).toEqual([workspaceA]);
    expect((await ok(call<configV1.GetActorResponse>(config, 'getActor', { actorId: actorA }, scopedA))).actor!.workspaceId).toBe(workspaceA);

    // Another organization's application sees none of organization A.
    appBToken = await applicationToken(appB);
    expect((await call(config, 'getWorkspace', { workspaceId: workspaceA }, appBToken)).status).toBe(hidden);
    expect((await call(config, 'getActor', { actorId: actorA }, appBToken)).status).toBe(hidden);
    expect((await call(config, 'createWorkspace', { name: 'x', organizationId: orgA }, appBToken)).status).toBe(denied);
    expect((await call(auth, 'rotateApplicationSecret', { clientId: appA.clientId }, appBToken)).status).toBe(denied);
    expect((await ok(call<configV1.ListWorkspacesResponse>(config, 'listWorkspaces', {}, appBToken))).workspaces).toEqual([]);
    // auth asks config who owns a workspace before it scopes a token to it: another organization's
    // workspace, one that never existed and a deleted one get the one same answer (no existence oracle).
    const gone = (await ok(call<configV1.CreateWorkspaceResponse>(config, 'createWorkspace', { name: 'gone' }, appBToken))).workspace!.workspaceId;
    expect((await call(auth, 'issueScopedToken', { workspaceId: gone }, appBToken)).status).toBe(grpc.status.OK);
    await ok(call(config, 'deleteWorkspace', { workspaceId: gone }, appBToken));
    const refusals = await Promise.all([workspaceA, randomUUID(), gone].map((workspaceId) => call(auth, 'issueScopedToken', { workspaceId }, appBToken)));
    for (const r of refusals) expect({ status: r.status, message: r.message }).toEqual({ status: denied, message: 'workspace_id is not a workspace of this organization' });
    expect((await ok(call<authV1.IssueScopedTokenResponse>(auth, 'issueScopedToken', { workspaceId: workspaceB }, appToken))).workspaceId).toBe(workspaceB);
    // Organization tokens never reach secrets or sync-worker.
    expect((await call(secrets, 'listSecretVersions', { baseCoordinate: 'x' }, appToken)).status).toBe(grpc.status.UNAUTHENTICATED);
    expect((await call(sync, 'getSyncJob', { jobId: randomUUID() }, scopedA)).status).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('binds a widget token to one allowed origin and refuses it from any other', async () => {
    const widget = await ok(call<authV1.IssueWidgetTokenResponse>(auth, 'issueWidgetToken', { allowedOrigin: ORIGIN }, scopedA));
    issuedTokens.push(widget.accessToken);
    expect(decodeProtectedHeader(widget.accessToken).typ).toBe('coffer-widget+jwt');
    expect(decodeJwt(widget.accessToken)).toMatchObject({ origin: ORIGIN, ws: workspaceA });
    expect(decodeJwt(widget.accessToken).exp!).toBeLessThanOrEqual(decodeJwt(scopedA).exp!);
    expect((await call(auth, 'issueWidgetToken', { allowedOrigin: 'https://evil.example.com' }, scopedA)).status).toBe(grpc.status.PERMISSION_DENIED);
    expect((await call(auth, 'issueWidgetToken', { allowedOrigin: 'not an origin' }, scopedA)).status).toBe(grpc.status.INVALID_ARGUMENT);

    expect((await call(config, 'getWorkspace', { workspaceId: workspaceA }, widget.accessToken, ORIGIN)).status).toBe(grpc.status.OK);
    expect((await call(config, 'getWorkspace', { workspaceId: workspaceA }, widget.accessToken, 'https://evil.example.com')).status).toBe(grpc.status.PERMISSION_DENIED);
    expect((await call(config, 'getWorkspace', { workspaceId: workspaceA }, widget.accessToken)).status).toBe(grpc.status.PERMISSION_DENIED);
    expect((await call(config, 'getWorkspace', { workspaceId: workspaceB }, widget.accessToken, ORIGIN)).status).toBe(grpc.status.NOT_FOUND);
  });

  it('lets a workspace_reader read but never write, and an organization revoke only its own tokens', async () => {
    const reader = (await ok(call<authV1.IssueScopedTokenResponse>(auth, 'issueScopedToken', { workspaceId: workspaceA, role: 'workspace_reader' }, appToken))).accessToken;
    expect(decodeJwt(reader).role).toBe('workspace_reader');
    expect((await call(config, 'getActor', { actorId: actorA }, reader)).status).toBe(grpc.status.OK);
    expect((await call(config, 'listActors', { workspaceId: workspaceA }, reader)).status).toBe(grpc.status.OK);
    expect((await call(config, 'updateActor', { actorId: actorA, name: 'x', configJson: '{}' }, reader)).status).toBe(grpc.status.PERMISSION_DENIED);
    expect((await call(config, 'deleteActor', { actorId: actorA }, reader)).status).toBe(grpc.status.PERMISSION_DENIED);
    expect((await call(auth, 'issueScopedToken', { workspaceId: workspaceA, role: 'org_admin' }, appToken)).status).toBe(grpc.status.INVALID_ARGUMENT);

    // Organization B cannot revoke organization A's token, and nobody revokes with a token auth did not sign.
    expect((await call(auth, 'revokeToken', { token: reader }, appBToken)).status).toBe(grpc.status.PERMISSION_DENIED);
    const attacker = await generateKeyPair('EdDSA');
    const forged = await new SignJWT({ ...decodeJwt(reader), org: orgB }).setProtectedHeader(decodeProtectedHeader(reader) as never).sign(attacker.privateKey);
    expect((await call(auth, 'revokeToken', { token: forged }, appBToken)).status).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await call(auth, 'revokeToken', { tokenId: 'some-jti', expiresAt: new Date().toISOString() }, appBToken)).status).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await call(config, 'getActor', { actorId: actorA }, reader)).status).toBe(grpc.status.OK);
    // Its own organization's admin can.
    await ok(call(auth, 'revokeToken', { token: reader }, appToken));
  });

  it('refuses a token of the wrong kind where another kind is needed (typ)', async () => {
    const denied = grpc.status.PERMISSION_DENIED;
    expect((await call(auth, 'issueScopedToken', { workspaceId: workspaceA }, scopedA)).status).toBe(denied);
    expect((await call(auth, 'issueWidgetToken', { allowedOrigin: ORIGIN }, appToken)).status).toBe(denied);
    expect((await call(auth, 'createOrganization', { name: 'x' }, appToken)).status).toBe(denied);
    expect((await call(auth, 'issueScopedToken', { workspaceId: workspaceA }, op.auth)).status).toBe(denied);
    // A service token for auth is not one for config either (aud).
    expect((await call(config, 'listWorkspaces', {}, op.auth)).status).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('refuses every forged or misused token at config, while a correctly signed one passes', async () => {
    const rootJwk = JSON.parse(stack.credentials.signingKeyJwk) as JWK;
    const rootKey = await importJWK(rootJwk, 'EdDSA');
    const now = Math.floor(Date.now() / 1000);
    const claims = (over: JWTPayload = {}): JWTPayload => ({
      iss: ISSUER, aud: ['auth', 'config'], sub: appA.clientId, azp: appA.clientId, org: orgA, role: 'org_admin', jti: randomUUID(), iat: now, nbf: now, exp: now + 600, ...over,
    });
    const header = { alg: 'EdDSA', kid: rootJwk.kid!, typ: 'coffer-app+jwt' };
    const sign = (payload: JWTPayload, h: Record<string, unknown> = {}) => new SignJWT(payload).setProtectedHeader({ ...header, ...h } as never).sign(rootKey);
    const probe = (token: string) => call(config, 'getWorkspace', { workspaceId: workspaceA }, token);

    // The control: the same claims, correctly signed by auth's key, pass.
    expect((await probe(await sign(claims()))).status).toBe(grpc.status.OK);

    const attacker = await generateKeyPair('EdDSA', { extractable: true });
    const attackerJwk = { ...(await exportJWK(attacker.publicKey)), kid: 'attacker' };
    const publicKeyBytes = Buffer.from(rootJwk.x!, 'base64url');
    const publicJwkText = JSON.stringify({ kty: rootJwk.kty, crv: rootJwk.crv, x: rootJwk.x, kid: rootJwk.kid });
    const hs256 = (secret: Buffer | string) => {
      const input = `${b64url({ ...header, alg: 'HS256' })}.${b64url(claims())}`;
      return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
    };
    const valid = await sign(claims());
    const [h, , s] = valid.split('.');

    const vectors: Record<string, string> = {
      'alg none': `${b64url({ ...header, alg: 'none' })}.${b64url(claims())}.`,
      'HS256 keyed with the public key bytes': hs256(publicKeyBytes),
      'HS256 keyed with the public JWK': hs256(publicJwkText),
      'HS256 keyed with the base64url public key': hs256(rootJwk.x!),
      'jwk header naming the attacker key': await new SignJWT(claims()).setProtectedHeader({ ...header, kid: 'attacker', jwk: attackerJwk } as never).sign(attacker.privateKey),
      'jwk header with auth kid': await new SignJWT(claims()).setProtectedHeader({ ...header, jwk: attackerJwk } as never).sign(attacker.privateKey),
      'jku header': await new SignJWT(claims()).setProtectedHeader({ ...header, kid: 'attacker', jku: 'http://127.0.0.1:9/jwks.json' } as never).sign(attacker.privateKey),
      'x5u header': await new SignJWT(claims()).setProtectedHeader({ ...header, kid: 'attacker', x5u: 'http://127.0.0.1:9/cert.pem' } as never).sign(attacker.privateKey),
      'signed by an unknown key': await new SignJWT(claims()).setProtectedHeader({ ...header, kid: 'attacker' }).sign(attacker.privateKey),
      'signed by an unknown key under auth kid': await new SignJWT(claims()).setProtectedHeader(header).sign(attacker.privateKey),
      'tampered payload (another organization)': `${h}.${b64url(claims({ org: orgB }))}.${s}`,
      'tampered payload (more role)': `${h}.${b64url({ ...decodeJwt(scopedA), role: 'org_admin' })}.${scopedA.split('.')[2]}`,
      expired: await sign(claims({ iat: now - 4000, nbf: now - 4000, exp: now - 3000 })),
      'nbf in the future beyond the skew': await sign(claims({ nbf: now + 600, exp: now + 1200 })),
      'iat in the future beyond the skew': await sign(claims({ iat: now + 600, nbf: now, exp: now + 1200 })),
      'wrong iss': await sign(claims({ iss: 'someone-else' })),
      'wrong aud': await sign(claims({ aud: 'secrets' })),
      'unknown typ': await sign(claims(), { typ: 'JWT' }),
      'missing jti': await sign(claims({ jti: undefined })),
      'service typ with an organization role': await sign(claims(), { typ: 'coffer-service+jwt' }),
    };
    const accepted: string[] = [];
    for (const [name, token] of Object.entries(vectors)) {
      const answer = await probe(token);
      if (answer.status !== grpc.status.UNAUTHENTICATED) accepted.push(`${name}: ${grpc.status[answer.status]} ${answer.message}`);
    }
    expect(accepted).toEqual([]);
  });

  it('rotates an application secret with a grace period, and locks out repeated bad secrets visibly to admins', async () => {
    const appC = await createApplication(orgA, 'platform C');
    const rotated = await ok(call<authV1.RotateApplicationSecretResponse>(auth, 'rotateApplicationSecret', { clientId: appC.clientId }, appToken));
    issuedSecrets.push(rotated.clientSecret);
    expect(Date.parse(rotated.previousSecretValidUntil) - Date.now()).toBeGreaterThan(23 * 3600_000);
    // Both secrets work during the grace period.
    await applicationToken(appC);
    await applicationToken({ clientId: appC.clientId, clientSecret: rotated.clientSecret });

    for (let i = 0; i < 5; i++) {
      expect((await call(auth, 'issueApplicationToken', { clientId: appC.clientId, clientSecret: 'wrong' })).status).toBe(grpc.status.UNAUTHENTICATED);
    }
    expect((await call(auth, 'issueApplicationToken', { clientId: appC.clientId, clientSecret: rotated.clientSecret })).status).toBe(grpc.status.UNAUTHENTICATED);
    const lock = await ok(call<authV1.GetClientLockoutResponse>(auth, 'getClientLockout', { clientId: appC.clientId }, op.auth));
    expect(lock.failuresInWindow).toBe(5);
    expect(Date.parse(lock.lockedUntil)).toBeGreaterThan(Date.now());
    // The organization's own admin sees it too; another organization does not.
    expect((await ok(call<authV1.GetClientLockoutResponse>(auth, 'getClientLockout', { clientId: appC.clientId }, appToken))).lockedUntil).toBe(lock.lockedUntil);
    expect((await call(auth, 'getClientLockout', { clientId: appC.clientId }, appBToken)).status).toBe(grpc.status.PERMISSION_DENIED);
  }, 60_000);

  it('applies a revoked token at config, secrets and sync-worker within a second', async () => {
    const tokens = { config: await operatorToken('config'), secrets: await operatorToken('secrets'), sync: await operatorToken('sync-worker') };
    const probes = {
      config: () => call(config, 'listWorkspaces', {}, tokens.config),
      secrets: () => call(secrets, 'listKeyEncryptionKeyVersions', {}, tokens.secrets),
      sync: () => call(sync, 'getSyncJob', { jobId: randomUUID() }, tokens.sync),
    };
    for (const probe of Object.values(probes)) expect((await probe()).status).not.toBe(grpc.status.UNAUTHENTICATED);
    const elapsed: Record<string, number> = {};
    await Promise.all(
      (Object.keys(probes) as (keyof typeof probes)[]).map(async (name) => {
        const start = Date.now();
        await ok(call(auth, 'revokeToken', { token: tokens[name] }, op.auth));
        while ((await probes[name]()).status !== grpc.status.UNAUTHENTICATED) {
          if (Date.now() - start > 5_000) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        elapsed[name] = Date.now() - start;
      }),
    );
    console.log(`revocation applied after (ms): ${JSON.stringify(elapsed)}`);
    for (const [name, ms] of Object.entries(elapsed)) expect(ms, name).toBeLessThan(1_000);
    // The operator's other tokens still work: one jti was revoked, not the identity.
    expect((await call(config, 'listWorkspaces', {}, op.config)).status).toBe(grpc.status.OK);
  });

  it('revokes a widget token with the scoped token it was minted from, at config within a second', async () => {
    const scoped = (await ok(call<authV1.IssueScopedTokenResponse>(auth, 'issueScopedToken', { externalUserId: 'user-1', createWorkspace: true }, appToken))).accessToken;
    const widget = (await ok(call<authV1.IssueWidgetTokenResponse>(auth, 'issueWidgetToken', { allowedOrigin: ORIGIN }, scoped))).accessToken;
    issuedTokens.push(scoped, widget);
    expect(decodeJwt(widget).pjti).toBe(decodeJwt(scoped).jti);
    expect((await call(config, 'getWorkspace', { workspaceId: workspaceA }, widget, ORIGIN)).status).toBe(grpc.status.OK);
    const start = Date.now();
    await ok(call(auth, 'revokeToken', { token: scoped }, appToken));
    let status = grpc.status.OK;
    while ((status = (await call(config, 'getWorkspace', { workspaceId: workspaceA }, widget, ORIGIN)).status) === grpc.status.OK) {
      if (Date.now() - start > 5_000) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const elapsed = Date.now() - start;
    console.log(`scoped token revoked: its widget token refused at config after ${elapsed} ms`);
    expect(status).toBe(grpc.status.UNAUTHENTICATED);
    expect(elapsed).toBeLessThan(1_000);
    // The application's other tokens are untouched: only that scoped token and what descends from it.
    expect((await call(config, 'getWorkspace', { workspaceId: workspaceA }, scopedA)).status).toBe(grpc.status.OK);
  });

  it('revokes every token of a disabled application, including the scoped and widget tokens minted from it', async () => {
    const scopedB = (await ok(call<authV1.IssueScopedTokenResponse>(auth, 'issueScopedToken', { externalUserId: 'b-user', createWorkspace: true }, appBToken))).accessToken;
    expect((await call(config, 'listWorkspaces', {}, scopedB)).status).toBe(grpc.status.OK);
    const start = Date.now();
    await ok(call(auth, 'disableApplication', { clientId: appB.clientId }, op.auth));
    const refused = async (token: string) => {
      while ((await call(config, 'listWorkspaces', {}, token)).status !== grpc.status.UNAUTHENTICATED) {
        if (Date.now() - start > 5_000) return Date.now() - start;
        await new Promise((r) => setTimeout(r, 20));
      }
      return Date.now() - start;
    };
    const [appMs, scopedMs] = await Promise.all([refused(appBToken), refused(scopedB)]);
    console.log(`application disabled: its tokens refused after ${appMs} ms and ${scopedMs} ms`);
    expect(Math.max(appMs, scopedMs)).toBeLessThan(1_000);
    expect((await call(auth, 'issueApplicationToken', appB)).status).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('publishes auth events that carry no client secret, no secret hash and no token', async () => {
    const jsm = await jetstreamManager(nc);
    const stream = streamName(ns, 'auth');
    const info = await jsm.streams.info(stream);
    const types: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (!m) continue;
      const text = `${m.subject} ${JSON.stringify([...(m.header ?? [])])} ${new TextDecoder().decode(m.data)}`;
      types.push(m.header?.get('ce-type') ?? '');
      for (const s of [...issuedSecrets, ...Object.values(stack.credentials.clients).map((c) => c.clientSecret)]) expect(text).not.toContain(s);
      for (const t of issuedTokens) expect(text).not.toContain(t.split('.')[2]);
      expect(text).not.toMatch(/scrypt\$/);
    }
    for (const t of ['OrganizationCreated', 'ApplicationCreated', 'ApplicationSecretRotated', 'ApplicationDisabled', 'TokenRevoked', 'LoginFailed', 'ClientLocked']) {
      expect(types).toContain(`coffer.auth.v1.${t}`);
    }
  });

  it('revokes a service identity: its tokens are refused everywhere and it gets no new ones', async () => {
    const start = Date.now();
    await ok(call(auth, 'revokeServiceIdentity', { clientId: 'operator' }, op.auth));
    const probes = [
      () => call(config, 'listWorkspaces', {}, op.config),
      () => call(secrets, 'listKeyEncryptionKeyVersions', {}, op.secrets),
      () => call(sync, 'getSyncJob', { jobId: randomUUID() }, op['sync-worker']),
    ];
    const elapsed = await Promise.all(
      probes.map(async (probe) => {
        while ((await probe()).status !== grpc.status.UNAUTHENTICATED) {
          if (Date.now() - start > 5_000) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        return Date.now() - start;
      }),
    );
    console.log(`service identity revoked: refused after ${elapsed.join(', ')} ms (config, secrets, sync-worker)`);
    for (const ms of elapsed) expect(ms).toBeLessThan(1_000);
    const { clientId, clientSecret } = stack.credentials.clients.operator;
    expect((await call(auth, 'issueServiceToken', { clientId, clientSecret, audience: 'config' })).status).toBe(grpc.status.UNAUTHENTICATED);
  });
});
