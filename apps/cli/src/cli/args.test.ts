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
    [['sources', 'create', '--workspace', 'w', '--definition', 'd'], 'sources create: --config is required'],
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
