import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { authV1 } from '@coffer/contracts';
import { createPromiseClient, createServiceTokenProvider } from '@coffer/rpc';
import type { CofferHome } from '../home';
import { UsageError, type ParsedCommand } from './args';
import { authCommandSpecs } from './args-auth';
import type { CliContext } from './commands';
import { fields, table } from './format';
import { loadLogin, loginFileName, operatorCredentials, readSavedStack, resolveEndpoints } from './session';

type AuthClient = ReturnType<typeof createPromiseClient<authV1.AuthServiceClient>>;

/** The file `npm start` writes for its printed `buf curl` token command (apps/cli/src/dev-stack.ts). */
const APPLICATION_TOKEN_REQUEST_FILE = 'application-token-request.json';

/** Whether `command` is one of the organization, application and token commands this module runs. */
export function isAuthCommand(command: string): boolean {
  return Object.hasOwn(authCommandSpecs, command);
}

const withToken = (address: string, token: string): AuthClient => createPromiseClient(authV1.AuthServiceClient, address, { tokenProvider: async () => token });

/** AuthService as the logged-in application (the token `coffer login` cached). */
async function asApplication(ctx: CliContext): Promise<AuthClient> {
  const login = await loadLogin(ctx.home, ctx.now());
  return withToken(login.endpoints.auth, login.accessToken);
}

/** AuthService as the operator: service tokens for the `auth` audience from the operator's client credentials. */
async function asOperator(ctx: CliContext): Promise<AuthClient> {
  const endpoints = await resolveEndpoints(ctx.home, ctx.env);
  const tokens = createServiceTokenProvider({ authAddress: endpoints.auth, ...operatorCredentials(await readSavedStack(ctx.home), ctx.env), audience: 'auth' });
  const client = createPromiseClient(authV1.AuthServiceClient, endpoints.auth, { tokenProvider: tokens });
  const closeClient = client.close.bind(client);
  return Object.assign(client, {
    close: () => {
      closeClient();
      tokens.close();
    },
  });
}

async function using<R>(client: AuthClient, fn: (auth: AuthClient) => Promise<R>): Promise<R> {
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

function emit(ctx: CliContext, parsed: ParsedCommand, value: unknown, human: () => string): void {
  ctx.out(parsed.json ? JSON.stringify(value, null, 2) : human());
}

/**
 * The client credentials `coffer tokens application` uses, found as `coffer login` finds them, with
 * the logged-in application's id before the seed's: --client-id, COFFER_CLIENT_ID, the cached login,
 * the application `npm start` created; the secret from COFFER_CLIENT_SECRET or, for that application, the saved seed.
 */
async function applicationCredentials(ctx: CliContext, parsed: ParsedCommand): Promise<{ clientId: string; clientSecret: string }> {
  const seed = (await readSavedStack(ctx.home))?.seed?.application;
  const cached = await readFile(join(ctx.home.dir, loginFileName), 'utf8')
    // Expired or not, the login names the application; a file that does not parse names none (and its parse error, which may quote the token, is dropped).
    .then((text) => (JSON.parse(text) as { clientId?: unknown }).clientId)
    .then((id) => (typeof id === 'string' && id ? id : undefined))
    .catch(() => undefined);
  const clientId = (parsed.options['client-id'] as string | undefined) ?? ctx.env.COFFER_CLIENT_ID ?? cached ?? seed?.clientId;
  if (!clientId) throw new UsageError(`${parsed.command}: no client id: run coffer login, set COFFER_CLIENT_ID, or start the stack with npm start`);
  const clientSecret = ctx.env.COFFER_CLIENT_SECRET ?? (clientId === seed?.clientId ? seed.clientSecret : undefined);
  if (!clientSecret) throw new UsageError(`${parsed.command}: no client secret for ${clientId}: set COFFER_CLIENT_SECRET`);
  return { clientId, clientSecret };
}

const roles: Record<string, string> = { editor: 'workspace_editor', reader: 'workspace_reader', workspace_editor: 'workspace_editor', workspace_reader: 'workspace_reader' };

/** The scope of a scoped or widget token from --workspace, --end-user, --create-workspace and --role; UsageError when it names none. */
export function scopeOptions(parsed: ParsedCommand): authV1.IssueScopedTokenRequest {
  const o = parsed.options;
  const workspaceId = (o.workspace as string | undefined) ?? '';
  const externalUserId = (o['end-user'] as string | undefined) ?? '';
  const createWorkspace = o['create-workspace'] === true;
  if (!workspaceId && !externalUserId) throw new UsageError(`${parsed.command}: --workspace or --end-user is required`);
  if (createWorkspace && workspaceId) throw new UsageError(`${parsed.command}: --create-workspace goes with --end-user alone (it makes the end user's workspace)`);
  const role = o.role === undefined ? 'workspace_editor' : roles[o.role as string];
  if (!role) throw new UsageError(`${parsed.command}: --role must be editor or reader`);
  return { workspaceId, externalUserId, createWorkspace, role };
}

/** The allowed origins of --allowed-origins: a comma-separated list (an origin holds no comma). */
export function originList(value: string | boolean | undefined): string[] {
  return typeof value === 'string' ? value.split(',').map((o) => o.trim()).filter((o) => o.length > 0) : [];
}

/** What `tokens revoke <token-or-jti>` sends: a token (three dot-separated parts) as it is; a jti with its expiry, which only operators may revoke by. */
export function revokeRequest(parsed: ParsedCommand): { request: authV1.RevokeTokenRequest; byOperatorOnly: boolean } {
  const value = parsed.positionals[0]!;
  const expiresAt = parsed.options['expires-at'] as string | undefined;
  if (value.split('.').length === 3) {
    if (expiresAt !== undefined) throw new UsageError(`${parsed.command}: --expires-at goes with a jti; a token carries its own expiry`);
    return { request: { token: value, tokenId: '', expiresAt: '' }, byOperatorOnly: false };
  }
  if (expiresAt === undefined) throw new UsageError(`${parsed.command}: revoking by jti needs --expires-at (the token's expiry, RFC 3339)`);
  if (!/^\d{4}-\d\d-\d\dT/.test(expiresAt) || Number.isNaN(Date.parse(expiresAt))) throw new UsageError(`${parsed.command}: --expires-at must be an RFC 3339 time`);
  return { request: { token: '', tokenId: value, expiresAt: new Date(expiresAt).toISOString() }, byOperatorOnly: true };
}

interface TokenView {
  accessToken: string;
  tokenType: string;
  expiresIn: number;
  expiresAt: string;
  workspaceId?: string;
  origin?: string;
}

/** A token: alone on stdout for people and shell substitution (what it is goes to stderr), or the whole JSON. */
function printToken(ctx: CliContext, parsed: ParsedCommand, view: TokenView, what: string): void {
  if (parsed.json) return ctx.out(JSON.stringify(view, null, 2));
  ctx.out(view.accessToken);
  ctx.progress(`${what}, valid until ${view.expiresAt}`);
}

function tokenView(ctx: CliContext, res: { accessToken: string; tokenType: string; expiresIn: number; workspaceId?: string }): TokenView {
  const expiresAt = new Date(ctx.now().getTime() + res.expiresIn * 1000).toISOString();
  return { accessToken: res.accessToken, tokenType: res.tokenType, expiresIn: res.expiresIn, expiresAt, ...(res.workspaceId ? { workspaceId: res.workspaceId } : {}) };
}

async function writeOwnerOnly(file: string, value: unknown): Promise<void> {
  // Written beside and renamed over: the credentials file also holds the stack's signing key, and must never be left half written.
  const next = `${file}.next`;
  await rm(next, { force: true });
  await writeFile(next, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  await rename(next, file);
}

/**
 * When the rotated application is the one `npm start` created, its saved secret (which `coffer login`,
 * `coffer demo` and the printed token command use) becomes the new one. Whether it was that application.
 */
async function replaceSavedSeedSecret(home: CofferHome, clientId: string, clientSecret: string): Promise<boolean> {
  const saved = await readSavedStack(home);
  if (!saved?.seed || saved.seed.application.clientId !== clientId) return false;
  await writeOwnerOnly(home.credentialsFile, { ...saved, seed: { ...saved.seed, application: { ...saved.seed.application, clientSecret } } });
  const request = join(home.dir, APPLICATION_TOKEN_REQUEST_FILE);
  if (await readFile(request).then(() => true, () => false)) await writeOwnerOnly(request, { client_id: clientId, client_secret: clientSecret });
  return true;
}

async function isSeedApplication(home: CofferHome, clientId: string): Promise<boolean> {
  return (await readSavedStack(home))?.seed?.application.clientId === clientId;
}

function applicationHuman(a: authV1.Application, clientSecret: string): string {
  return fields([
    ['client id', a.clientId],
    ['organization', a.organizationId],
    ['name', a.name],
    ['allowed origins', a.allowedOrigins.join(', ') || '-'],
    ['client secret', clientSecret || '(shown only when first created: apps rotate-secret issues a new one)'],
  ]);
}

const SHOWN_ONCE = 'the client secret is shown this once and cannot be read back: keep it now';

/** Runs one of the organization, application and token commands; resolves the exit code. */
export async function runAuthCommand(ctx: CliContext, parsed: ParsedCommand): Promise<number> {
  const o = parsed.options;
  const p = parsed.positionals;
  const requestId = o['request-id'] as string | undefined;
  switch (parsed.command) {
    case 'orgs create':
      return using(await asOperator(ctx), async (auth) => {
        const org = (await auth.createOrganization({ name: p[0]!, requestId })).organization!;
        emit(ctx, parsed, org, () => table(['id', 'name'], [[org.organizationId, org.name]]));
        return 0;
      });
    case 'apps create': {
      if (o.operator === true && !o.org) throw new UsageError('apps create: --operator needs --org <organization id>');
      const allowedOrigins = originList(o['allowed-origins']);
      return using(o.operator === true ? await asOperator(ctx) : await asApplication(ctx), async (auth) => {
        const res = await auth.createApplication({ organizationId: (o.org as string | undefined) ?? '', name: p[0]!, allowedOrigins, requestId });
        const a = res.application!;
        emit(ctx, parsed, { ...a, clientSecret: res.clientSecret }, () => applicationHuman(a, res.clientSecret));
        if (res.clientSecret) ctx.progress(`${SHOWN_ONCE}; log in with it: COFFER_CLIENT_ID=${a.clientId} COFFER_CLIENT_SECRET=… npx coffer login`);
        return 0;
      });
    }
    case 'apps rotate-secret':
      return using(o.operator === true ? await asOperator(ctx) : await asApplication(ctx), async (auth) => {
        const res = await auth.rotateApplicationSecret({ clientId: p[0]! });
        const view = { clientId: p[0]!, clientSecret: res.clientSecret, previousSecretValidUntil: res.previousSecretValidUntil };
        emit(ctx, parsed, view, () => fields([['client id', view.clientId], ['client secret', view.clientSecret], ['previous secret valid until', view.previousSecretValidUntil]]));
        ctx.progress(SHOWN_ONCE);
        if (await replaceSavedSeedSecret(ctx.home, view.clientId, view.clientSecret)) ctx.progress(`this is the application npm start created: its secret saved in ${ctx.home.dir} is now the new one`);
        return 0;
      });
    case 'apps disable':
      return using(o.operator === true ? await asOperator(ctx) : await asApplication(ctx), async (auth) => {
        await auth.disableApplication({ clientId: p[0]! });
        emit(ctx, parsed, { clientId: p[0], disabled: true }, () => `disabled ${p[0]}: its credentials are refused and its tokens revoked`);
        if (await isSeedApplication(ctx.home, p[0]!)) ctx.progress('this is the application npm start created: coffer login and coffer demo use it and are now refused');
        return 0;
      });
    case 'tokens application': {
      const credentials = await applicationCredentials(ctx, parsed);
      const endpoints = await resolveEndpoints(ctx.home, ctx.env);
      return using(createPromiseClient(authV1.AuthServiceClient, endpoints.auth), async (auth) => {
        const res = await auth.issueApplicationToken(credentials);
        printToken(ctx, parsed, tokenView(ctx, res), `application token of ${credentials.clientId}`);
        return 0;
      });
    }
    case 'tokens scoped': {
      const scope = scopeOptions(parsed);
      return using(await asApplication(ctx), async (auth) => {
        const res = await auth.issueScopedToken(scope);
        printToken(ctx, parsed, tokenView(ctx, res), `scoped token (${scope.role}) for workspace ${res.workspaceId}`);
        return 0;
      });
    }
    case 'tokens widget': {
      const scope = scopeOptions(parsed);
      if (scope.createWorkspace) throw new UsageError('tokens widget: --create-workspace belongs to tokens scoped');
      const origin = o.origin as string;
      const login = await loadLogin(ctx.home, ctx.now());
      // A widget token is minted from a scoped token, which stays inside this process.
      const scoped = await using(withToken(login.endpoints.auth, login.accessToken), (auth) => auth.issueScopedToken(scope));
      return using(withToken(login.endpoints.auth, scoped.accessToken), async (auth) => {
        const res = await auth.issueWidgetToken({ allowedOrigin: origin });
        printToken(ctx, parsed, { ...tokenView(ctx, res), origin }, `widget token (${scope.role}) for workspace ${res.workspaceId}, bound to ${origin}`);
        return 0;
      });
    }
    case 'tokens revoke': {
      const { request, byOperatorOnly } = revokeRequest(parsed);
      return using(byOperatorOnly || o.operator === true ? await asOperator(ctx) : await asApplication(ctx), async (auth) => {
        const { tokenId } = await auth.revokeToken(request);
        emit(ctx, parsed, { tokenId, revoked: true }, () => `revoked token ${tokenId}; every service refuses it once it has applied the revocation (about a second)`);
        return 0;
      });
    }
  }
  throw new UsageError(`unknown command "${parsed.command}"`);
}
