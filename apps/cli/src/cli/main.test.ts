import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cofferHome } from '../home';
import { parseCommandLine, UsageError } from './args';
import { requireTerminalForPrompts } from './commands-ops';
import { runCli } from './main';

const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { home: cofferHome(dir, dir), env: {}, out: (t) => out.push(t), progress: (t) => err.push(t), now: () => new Date() });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('coffer exit codes and messages', () => {
  it('prints the usage: exit 2 without a command, 0 when asked for', async () => {
    expect(await cli()).toMatchObject({ code: 2, out: expect.stringContaining('usage: coffer <command>') as string });
    expect((await cli('--help')).code).toBe(0);
    expect((await cli('sources', 'get', 'x', '--help')).code).toBe(0);
  });

  it('refuses a bad command line with exit 2 and one line saying what is wrong', async () => {
    const r = await cli('workspaces', 'delete', 'x');
    expect(r.code).toBe(2);
    expect(r.err.split('\n')[0]).toBe('error: workspaces needs one of: create, list');
  });

  it('a create without --config needs a terminal to prompt on', () => {
    const parsed = parseCommandLine(['sources', 'create', '--workspace', 'w', '--definition', 'd']);
    expect(() => requireTerminalForPrompts(parsed, false)).toThrow(UsageError);
    expect(() => requireTerminalForPrompts(parsed, false)).toThrow('sources create: --config is required when the input is not a terminal');
    expect(() => requireTerminalForPrompts(parsed, true)).not.toThrow();
  });

  it('refuses bad operator arguments as usage, and names what is missing for the rest', async () => {
    expect(await cli('secrets', 'rollback', 'a1', '--field', 'api_token', '--to', '0')).toMatchObject({ code: 2, err: expect.stringContaining('--to must be a version number') as string });
    expect(await cli('kek', 'retire', 'two')).toMatchObject({ code: 2, err: expect.stringContaining('<version> must be a KEK version number') as string });
    expect(await cli('audit', 'verify', '--schema', 'a;drop')).toMatchObject({ code: 2 });
    // No DATABASE_URL and no stack in this home: no guessed server, one line saying what to do.
    const audit = await cli('audit', 'verify');
    expect(audit.code).toBe(1);
    expect(audit.err).toMatch(/^error: failed_precondition: no database to verify: set DATABASE_URL, or start the development stack/);
    const kek = await cli('kek', 'list');
    expect(kek.code).toBe(1);
    expect(kek.err).not.toContain('\n');
  });

  it('a call it cannot make is exit 1, one line, no stack', async () => {
    const r = await cli('workspaces', 'list');
    expect(r).toEqual({ code: 1, out: '', err: 'error: unauthenticated: not logged in: run `coffer login` first' });
    const login = await cli('login');
    expect(login.code).toBe(1);
    expect(login.err).toMatch(/^error: failed_precondition: no auth endpoint: start the stack \(npm start\)/);
    expect(login.err).not.toContain('\n');
  });
});
