import { describe, expect, it } from 'vitest';
import { commands, integerOption, parseCommandLine, usageText, UsageError } from './args';

describe('coffer command line', () => {
  it('parses a two-word command with its options and --json', () => {
    const parsed = parseCommandLine(['sources', 'create', '--workspace', 'w1', '--definition', 'd1', '--config', 'c.json', '--json']);
    expect(parsed).toEqual({ command: 'sources create', positionals: [], options: { workspace: 'w1', definition: 'd1', config: 'c.json' }, json: true });
  });

  it('parses positionals and --opt=value', () => {
    expect(parseCommandLine(['sync', 'conn-1', '--timeout=30'])).toEqual({ command: 'sync', positionals: ['conn-1'], options: { timeout: '30' }, json: false });
    expect(parseCommandLine(['workspaces', 'create', 'acme'])).toMatchObject({ command: 'workspaces create', positionals: ['acme'] });
  });

  it.each([
    [[], 'a command is required'],
    [['frobnicate'], 'unknown command "frobnicate"'],
    [['sources'], 'sources needs one of: create, get, update, delete'],
    [['sources', 'get'], 'sources get: missing <id>'],
    [['sources', 'get', 'a', 'b'], 'sources get: unexpected argument "b"'],
    [['sources', 'create', '--workspace', 'w'], 'sources create: --definition is required'],
    [['secrets', 'rollback', 'a1', '--field', 'api_token'], 'secrets rollback: --to is required'],
    [['kek'], 'kek needs one of: list, rotate, retire'],
    [['kek', 'retire'], 'kek retire: missing <version>'],
    [['connections', 'list'], 'connections list: --workspace is required'],
    [['workspaces', 'list', '--colour'], "workspaces list: Unknown option '--colour'"],
    [['workspaces', 'create', 'x', '--json', '--help', '--name', 'y'], "workspaces create: Unknown option '--name'"],
    [['sync', 'c', '--timeout', ''], 'sync: --timeout must not be empty'],
  ])('refuses %j as usage: %s', (argv, message) => {
    let thrown: unknown;
    try {
      parseCommandLine(argv);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(UsageError);
    expect((thrown as Error).message).toContain(message);
  });

  it('parses the operator commands', () => {
    expect(parseCommandLine(['connections', 'list', '--workspace', 'w1'])).toEqual({ command: 'connections list', positionals: [], options: { workspace: 'w1' }, json: false });
    expect(parseCommandLine(['secrets', 'versions', 'a1', '--field', '$.keys[0].key', '--json'])).toEqual({ command: 'secrets versions', positionals: ['a1'], options: { field: '$.keys[0].key' }, json: true });
    expect(parseCommandLine(['secrets', 'rollback', 'a1', '--field', 'api_token', '--to', '1'])).toMatchObject({ command: 'secrets rollback', options: { field: 'api_token', to: '1' } });
    expect(parseCommandLine(['kek', 'rotate', '--resume'])).toEqual({ command: 'kek rotate', positionals: [], options: { resume: true }, json: false });
    expect(parseCommandLine(['kek', 'retire', '2'])).toMatchObject({ command: 'kek retire', positionals: ['2'] });
    expect(parseCommandLine(['audit', 'verify', '--schema', 'auth,secrets'])).toMatchObject({ command: 'audit verify', options: { schema: 'auth,secrets' } });
    // --config is optional for a create: without it the CLI prompts, on a terminal only.
    expect(parseCommandLine(['destinations', 'create', '--workspace', 'w', '--definition', 'd'])).toMatchObject({ command: 'destinations create', options: { workspace: 'w', definition: 'd' } });
  });

  it('reads integer options and refuses anything else', () => {
    expect(integerOption(parseCommandLine(['sync', 'c', '--timeout', '45']), 'timeout', 120)).toBe(45);
    expect(integerOption(parseCommandLine(['sync', 'c']), 'timeout', 120)).toBe(120);
    expect(() => integerOption(parseCommandLine(['sync', 'c', '--timeout=-1']), 'timeout', 120)).toThrow('--timeout must be a non-negative integer');
    expect(() => integerOption(parseCommandLine(['sync', 'c', '--timeout', '1e3']), 'timeout', 120)).toThrow(UsageError);
  });

  it('lists every command in the usage text', () => {
    const text = usageText();
    for (const name of Object.keys(commands)) expect(text).toContain(`coffer ${name}`);
  });
});
