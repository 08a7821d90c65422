import { parseArgs } from 'node:util';
import { authCommandSpecs } from './args-auth';
import { opsCommandSpecs } from './ops-command-specs';

/** A command line the CLI refused before any call: exit code 2. */
export class UsageError extends Error {}

/** One parsed command line: the command path (e.g. `sources create`), its positionals and options. */
export interface ParsedCommand {
  command: string;
  positionals: string[];
  options: Record<string, string | boolean | undefined>;
  json: boolean;
}

/** How one command is parsed and listed. */
export interface CommandSpec {
  /** Names of string options (all are optional unless listed in `required`). */
  strings?: string[];
  booleans?: string[];
  required?: string[];
  /** Positional arguments, in order. */
  args?: string[];
  summary: string;
}

const actorCommands = (kind: 'source' | 'destination'): Record<string, CommandSpec> => ({
  [`${kind}s create`]: { strings: ['workspace', 'definition', 'config', 'name'], required: ['workspace', 'definition'], summary: `create a ${kind} from a JSON config file, or without --config on a terminal field by field from the definition's spec (secret fields unechoed; stored in secrets, read back masked)` },
  [`${kind}s get`]: { args: ['id'], summary: `show a ${kind}; secret fields as masks` },
  [`${kind}s update`]: { args: ['id'], strings: ['config', 'name', 'expected-version'], required: ['config'], summary: `replace a ${kind}'s config (a masked field keeps its secret; a new value writes its next version)` },
  [`${kind}s delete`]: { args: ['id'], strings: ['expected-version'], summary: `delete a ${kind} and its secrets` },
});

/** Every command the CLI knows, with its options: the single source of both parsing and usage text. */
export const commands: Record<string, CommandSpec> = {
  login: { strings: ['client-id'], summary: 'exchange client credentials for an application token, cached in COFFER_HOME (client id: --client-id or COFFER_CLIENT_ID, secret: COFFER_CLIENT_SECRET; default: the application `npm start` created)' },
  ...authCommandSpecs,
  'workspaces create': { args: ['name'], summary: 'create a workspace in the organization' },
  'workspaces list': { summary: 'list the workspaces' },
  'definitions register': { args: ['spec-file'], strings: ['name', 'type', 'connector'], summary: 'register a connector definition from a spec file (a JSON schema, an Airbyte spec with connectionSpecification, or {name, actorType, connector, spec}); needs operator credentials' },
  'definitions list': { strings: ['type'], summary: 'list the connector definitions' },
  'definitions show': { args: ['id'], summary: 'show a connector definition and its spec' },
  ...actorCommands('source'),
  ...actorCommands('destination'),
  'connections create': { strings: ['workspace', 'source', 'destination', 'name'], required: ['workspace', 'source', 'destination'], summary: 'connect a source to a destination' },
  sync: { args: ['connection'], strings: ['timeout'], summary: 'request a sync and follow the job to its end (operator credentials to read the job)' },
  'jobs list': { strings: ['workspace', 'connection', 'limit'], summary: 'list sync jobs of a workspace and/or connection, newest first (operator credentials); --limit caps how many (default 50)' },
  'jobs show': { args: ['job-id'], summary: 'show a sync job (operator credentials)' },
  demo: { strings: ['timeout'], summary: 'the main path against the running stack, step by step' },
  ...opsCommandSpecs,
};

/** The usage text, listing every command. */
export function usageText(): string {
  const lines = Object.entries(commands).map(([name, spec]) => {
    const args = (spec.args ?? []).map((a) => `<${a}>`);
    const opts = [...(spec.strings ?? []).map((o) => (spec.required?.includes(o) ? `--${o} <v>` : `[--${o} <v>]`)), ...(spec.booleans ?? []).map((o) => `[--${o}]`)];
    return `  coffer ${[name, ...args, ...opts].join(' ')}\n      ${spec.summary}`;
  });
  return [
    'usage: coffer <command> [options] [--json]',
    '',
    ...lines,
    '',
    'Every command takes --json (machine-readable output). Endpoints and credentials come from what',
    '`npm start` wrote in COFFER_HOME (default .coffer/). Exit codes: 0 done, 1 refused or failed, 2 usage.',
    'coffer doctor [--env <service>=<file>]... [--json]: the security self-check (see the README).',
    'coffer migrate [--check] [--service <name>]...: apply every service\'s database migrations to DATABASE_URL (see the README).',
  ].join('\n');
}

/** Parses argv (without node and the script) into a known command, or throws UsageError naming what is wrong. */
export function parseCommandLine(argv: readonly string[]): ParsedCommand {
  const words: string[] = [];
  for (const arg of argv) {
    if (arg.startsWith('-')) break;
    words.push(arg);
  }
  const two = words.slice(0, 2).join(' ');
  const name = commands[two] ? two : words[0] && commands[words[0]] ? words[0] : undefined;
  if (!name) {
    if (!words.length) throw new UsageError('a command is required');
    const group = Object.keys(commands).filter((c) => c.startsWith(`${words[0]} `));
    if (group.length) throw new UsageError(`${words[0]} needs one of: ${group.map((c) => c.split(' ')[1]).join(', ')}`);
    throw new UsageError(`unknown command "${words[0]}"`);
  }
  const spec = commands[name]!;
  const rest = argv.slice(name.split(' ').length);
  const options: Record<string, { type: 'string' | 'boolean' }> = { json: { type: 'boolean' }, help: { type: 'boolean' } };
  for (const o of spec.strings ?? []) options[o] = { type: 'string' };
  for (const o of spec.booleans ?? []) options[o] = { type: 'boolean' };
  let parsed;
  try {
    parsed = parseArgs({ args: [...rest], options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${name}: ${(err as Error).message.split('\n')[0]}`);
  }
  const expected = spec.args ?? [];
  if (parsed.positionals.length !== expected.length) {
    throw new UsageError(
      parsed.positionals.length < expected.length
        ? `${name}: missing <${expected[parsed.positionals.length]}>`
        : `${name}: unexpected argument "${parsed.positionals[expected.length]}"`,
    );
  }
  for (const r of spec.required ?? []) if (parsed.values[r] === undefined) throw new UsageError(`${name}: --${r} is required`);
  for (const [key, value] of Object.entries(parsed.values)) if (value === '') throw new UsageError(`${name}: --${key} must not be empty`);
  const { json, ...values } = parsed.values as Record<string, string | boolean | undefined>;
  return { command: name, positionals: parsed.positionals, options: values, json: json === true };
}

/** A non-negative integer option (a version, seconds), or the default; UsageError otherwise. */
export function integerOption(parsed: ParsedCommand, name: string, fallback: number): number {
  const raw = parsed.options[name];
  if (raw === undefined) return fallback;
  if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) throw new UsageError(`${parsed.command}: --${name} must be a non-negative integer`);
  return Number(raw);
}
