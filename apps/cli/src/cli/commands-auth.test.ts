import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cofferHome } from '../home';
import { parseCommandLine, usageText, UsageError } from './args';
import { authCommandSpecs } from './args-auth';
import { isAuthCommand, originList, revokeRequest, scopeOptions } from './commands-auth';
import { runCli } from './main';

const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-auth-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error('no UsageError');
}

const jwt = 'eyJhbGciOiJFZERTQSJ9.eyJqdGkiOiJ4In0.c2lnbmF0dXJl';

describe('coffer orgs, apps and tokens: the command line', () => {
  it('parses each command with its arguments, booleans and options', () => {
    expect(parseCommandLine(['orgs', 'create', 'Acme', '--request-id', 'r-1', '--json'])).toEqual({ command: 'orgs create', positionals: ['Acme'], options: { 'request-id': 'r-1' }, json: true });
    expect(parseCommandLine(['apps', 'create', 'web', '--org', 'o1', '--operator', '--allowed-origins', 'https://a.example,https://b.example'])).toEqual({
      command: 'apps create',
      positionals: ['web'],
      options: { org: 'o1', operator: true, 'allowed-origins': 'https://a.example,https://b.example' },
      json: false,
    });
    expect(parseCommandLine(['apps', 'rotate-secret', 'app-1'])).toMatchObject({ command: 'apps rotate-secret', positionals: ['app-1'], options: {} });
    expect(parseCommandLine(['apps', 'disable', 'app-1', '--operator'])).toMatchObject({ command: 'apps disable', options: { operator: true } });
    expect(parseCommandLine(['tokens', 'application', '--client-id=app-1'])).toMatchObject({ command: 'tokens application', options: { 'client-id': 'app-1' } });
    expect(parseCommandLine(['tokens', 'scoped', '--end-user', 'u-1', '--create-workspace', '--role', 'reader'])).toMatchObject({ options: { 'end-user': 'u-1', 'create-workspace': true, role: 'reader' } });
    expect(parseCommandLine(['tokens', 'widget', '--workspace', 'w', '--origin', 'https://a.example'])).toMatchObject({ command: 'tokens widget', options: { workspace: 'w', origin: 'https://a.example' } });
    expect(parseCommandLine(['tokens', 'revoke', jwt])).toMatchObject({ command: 'tokens revoke', positionals: [jwt] });
    for (const name of Object.keys(authCommandSpecs)) expect(isAuthCommand(name)).toBe(true);
    expect(isAuthCommand('workspaces create')).toBe(false);
    expect(isAuthCommand('toString')).toBe(false);
  });

  it.each([
    [['orgs'], 'orgs needs one of: create'],
    [['orgs', 'create'], 'orgs create: missing <name>'],
    [['apps'], 'apps needs one of: create, rotate-secret, disable'],
    [['apps', 'rotate-secret'], 'apps rotate-secret: missing <client-id>'],
    [['apps', 'disable', 'a', 'b'], 'apps disable: unexpected argument "b"'],
    [['apps', 'create', 'x', '--operator=yes'], "apps create: Option '--operator' does not take an argument"],
    [['tokens'], 'tokens needs one of: application, scoped, widget, revoke'],
    [['tokens', 'widget', '--workspace', 'w'], 'tokens widget: --origin is required'],
    [['tokens', 'revoke'], 'tokens revoke: missing <token-or-jti>'],
    [['tokens', 'scoped', '--workspace', ''], 'tokens scoped: --workspace must not be empty'],
  ])('refuses %j as usage: %s', (argv, message) => {
    expect(usageError(() => parseCommandLine(argv))).toContain(message);
  });

  it('lists every command, its booleans included, in the usage text', () => {
    const text = usageText();
    expect(text).toContain('coffer apps create <name> [--org <v>] [--allowed-origins <v>] [--request-id <v>] [--operator]');
    expect(text).toContain('coffer tokens widget --origin <v> [--workspace <v>] [--end-user <v>] [--role <v>]');
    expect(text).toContain('coffer tokens revoke <token-or-jti> [--expires-at <v>] [--operator]');
  });

  it('reads the scope of a scoped or widget token', () => {
    expect(scopeOptions(parseCommandLine(['tokens', 'scoped', '--workspace', 'w1']))).toEqual({ workspaceId: 'w1', externalUserId: '', createWorkspace: false, role: 'workspace_editor' });
    expect(scopeOptions(parseCommandLine(['tokens', 'scoped', '--end-user', 'u1', '--create-workspace', '--role', 'reader']))).toEqual({ workspaceId: '', externalUserId: 'u1', createWorkspace: true, role: 'workspace_reader' });
    expect(scopeOptions(parseCommandLine(['tokens', 'scoped', '--workspace', 'w1', '--end-user', 'u1', '--role', 'workspace_editor'])).role).toBe('workspace_editor');
    expect(usageError(() => scopeOptions(parseCommandLine(['tokens', 'scoped'])))).toBe('tokens scoped: --workspace or --end-user is required');
    expect(usageError(() => scopeOptions(parseCommandLine(['tokens', 'scoped', '--workspace', 'w', '--create-workspace'])))).toContain('--create-workspace goes with --end-user alone');
    expect(usageError(() => scopeOptions(parseCommandLine(['tokens', 'widget', '--origin', 'https://a', '--workspace', 'w', '--role', 'admin'])))).toBe('tokens widget: --role must be editor or reader');
  });

  it('splits --allowed-origins at commas', () => {
    expect(originList('https://a.example, https://b.example:8443,')).toEqual(['https://a.example', 'https://b.example:8443']);
    expect(originList(undefined)).toEqual([]);
  });

  it('revokes a token as presented, a jti only with its expiry (which only operators may)', () => {
    expect(revokeRequest(parseCommandLine(['tokens', 'revoke', jwt]))).toEqual({ request: { token: jwt, tokenId: '', expiresAt: '' }, byOperatorOnly: false });
    expect(revokeRequest(parseCommandLine(['tokens', 'revoke', 'jti-1', '--expires-at', '2030-01-02T03:04:05+01:00']))).toEqual({
      request: { token: '', tokenId: 'jti-1', expiresAt: '2030-01-02T02:04:05.000Z' },
      byOperatorOnly: true,
    });
    expect(usageError(() => revokeRequest(parseCommandLine(['tokens', 'revoke', 'jti-1'])))).toContain('revoking by jti needs --expires-at');
    expect(usageError(() => revokeRequest(parseCommandLine(['tokens', 'revoke', 'jti-1', '--expires-at', 'tomorrow'])))).toContain('--expires-at must be an RFC 3339 time');
    expect(usageError(() => revokeRequest(parseCommandLine(['tokens', 'revoke', jwt, '--expires-at', '2030-01-01T00:00:00Z'])))).toContain('--expires-at goes with a jti');
  });
});

describe('coffer orgs, apps and tokens: exit codes without a stack', () => {
  async function cli(...argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, { home: cofferHome(dir, dir), env: {}, out: (t) => out.push(t), progress: (t) => err.push(t), now: () => new Date() });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  it('a bad command line is exit 2, one line, before any call', async () => {
    const r = await cli('tokens', 'scoped');
    expect(r.code).toBe(2);
    expect(r.err.split('\n')[0]).toBe('error: tokens scoped: --workspace or --end-user is required');
    expect((await cli('apps', 'create', 'x', '--operator')).err).toContain('apps create: --operator needs --org <organization id>');
  });

  it('a call it cannot make is exit 1 with one line saying what is missing', async () => {
    expect(await cli('orgs', 'create', 'Acme')).toEqual({ code: 1, out: '', err: expect.stringMatching(/^error: failed_precondition: no auth endpoint: start the stack/) as string });
    expect(await cli('apps', 'rotate-secret', 'app-x')).toEqual({ code: 1, out: '', err: 'error: unauthenticated: not logged in: run `coffer login` first' });
    // A login file that does not parse names no application, and its content reaches no message.
    writeFileSync(join(dir, 'cli-login.json'), '{"accessToken":"eyJsecret-looking');
    const noCredentials = await cli('tokens', 'application');
    rmSync(join(dir, 'cli-login.json'));
    expect(noCredentials.err).not.toContain('secret-looking');
    expect(noCredentials.code).toBe(2);
    expect(noCredentials.err.split('\n')[0]).toBe('error: tokens application: no client id: run coffer login, set COFFER_CLIENT_ID, or start the stack with npm start');
  });
});
