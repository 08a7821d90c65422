import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, isCofferError } from '@coffer/contracts';
import { createPromiseClient } from '@coffer/rpc';
import { type DevStack, type SavedStack } from '../dev-stack';
import { externalDevStackPlace, repositoryRoot, startExternalDevStack } from '../external-dev-stack';
import { runCli } from './main';

const root = repositoryRoot;
const origin = 'https://app.example.com';
const run = promisify(execFile);

/** Polls `check` until it holds; revocations reach each service as events, a moment after the call. */
async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The code a call failed with, or 'ok'. */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return 'ok';
  } catch (err) {
    if (isCofferError(err)) return err.code;
    throw err;
  }
}

describe('coffer orgs, apps and tokens against the four services (DATABASE_URL and NATS_URL)', () => {
  const place = externalDevStackPlace('cliauth');
  const home = place.home;
  let dev: DevStack;
  const clients: { close(): void }[] = [];

  async function coffer(argv: string[], env: NodeJS.ProcessEnv = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, { home: dev.home, env, out: (t) => out.push(t), progress: (t) => err.push(t), now: () => new Date() });
    return { code, stdout: out.join('\n'), stderr: err.join('\n') };
  }

  async function ok(argv: string[], env: NodeJS.ProcessEnv = {}) {
    const r = await coffer(argv, env);
    expect(r.code, `coffer ${argv.join(' ')}: ${r.stderr}`).toBe(0);
    return r;
  }

  const json = async <T>(argv: string[], env: NodeJS.ProcessEnv = {}) => JSON.parse((await ok([...argv, '--json'], env)).stdout) as T;

  function configWith(token: string) {
    const client = createPromiseClient(configV1.ConfigServiceClient, dev.state.endpoints.config, { tokenProvider: async () => token });
    clients.push(client);
    return client;
  }

  /** GetWorkspace as a browser's grpc-web proxy sends it: the widget token and an Origin header (none when `from` is undefined). */
  function getWorkspaceFrom(from: string | undefined, token: string, workspaceId: string): Promise<grpc.status | 'ok'> {
    const raw = new configV1.ConfigServiceClient(dev.state.endpoints.config, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    if (from) metadata.set('origin', from);
    return new Promise((resolve) => raw.getWorkspace({ workspaceId }, metadata, (err) => (raw.close(), resolve(err ? err.code : 'ok'))));
  }

  beforeAll(async () => {
    // No grace for a rotated secret here, so the test sees the previous one refused at once (the default keeps it a day).
    dev = await startExternalDevStack(place, { serviceEnv: { AUTH_APPLICATION_SECRET_GRACE_SECONDS: '0' } });
  }, 240_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await dev?.stop();
    await place.remove();
  }, 120_000);

  it('an organization, its first application, login with it, scoped and widget tokens that work, revocation, rotation and disabling', async () => {
    // The operator (the service identity npm start saved) creates an organization; a retried request id answers the first one.
    const org = await json<{ organizationId: string; name: string }>(['orgs', 'create', 'Acme', '--request-id', 'acme-1']);
    expect(org.name).toBe('Acme');
    expect((await json<{ organizationId: string }>(['orgs', 'create', 'Acme again', '--request-id', 'acme-1'])).organizationId).toBe(org.organizationId);
    const table = await ok(['orgs', 'create', 'Beta']);
    expect(table.stdout).toMatch(/^ID\s+NAME\n[0-9a-f-]{36}\s+Beta$/);

    // Its first application, made by the operator; the client secret is printed this once.
    const created = await coffer(['apps', 'create', 'web', '--org', org.organizationId, '--operator', '--allowed-origins', `${origin},https://admin.example.com`]);
    expect(created.code, created.stderr).toBe(0);
    const clientId = /client id:\s+(app-[0-9a-f-]{36})/.exec(created.stdout)![1]!;
    const secret1 = /client secret:\s+(\S+)/.exec(created.stdout)![1]!;
    expect(created.stdout).toContain(`organization:    ${org.organizationId}`);
    expect(created.stdout).toContain(`allowed origins: ${origin}, https://admin.example.com`);
    expect(created.stderr).toContain('the client secret is shown this once');
    expect(created.stderr).not.toContain(secret1);

    // Log in as it: the cached token is the new organization's.
    const asApp = { COFFER_CLIENT_ID: clientId, COFFER_CLIENT_SECRET: secret1 };
    expect((await json<{ clientId: string }>(['login'], asApp)).clientId).toBe(clientId);
    const workspace = await json<{ workspaceId: string }>(['workspaces', 'create', 'acme main']);
    const other = await json<{ workspaceId: string }>(['workspaces', 'create', 'acme other']);

    // A scoped token: alone on stdout, good for its one workspace at config and for nothing else.
    const scoped = await ok(['tokens', 'scoped', '--workspace', workspace.workspaceId]);
    const scopedToken = scoped.stdout;
    expect(scopedToken.split('.')).toHaveLength(3);
    expect(scoped.stderr).toMatch(new RegExp(`^scoped token \\(workspace_editor\\) for workspace ${workspace.workspaceId}, valid until \\d{4}-`));
    const asScoped = configWith(scopedToken);
    expect((await asScoped.getWorkspace({ workspaceId: workspace.workspaceId })).workspace!.name).toBe('acme main');
    // Another workspace of the same organization is, to this token, one that does not exist.
    expect(await outcome(() => asScoped.getWorkspace({ workspaceId: other.workspaceId }))).toBe('not_found');
    const reader = await json<{ accessToken: string; workspaceId: string }>(['tokens', 'scoped', '--workspace', workspace.workspaceId, '--role', 'reader']);
    expect(reader.workspaceId).toBe(workspace.workspaceId);
    expect(await outcome(() => configWith(reader.accessToken).createConnection({ workspaceId: workspace.workspaceId, sourceId: workspace.workspaceId, destinationId: workspace.workspaceId, name: 'x' }))).toBe('permission_denied');
    // An end user's workspace, made on first use.
    const endUser = await json<{ accessToken: string; workspaceId: string }>(['tokens', 'scoped', '--end-user', 'customer-42', '--create-workspace']);
    expect(endUser.workspaceId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await configWith(endUser.accessToken).getWorkspace({ workspaceId: endUser.workspaceId })).workspace!.workspaceId).toBe(endUser.workspaceId);

    // A widget token: works from its origin only; an origin the application did not list is refused.
    const widget = await json<{ accessToken: string; origin: string; workspaceId: string }>(['tokens', 'widget', '--workspace', workspace.workspaceId, '--origin', origin]);
    expect(widget).toMatchObject({ origin, workspaceId: workspace.workspaceId });
    expect(await getWorkspaceFrom(origin, widget.accessToken, workspace.workspaceId)).toBe('ok');
    expect(await getWorkspaceFrom('https://evil.example', widget.accessToken, workspace.workspaceId)).toBe(grpc.status.PERMISSION_DENIED);
    expect(await getWorkspaceFrom(undefined, widget.accessToken, workspace.workspaceId)).toBe(grpc.status.PERMISSION_DENIED);
    const refusedOrigin = await coffer(['tokens', 'widget', '--workspace', workspace.workspaceId, '--origin', 'https://evil.example']);
    expect(refusedOrigin).toMatchObject({ code: 1, stdout: '', stderr: "error: permission_denied: allowed_origin is not one of the application's allowed origins" });

    // Revoking the scoped token, presented: config refuses it once the revocation has reached it.
    const revoked = await json<{ tokenId: string; revoked: boolean }>(['tokens', 'revoke', scopedToken]);
    expect(revoked.revoked).toBe(true);
    await eventually('config refusing the revoked scoped token', async () => (await outcome(() => asScoped.getWorkspace({ workspaceId: workspace.workspaceId }))) === 'unauthenticated');

    // An application token, printed; revoked by its jti and expiry, which takes the operator.
    const appToken = await json<{ accessToken: string; expiresAt: string }>(['tokens', 'application'], asApp);
    const asAppToken = configWith(appToken.accessToken);
    const listed = (await asAppToken.listWorkspaces({ page: { pageSize: 10, pageToken: '' } })).workspaces.map((w) => w.workspaceId);
    expect(listed.sort()).toEqual([workspace.workspaceId, other.workspaceId, endUser.workspaceId].sort());
    const claims = JSON.parse(Buffer.from(appToken.accessToken.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string; exp: number };
    const byJti = await json<{ tokenId: string }>(['tokens', 'revoke', claims.jti, '--expires-at', new Date(claims.exp * 1000).toISOString()]);
    expect(byJti.tokenId).toBe(claims.jti);
    await eventually('config refusing the application token revoked by jti', async () => (await outcome(() => asAppToken.listWorkspaces({ page: { pageSize: 10, pageToken: '' } }))) === 'unauthenticated');

    // Rotation, by the application itself: the new secret logs in, the previous one (no grace here) is refused.
    const rotated = await json<{ clientId: string; clientSecret: string; previousSecretValidUntil: string }>(['apps', 'rotate-secret', clientId]);
    expect(rotated.clientSecret).not.toBe(secret1);
    expect(Date.parse(rotated.previousSecretValidUntil)).not.toBeNaN();
    const oldLogin = await coffer(['login'], asApp);
    expect(oldLogin).toMatchObject({ code: 1, stderr: 'error: unauthenticated: invalid client credentials' });
    const asRotated = { COFFER_CLIENT_ID: clientId, COFFER_CLIENT_SECRET: rotated.clientSecret };
    await ok(['login'], asRotated);
    const loggedIn = configWith(JSON.parse(readFileSync(join(home, 'cli-login.json'), 'utf8')).accessToken as string);
    expect((await loggedIn.getWorkspace({ workspaceId: workspace.workspaceId })).workspace!.name).toBe('acme main');

    // Disabling: its credentials are refused, and so is the token it held.
    const disabled = await ok(['apps', 'disable', clientId]);
    expect(disabled.stdout).toBe(`disabled ${clientId}: its credentials are refused and its tokens revoked`);
    expect(await coffer(['login'], asRotated)).toMatchObject({ code: 1, stderr: 'error: unauthenticated: invalid client credentials' });
    expect(await coffer(['tokens', 'application'], asRotated)).toMatchObject({ code: 1, stdout: '' });
    await eventually('config refusing the disabled application\'s token', async () => (await outcome(() => loggedIn.getWorkspace({ workspaceId: workspace.workspaceId }))) !== 'ok');

    // The service logs hold none of the client secrets.
    for (const file of readdirSync(dev.home.logsDir)) {
      const text = readFileSync(join(dev.home.logsDir, file), 'utf8');
      for (const secret of [secret1, rotated.clientSecret]) expect(text.includes(secret), file).toBe(false);
    }
  }, 180_000);

  it('rotating the application npm start created keeps coffer login working: the saved secret becomes the new one', async () => {
    const savedBefore = JSON.parse(readFileSync(dev.home.credentialsFile, 'utf8')) as SavedStack;
    const seed = savedBefore.seed!.application;
    const rotated = await coffer(['apps', 'rotate-secret', seed.clientId, '--operator', '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stderr).toContain('this is the application npm start created');
    const { clientSecret } = JSON.parse(rotated.stdout) as { clientSecret: string };
    const savedAfter = JSON.parse(readFileSync(dev.home.credentialsFile, 'utf8')) as SavedStack;
    expect(savedAfter).toEqual({ ...savedBefore, seed: { ...savedBefore.seed, application: { ...seed, clientSecret } } });
    expect(statSync(dev.home.credentialsFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(join(home, 'application-token-request.json'), 'utf8'))).toEqual({ client_id: seed.clientId, client_secret: clientSecret });
    // The previous secret is refused (no grace in this stack), and the default login uses the new one.
    expect(await coffer(['login'], { COFFER_CLIENT_ID: seed.clientId, COFFER_CLIENT_SECRET: seed.clientSecret })).toMatchObject({ code: 1 });
    expect((await json<{ clientId: string }>(['login'])).clientId).toBe(seed.clientId);
    expect((await ok(['workspaces', 'list'])).code).toBe(0);

    // Through the coffer command itself: the token alone on stdout, as `TOKEN=$(npx coffer tokens application)` takes it.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, COFFER_HOME: home };
    const { stdout, stderr } = await run(process.execPath, [join(root, 'apps/cli/bin/coffer.mjs'), 'tokens', 'application'], { cwd: root, env, timeout: 60_000 });
    expect(stdout).toMatch(/^ey[\w-]+\.[\w-]+\.[\w-]+\n$/);
    expect(stderr).toMatch(new RegExp(`^application token of ${seed.clientId}, valid until \\d{4}-`));
    expect(await outcome(() => configWith(stdout.trim()).listWorkspaces({ page: { pageSize: 1, pageToken: '' } }))).toBe('ok');
  }, 90_000);
});
